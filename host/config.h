// The trainer's configuration: every setting of a run, the experiments (-e) that fill it, and
// the command line that overrides it.
//
// One option table (config_options.cpp) drives parsing, --help, range validation, the printed
// table and --print-config, so they cannot drift apart. Every field below is a flag named after
// it in kebab case (n_layer -> --n-layer VALUE); `--flag=VALUE` works too. Resolution order: the
// experiment (-e, config_presets.cpp; default d12) sets every field, then each flag overrides
// one, left to right (config_command_line.cpp), then resolve() (config.cpp) validates everything
// and computes the derived fields. Bad input throws ConfigError with a message that names the
// flag and the valid values; the trainer prints it and exits with status 2 before touching a GPU.
#pragma once

#include <cstdint>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/attention_kernel.h"
#include "host/checkpoint.h"
#include "host/checkpoint_retention.h"
#include "host/matmul_engine.h"
#include "host/schedule.h"

struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Precision { bf16, fp16 };
// What --generate's prompts are: text (GPT-2 BPE) or token ids.
enum class PromptFormat { text, tokens };
constexpr int kZeroStageAuto = -1;
// --device-batch auto: the trainer picks B on the GPU (host/device_batch.h); until then
// grad_accum is unknown (0).
constexpr int kDeviceBatchAuto = 0;
constexpr int kMaxDeviceBatch = 65536;
// gpt2: wte, wpe, qkv_w, fc_w ~ N(0, init_std). small_init (the seed's gpt3-2.7B):
// std sqrt(2 / (5 * n_embd)) instead. Both: output projections / sqrt(2 * n_layer).
enum class InitScheme { gpt2, small_init };

struct TrainConfig {
    // What -e named, and the model file whose weights start the run ("" = random init).
    std::string experiment = "d12";
    std::string init_from;

    // Model
    int n_layer = 12;
    int n_embd = 768;
    int n_head = 12;
    int max_seq_len = 1024;   // rows of wpe; longest sequence the model accepts
    int vocab_size = 50257;
    int pad_vocab_to = 128;   // padded_vocab_size = vocab_size rounded up to a multiple of this
    bool learned_pos_emb = true;
    double rotary_fraction = 0.0;  // rotary_dim = rotary_fraction * d_head (0 = no rotary)
    int rotary_base = 10000;
    bool rotary_interleaved = false;  // false: GPT-NeoX "rotate half" pairs (i, i + rotary_dim/2)
    bool post_norm = false;
    bool fp32_residual = false;
    bool scale_attn_by_inverse_layer_idx = false;  // extra 1/(layer_index+1) on attention scores
    double dropout_embd = 0.0;
    double dropout_resid = 0.0;
    double dropout_attn = 0.0;
    double init_std = 0.02;
    InitScheme init_scheme = InitScheme::gpt2;
    double layernorm_eps = 1e-5;

    // Batch
    int seq_len = 1024;                     // T
    int device_batch = kDeviceBatchAuto;    // B, sequences per GPU per micro-step, or auto
    int64_t global_batch_tokens = 65536;    // per optimizer step, over all GPUs
    bool recompute_gelu = true;             // keep only the GELU input per layer; recompute its output in backward

    // Optimizer (AdamW; weight decay on the linear weights only)
    double lr = 6e-4;
    int64_t warmup_steps = 100;
    double warmup_init_lr = 0.0;
    LrScheduleKind schedule = LrScheduleKind::cosine;
    int64_t decay_end_step = 0;   // 0 = the last step (resolve() fills it in)
    double min_lr_ratio = -1.0;   // -1 = by schedule: cosine 0.1, else 0 (resolve() fills it in)
    double beta1 = 0.9;
    double beta2 = 0.999;
    double adam_eps = 1e-8;
    double weight_decay = 0.1;
    double grad_clip = 1.0;       // global gradient norm; 0 = no clipping
    int nonfinite_limit = 10;     // stop after this many steps in a row with a non-finite loss or norm
    double skip_loss_zscore = 0.0;  // skip updates whose loss z-score exceeds this (0 = off)
    double skip_norm_zscore = 0.0;  // the same for the gradient norm (0 = off)
    int zscore_window = 128;        // steps the z-scores look back over
    int64_t inject_nan_step = 0;    // testing: a NaN in the gradients from this step on (0 = off)
    int64_t inject_nan_count = 1;   // testing: for this many steps

    // Precision
    Precision precision = Precision::bf16;
    double loss_scale_init = 65536.0;          // fp16 only
    int loss_scale_growth_interval = 2000;     // fp16 only: clean steps before the scale doubles

    // Run
    int64_t steps = 2000;
    uint64_t seed = 1111;
    std::string data_dir = "data";
    std::string dataset = "tiny";     // directory under data_dir holding *_train_*.bin, *_val_*.bin
    std::string train_glob;           // overrides data_dir/dataset when set
    std::string val_glob;
    std::string test_glob;            // "" = data_dir/dataset/*_test_*.bin where the dataset has one
    int64_t val_every = 250;          // 0 = never
    int64_t val_tokens = 0;           // cap on target tokens per evaluation of a split; 0 = the whole split
    bool test_at_end = true;          // after the last step, the test split's loss (where there is one)
    bool eval_only = false;           // evaluate the checkpoint of --resume or -e FILE, then exit
    int64_t sample_every = 500;       // 0 = never
    int sample_tokens = 128;
    double temperature = 1.0;         // 0 = greedy (the most likely token)
    int top_k = 50;                   // 0 = sample from the whole distribution
    double top_p = 1.0;               // the smallest set of most likely tokens whose mass >= top_p (1 = all)
    int64_t hellaswag_every = 0;      // HellaSwag accuracy every N steps; 0 = never
    std::string hellaswag_file;       // the items file; "" = data_dir/hellaswag/hellaswag_val.bin
    int64_t hellaswag_items = 0;      // cap on items per evaluation; 0 = all
    bool hellaswag_only = false;      // evaluate HellaSwag on -e CHECKPOINT's weights and exit
    std::string logits_in;            // with logits_out: tokens bundle in, logits bundle out, then exit
    std::string logits_out;
    int64_t norm_monitor_every = 0;   // per-tensor weight and gradient statistics every N steps; 0 = never

    // Generation (train/generate_run.cuh): continue prompts with -e CHECKPOINT's weights, then exit
    std::vector<std::string> generate;  // prompts, one per --generate (one batch with --prompt-file's)
    std::string prompt_file;          // more prompts, one per line
    PromptFormat prompt_format = PromptFormat::text;
    int max_new_tokens = 128;
    std::string generate_out;         // JSON lines: each completion's tokens and text
    std::string generate_logits_out;  // testing: the logits each new token was chosen from (tensor bundle)
    int generate_bench = 0;           // > 0: time the generation of max_new_tokens for this many sequences
    bool generate_cuda_graph = true;  // replay each decode step as a CUDA graph (train/generator.cuh)
    bool tensorboard = true;          // TensorBoard event file beside log.jsonl
    int64_t checkpoint_every = 1000;  // 0 = only at the end
    int keep_best_checkpoints = kKeepAllCheckpoints;  // keep the newest and these best by val loss; -1 = all
    int64_t keep_checkpoint_every = 0;  // checkpoints at multiples of this are never deleted; 0 = none
    std::string out_dir;              // parse_args: runs/<experiment>-<YYYYmmdd-HHMMSS> if not given
    std::string resume;               // "", "auto", a run directory or a model_*.bin
    int64_t log_every = 1;
    int zero_stage_setting = kZeroStageAuto;  // --zero-stage: 0, 1, 2, or auto (resolve() sets zero_stage)
    bool overlap_grad_reduce = true;  // ZeRO-0: all-reduce each layer's gradients during backward
    std::string vocab_dir;            // "" = Gpt2Tokenizer::default_vocab_dir()
    int64_t bench_steps = 0;          // > 0: benchmark mode, this many steps then a BENCH line
    int64_t profile_step = 0;         // > 0: cudaProfilerStart/Stop around this step (ncu --profile-from-start off)
    int64_t timeline_step = 0;        // > 0: print where this step's time went (CUDA events; rank 0)
    bool cuda_graphs = false;         // replay each micro-step's forward and backward, and AdamW, as CUDA graphs
    std::string matmul_tuning = "off";  // off (the heuristic's first), auto (timed in the first step), or a record to replay
    MatmulEngine matmul_engine = MatmulEngine::cublaslt;  // simple: our own GEMM, for compute-sanitizer runs
    AttentionKernelChoice attention_kernel = AttentionKernelChoice::automatic;  // Hopper where it runs, else mma.sync
    int nproc = 1;                    // processes to launch (single-node launcher)
    std::string rendezvous;           // shared file for multi-process start-up ("" = default)
    int nccl_timeout = 300;           // seconds (train/nccl_context.cuh)

    // Derived by resolve(); not flags.
    int world_size = 1;
    // 0: replicated; 1: optimizer state and master weights sharded; 2: gradients too. The setting,
    // or for auto: 1 on more than one GPU for the experiments the seed trains with ZeRO-1 (gpt2l,
    // gpt2xl, gpt3l, gpt3xl, gpt3-2.7B and their variants), else 0. Printed as zero_stage.
    int zero_stage = 0;
    int padded_vocab_size = 0;
    int d_head = 0;
    int rotary_dim = 0;
    int grad_accum = 0;               // ceil(global_batch_tokens / (world_size * B * T)); 0 while B is auto
    int64_t tokens_per_step = 0;      // grad_accum * world_size * B * T (>= global_batch_tokens)
    int64_t sequences_per_gpu = 0;    // per step: ceil(global_batch_tokens / (world_size * T)), auto B divides it
    double base_init_std = 0.0;       // std of wte, wpe, qkv_w, fc_w
    double residual_init_std = 0.0;   // std of attn_proj_w, fc_proj_w
    int64_t num_params = 0;           // ParamLayout total, padded vocabulary included
    int64_t flops_per_token = 0;      // for MFU (host/gpu_specs.h)
    std::string train_pattern;        // train_glob, or data_dir/dataset/*_train_*.bin
    std::string val_pattern;
    std::string test_pattern;         // test_glob, or data_dir/dataset/*_test_*.bin ("" without a dataset)
    std::string hellaswag_path;       // hellaswag_file, or data_dir/hellaswag/hellaswag_val.bin

    // Validates every field (ranges and combinations) and fills the derived ones for
    // `num_processes` GPUs (the derived world_size). Idempotent: call again once the real world
    // size is known.
    void resolve(int num_processes);
    // Whether this run generates text (--generate, --prompt-file or --generate-bench) instead of training.
    bool generation_run() const { return !generate.empty() || !prompt_file.empty() || generate_bench > 0; }
    // The same configuration with --device-batch `batch` (what auto chose), resolved again.
    TrainConfig with_device_batch(int batch) const;

    ModelShape model_shape() const;
    LrSchedule lr_schedule() const;
    RetentionPolicy checkpoint_retention() const;
    // Every field, derived ones included, as one flat JSON object (keys = field names).
    std::string to_json() const;
    // The same as an aligned, sectioned table for the console.
    std::string to_table() const;
};

// What the command line depends on besides its arguments (injected so tests are exact).
struct ParseContext {
    std::string data_dir_env;  // $DATA_DIR, "" when unset
    std::time_t now = 0;       // for the default out_dir's timestamp
};
ParseContext parse_context_from_environment();

struct ParsedArgs {
    TrainConfig config;        // resolved for --nproc processes
    bool print_config = false; // --print-config: print config.to_json() and exit
    bool show_help = false;    // --help / -h: print help_text() and exit (config untouched)
};

// Parses argv (argv[0] is the program). Throws ConfigError for any bad input.
ParsedArgs parse_args(int argc, char** argv);
ParsedArgs parse_args(const std::vector<std::string>& args, const ParseContext& context);  // no argv[0]

// The configuration an experiment name stands for, before flags: a preset (gpt2s ... gpt3-2.7B,
// with -rotary / -8k suffixes), dN, or the path of a model checkpoint. Throws ConfigError.
TrainConfig experiment_config(const std::string& name, const ParseContext& context);
std::vector<std::string> preset_names();  // base presets, without variants
std::string help_text();
