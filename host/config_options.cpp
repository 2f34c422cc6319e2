// The option table: every flag of the trainer with its section, help text, valid values and how
// it sets, checks and shows its field; the value syntax the flags take (integers, numbers,
// booleans, choices, keywords such as auto); and the lookup of a flag, with did-you-mean
// suggestions for a mistyped one. Parsing, --help, resolve()'s range checks and the printed
// configuration all walk this one table, so they cannot drift apart.

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "host/config_internal.h"
#include "host/model_limits.h"
#include "host/tokenizer.h"

namespace config_internal {

// ---------------------------------------------------------------------------------------------
// Value syntax

bool parse_integer(const std::string& text, long long* value) {
    if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-')) return false;
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(text.c_str(), &end, 10);
    if (errno == ERANGE || end != text.c_str() + text.size()) return false;
    *value = parsed;
    return true;
}

// Text values (paths, globs, names) are printed and saved as JSON (--print-config, config.json),
// which holds UTF-8 only: other bytes are refused here rather than failing where they are written.
std::string utf8_problem(const std::string& text) {
    if (Gpt2Tokenizer::is_valid_utf8(text)) return std::string();
    return "is not UTF-8 text: the configuration is printed and saved as JSON (config.json), which holds UTF-8 "
           "only; give the name in UTF-8 (rename the file or directory if needed)";
}

namespace {

bool parse_real(const std::string& text, double* value) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    char* end = nullptr;
    const double parsed = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(parsed)) return false;
    *value = parsed;
    return true;
}

bool parse_bool(const std::string& text, bool* value) {
    const std::string lower = lowercase(text);
    if (lower == "1" || lower == "true" || lower == "on" || lower == "yes") *value = true;
    else if (lower == "0" || lower == "false" || lower == "off" || lower == "no") *value = false;
    else return false;
    return true;
}

}  // namespace

std::string lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    return text;
}

std::string display(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

std::string format_number(double value) { return display(Json(value)); }

// ---------------------------------------------------------------------------------------------
// The option table

namespace {

constexpr int64_t kMaxCount = int64_t{1} << 40;  // bound for step and token counts

Option make_option(const std::string& section, const std::string& flag, const std::string& value_name,
                   const std::string& help) {
    Option option;
    option.flag = flag;
    option.key = flag.substr(2);
    std::replace(option.key.begin(), option.key.end(), '-', '_');
    option.section = section;
    option.value_name = value_name;
    option.help = help;
    return option;
}

ConfigError out_of_range(const Option& option, const std::string& value) {
    return ConfigError(option.flag + " " + value + " is out of range: valid is " + option.valid);
}

// `keyword` (e.g. "auto") stands for the sentinel `keyword_value`, which is valid too.
template <typename Int>
Option integer_option(const std::string& section, const std::string& flag, Int TrainConfig::*member, long long lo,
                      long long hi, const std::string& help, const std::string& keyword = "",
                      long long keyword_value = 0) {
    Option option = make_option(section, flag, keyword.empty() ? "N" : "N|" + keyword, help);
    option.valid = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" +
                   (keyword.empty() ? "" : " or " + keyword);
    auto valid_value = [lo, hi, keyword, keyword_value](long long v) {
        return (v >= lo && v <= hi) || (!keyword.empty() && v == keyword_value);
    };
    option.problem = [member, valid_value, valid = option.valid](const TrainConfig& config) {
        const long long v = static_cast<long long>(config.*member);
        return valid_value(v) ? std::string() : std::to_string(v) + " is out of range: valid is " + valid;
    };
    option.set = [member, valid_value, option, keyword, keyword_value](TrainConfig& config, const std::string& text) {
        long long v = 0;
        if (!keyword.empty() && lowercase(text) == keyword) {
            v = keyword_value;
        } else if (!parse_integer(text, &v)) {
            throw ConfigError(option.flag + ": '" + text + "' is not an integer (valid: " + option.valid + ")");
        }
        if (!valid_value(v)) throw out_of_range(option, text);
        config.*member = static_cast<Int>(v);
    };
    option.get = [member, keyword, keyword_value](const TrainConfig& config) {
        const long long v = static_cast<long long>(config.*member);
        return !keyword.empty() && v == keyword_value ? Json(keyword) : Json(config.*member);
    };
    return option;
}

struct RealRange {
    double lo, hi;
    bool lo_open, hi_open;
    bool contains(double v) const { return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi); }
    std::string text() const {
        return std::string("a number in ") + (lo_open ? "(" : "[") + format_number(lo) + ", " + format_number(hi) +
               (hi_open ? ")" : "]");
    }
};
constexpr RealRange kProbability{0.0, 1.0, false, true};  // [0, 1)
constexpr RealRange kFraction{0.0, 1.0, false, false};    // [0, 1]

// `keyword` (e.g. "auto") stands for the sentinel `keyword_value`, which is valid too.
Option real_option(const std::string& section, const std::string& flag, double TrainConfig::*member, RealRange range,
                   const std::string& help, const std::string& keyword = "", double keyword_value = 0.0) {
    Option option = make_option(section, flag, keyword.empty() ? "X" : "X|" + keyword, help);
    option.valid = range.text() + (keyword.empty() ? "" : " or " + keyword);
    auto valid_value = [range, keyword, keyword_value](double v) {
        return range.contains(v) || (!keyword.empty() && v == keyword_value);
    };
    option.problem = [member, valid_value, valid = option.valid](const TrainConfig& config) {
        const double v = config.*member;
        return valid_value(v) ? std::string() : format_number(v) + " is out of range: valid is " + valid;
    };
    option.set = [member, valid_value, option, keyword, keyword_value](TrainConfig& config, const std::string& text) {
        double v = 0.0;
        if (!keyword.empty() && lowercase(text) == keyword) {
            v = keyword_value;
        } else if (!parse_real(text, &v)) {
            throw ConfigError(option.flag + ": '" + text + "' is not a number (valid: " + option.valid + ")");
        }
        if (!valid_value(v)) throw out_of_range(option, text);
        config.*member = v;
    };
    option.get = [member, keyword, keyword_value](const TrainConfig& config) {
        const double v = config.*member;
        return !keyword.empty() && v == keyword_value ? Json(keyword) : Json(v);
    };
    return option;
}

Option bool_option(const std::string& section, const std::string& flag, bool TrainConfig::*member,
                   const std::string& help) {
    Option option = make_option(section, flag, "0|1", help);
    option.valid = "1/true/on/yes or 0/false/off/no";
    option.problem = [](const TrainConfig&) { return std::string(); };
    option.set = [member, option](TrainConfig& config, const std::string& text) {
        bool v = false;
        if (!parse_bool(text, &v))
            throw ConfigError(option.flag + ": '" + text + "' is not a boolean (valid: " + option.valid + ")");
        config.*member = v;
    };
    option.get = [member](const TrainConfig& config) { return Json(config.*member); };
    return option;
}

template <typename Enum>
Option choice_option(const std::string& section, const std::string& flag, Enum TrainConfig::*member,
                     std::vector<std::pair<std::string, Enum>> choices, const std::string& help) {
    std::string names;
    for (const auto& [name, value] : choices) names += (names.empty() ? "" : "|") + name;
    Option option = make_option(section, flag, names, help);
    option.valid = "one of " + names;
    option.problem = [](const TrainConfig&) { return std::string(); };
    option.set = [member, choices, option](TrainConfig& config, const std::string& text) {
        for (const auto& [name, value] : choices) {
            if (lowercase(text) == name) {
                config.*member = value;
                return;
            }
        }
        throw ConfigError(option.flag + ": '" + text + "' is not " + option.valid);
    };
    option.get = [member, choices](const TrainConfig& config) {
        for (const auto& [name, value] : choices)
            if (config.*member == value) return Json(name);
        return Json("?");
    };
    return option;
}

Option text_option(const std::string& section, const std::string& flag, std::string TrainConfig::*member,
                   const std::string& value_name, const std::string& help, const std::string& default_note = "") {
    Option option = make_option(section, flag, value_name, help);
    option.default_note = default_note;
    option.problem = [member](const TrainConfig& config) { return utf8_problem(config.*member); };
    option.set = [member](TrainConfig& config, const std::string& text) { config.*member = text; };
    option.get = [member](const TrainConfig& config) { return Json(config.*member); };
    return option;
}

// Repeatable: each occurrence appends its value (a printed list reads back as one flag per value).
Option text_list_option(const std::string& section, const std::string& flag,
                        std::vector<std::string> TrainConfig::*member, const std::string& value_name,
                        const std::string& help) {
    Option option = make_option(section, flag, value_name, help);
    option.default_note = "none";
    option.problem = [member](const TrainConfig& config) {
        for (const std::string& text : config.*member)
            if (std::string problem = utf8_problem(text); !problem.empty()) return problem;
        return std::string();
    };
    option.set = [member](TrainConfig& config, const std::string& text) { (config.*member).push_back(text); };
    option.get = [member](const TrainConfig& config) { return Json(config.*member); };
    return option;
}

// --zero-stage sets zero_stage_setting, which may be auto; what it shows is the stage resolve()
// chose for the world size (zero_stage), so a printed configuration reads back to itself.
Option zero_stage_option(const std::string& section) {
    Option option = integer_option(section, "--zero-stage", &TrainConfig::zero_stage_setting, 0, 2,
                                   "0: replicated; 1: AdamW state and master weights sharded over GPUs, gradients "
                                   "reduce-scattered after backward; 2: also the gradients sharded, each layer's "
                                   "reduced to its owners during every micro-step's backward; auto: 1 on more than "
                                   "one GPU for the experiments the seed shards (gpt2l, gpt2xl, gpt3l, gpt3xl, "
                                   "gpt3-2.7B), else 0",
                                   "auto", kZeroStageAuto);
    option.get = [](const TrainConfig& config) { return Json(config.zero_stage); };
    option.default_note = "auto";
    return option;
}
// --matmul-tuning: auto, off, or the path of a tuning record (read when the run starts).
Option matmul_tuning_option(const std::string& section) {
    Option option = text_option(
        section, "--matmul-tuning", &TrainConfig::matmul_tuning, "auto|off|FILE",
        "how each GEMM shape gets its cuBLASLt algorithm and epilogue path: off (the default) = the fused epilogue "
        "with cuBLASLt's first heuristic algorithm, nothing timed (two fresh runs compute alike bit for bit); auto = "
        "the fastest of several, timed in the first step (about 1% faster end to end on an H100; two fresh runs may "
        "then choose differently); FILE = the choices of a matmul_tuning.txt (shapes not in "
        "it are timed). The run saves its choices as matmul_tuning.txt in --out-dir; --resume replays those of "
        "the run it continues (FILE, if given, instead)");
    option.valid = "auto, off or the path of a matmul_tuning.txt";
    option.set = [option](TrainConfig& config, const std::string& text) {
        if (text.empty()) throw ConfigError(option.flag + ": an empty value is not " + option.valid);
        const std::string keyword = lowercase(text);
        config.matmul_tuning = keyword == "auto" || keyword == "off" ? keyword : text;
    };
    return option;
}
std::vector<Option> build_options() {
    using C = TrainConfig;
    const std::string model = "model", batch = "batch", optimizer = "optimizer", precision = "precision",
                      data = "data", run = "run", eval = "evaluation and samples", generation = "generation",
                      output = "output", distributed = "distributed";
    return {
        integer_option(model, "--n-layer", &C::n_layer, 1, model_limits::kMaxLayers, "transformer blocks"),
        integer_option(model, "--n-embd", &C::n_embd, 1, model_limits::kMaxEmbd,
                       "model width d_model, divisible by --n-head"),
        integer_option(model, "--n-head", &C::n_head, 1, model_limits::kMaxHeads,
                       "attention heads (d_head = n_embd / n_head: 64, 80, 96 or 128)"),
        integer_option(model, "--max-seq-len", &C::max_seq_len, 1, model_limits::kMaxSeqLen,
                       "longest sequence the model takes (rows of the position embedding)"),
        integer_option(model, "--vocab-size", &C::vocab_size, 1, model_limits::kMaxVocab,
                       "vocabulary size (GPT-2 BPE: 50257)"),
        integer_option(model, "--pad-vocab-to", &C::pad_vocab_to, 1, model_limits::kMaxPadMultiple,
                       "pad the embedding rows to a multiple of this for fast matmuls; padded logits never get "
                       "probability"),
        bool_option(model, "--learned-pos-emb", &C::learned_pos_emb, "learned absolute position embeddings (wpe)"),
        real_option(model, "--rotary-fraction", &C::rotary_fraction, kFraction,
                    "rotary embedding on this fraction of each head's dims (0 = off); rotary_dim = fraction * "
                    "d_head must be even"),
        integer_option(model, "--rotary-base", &C::rotary_base, 1, INT32_MAX, "rotary frequency base"),
        bool_option(model, "--rotary-interleaved", &C::rotary_interleaved,
                    "rotate adjacent pairs (GPT-J) instead of the two halves (GPT-NeoX)"),
        bool_option(model, "--post-norm", &C::post_norm,
                    "post-norm blocks: dropout, add, LayerNorm after each sublayer; no final LayerNorm"),
        bool_option(model, "--fp32-residual", &C::fp32_residual, "keep the residual stream in fp32 (pre-norm only)"),
        bool_option(model, "--scale-attn-by-inverse-layer-idx", &C::scale_attn_by_inverse_layer_idx,
                    "scale attention scores of layer i (from 0) by an extra 1/(i+1)"),
        real_option(model, "--dropout-embd", &C::dropout_embd, kProbability, "dropout on the embeddings"),
        real_option(model, "--dropout-resid", &C::dropout_resid, kProbability,
                    "dropout on the residual branches (after attention, after the MLP)"),
        real_option(model, "--dropout-attn", &C::dropout_attn, kProbability, "dropout on the attention probabilities"),
        real_option(model, "--init-std", &C::init_std, RealRange{0.0, 1.0, true, false},
                    "std of the normal init of embeddings and linear weights (gpt2 scheme)"),
        choice_option<InitScheme>(model, "--init-scheme", &C::init_scheme,
                                  {{"gpt2", InitScheme::gpt2}, {"small_init", InitScheme::small_init}},
                                  "gpt2: --init-std; small_init: sqrt(2/(5*n_embd)); either way the output "
                                  "projections get std / sqrt(2*n_layer)"),
        real_option(model, "--layernorm-eps", &C::layernorm_eps, RealRange{0.0, 1.0, true, true}, "LayerNorm epsilon"),

        integer_option(batch, "--seq-len", &C::seq_len, 1, 1 << 20, "T: tokens per training sequence (<= --max-seq-len)"),
        integer_option(batch, "--device-batch", &C::device_batch, 1, kMaxDeviceBatch,
                       "B: sequences per GPU per micro-step; the global batch stays fixed, accumulation adapts. "
                       "auto: the largest B that divides the sequences each GPU takes per step (sequences_per_gpu) "
                       "and whose memory plan fits the GPU's free memory, the same on every GPU (the start-up "
                       "says which and why)",
                       "auto", kDeviceBatchAuto),
        integer_option(batch, "--global-batch-tokens", &C::global_batch_tokens, 1, kMaxCount,
                       "tokens per optimizer step over all GPUs; accumulation = ceil(this / (GPUs * B * T)), so "
                       "the step may hold a little more"),
        bool_option(batch, "--recompute-gelu", &C::recompute_gelu,
                    "store only each MLP's GELU input and recompute the GELU output in backward: 4 x n_embd x "
                    "2 bytes less per token and layer, for one element-wise pass per layer"),

        real_option(optimizer, "--lr", &C::lr, RealRange{0.0, 10.0, true, false}, "peak learning rate"),
        integer_option(optimizer, "--warmup-steps", &C::warmup_steps, 0, kMaxCount,
                       "linear warmup from --warmup-init-lr to --lr over this many steps (auto: 1% of --steps, "
                       "rounded up, as the seed's 0.01 * max_steps)",
                       "auto", kAutoWarmupSteps),
        real_option(optimizer, "--warmup-init-lr", &C::warmup_init_lr, RealRange{0.0, 10.0, false, false},
                    "learning rate at step 0"),
        choice_option<LrScheduleKind>(optimizer, "--schedule", &C::schedule,
                                      {{"linear", LrScheduleKind::linear},
                                       {"cosine", LrScheduleKind::cosine},
                                       {"constant", LrScheduleKind::constant}},
                                      "after the warmup: linear or cosine decay to the floor at --decay-end-step, "
                                      "then held (cosine measured from step 0, as timm's); or constant"),
        integer_option(optimizer, "--decay-end-step", &C::decay_end_step, 0, kMaxCount,
                       "step where the decay reaches the floor (0 = the last step)"),
        real_option(optimizer, "--min-lr-ratio", &C::min_lr_ratio, kFraction,
                    "floor of the decay as a fraction of --lr (auto: 0.1 for cosine, else 0)", "auto", -1.0),
        real_option(optimizer, "--beta1", &C::beta1, kProbability, "AdamW beta1"),
        real_option(optimizer, "--beta2", &C::beta2, kProbability, "AdamW beta2"),
        real_option(optimizer, "--adam-eps", &C::adam_eps, RealRange{0.0, 1.0, true, false}, "AdamW epsilon"),
        real_option(optimizer, "--weight-decay", &C::weight_decay, RealRange{0.0, 10.0, false, false},
                    "AdamW decoupled weight decay, on the linear weights only (not biases, LayerNorms, embeddings)"),
        real_option(optimizer, "--grad-clip", &C::grad_clip, RealRange{0.0, 1e6, false, false},
                    "clip the global gradient norm to this (0 = no clipping)"),
        integer_option(optimizer, "--nonfinite-limit", &C::nonfinite_limit, 1, 1000000,
                       "a step whose loss or gradient norm is not finite is skipped (no update); the run stops "
                       "after this many in a row"),
        real_option(optimizer, "--skip-loss-zscore", &C::skip_loss_zscore, RealRange{0.0, 1e6, false, false},
                    "skip the update of a step whose loss lies more than this many standard deviations above "
                    "the mean of the last --zscore-window steps (0 = off)"),
        real_option(optimizer, "--skip-norm-zscore", &C::skip_norm_zscore, RealRange{0.0, 1e6, false, false},
                    "the same for the gradient norm (0 = off)"),
        integer_option(optimizer, "--zscore-window", &C::zscore_window, 2, 1000000,
                       "steps the loss and gradient-norm z-scores look back over"),
        integer_option(optimizer, "--inject-nan-step", &C::inject_nan_step, 0, kMaxCount,
                       "testing: write a NaN into the gradients at this step (0 = never)"),
        integer_option(optimizer, "--inject-nan-count", &C::inject_nan_count, 1, kMaxCount,
                       "testing: ... and at this many steps from it"),

        choice_option<Precision>(precision, "--precision", &C::precision,
                                 {{"bf16", Precision::bf16}, {"fp16", Precision::fp16}},
                                 "16-bit type of activations and matmul inputs (master weights and AdamW state "
                                 "are fp32 either way)"),
        real_option(precision, "--loss-scale-init", &C::loss_scale_init, RealRange{1.0, 4294967296.0, false, false},
                    "fp16: initial dynamic loss scale"),
        integer_option(precision, "--loss-scale-growth-interval", &C::loss_scale_growth_interval, 1, 1000000000,
                       "fp16: clean steps before the scale doubles (an overflow halves it and skips the step)"),

        text_option(data, "--data-dir", &C::data_dir, "DIR", "where datasets live", "${DATA_DIR:-data}"),
        text_option(data, "--dataset", &C::dataset, "NAME",
                    "directory under --data-dir with *_train_*.bin and *_val_*.bin shards (tiny, openwebtext, "
                    "the_pile)"),
        text_option(data, "--train-glob", &C::train_glob, "GLOB", "training shards; overrides --data-dir/--dataset",
                    "from --data-dir/--dataset"),
        text_option(data, "--val-glob", &C::val_glob, "GLOB", "validation shards; overrides --data-dir/--dataset",
                    "from --data-dir/--dataset"),
        text_option(data, "--test-glob", &C::test_glob, "GLOB",
                    "test shards; overrides --data-dir/--dataset, whose *_test_*.bin are the test split where "
                    "they exist (the_pile; OpenWebText's test split is its validation holdout, as the seed's)",
                    "from --data-dir/--dataset"),
        text_option(data, "--vocab-dir", &C::vocab_dir, "DIR", "GPT-2 encoder.json + vocab.bpe, to decode samples",
                    "where `make setup` puts them"),

        integer_option(run, "--steps", &C::steps, 1, kMaxCount, "optimizer steps to train"),
        integer_option(run, "--seed", &C::seed, 0, LLONG_MAX, "seed of the init, the data order and dropout"),
        integer_option(run, "--log-every", &C::log_every, 1, kMaxCount, "console and log line every N steps"),
        integer_option(run, "--bench-steps", &C::bench_steps, 0, kMaxCount,
                       "benchmark: N steps on real data, then `BENCH tokens_per_s=... mfu=... peak_mem_gb=...` (0 = "
                       "off)"),
        matmul_tuning_option(run),
        choice_option<MatmulEngine>(run, "--matmul-engine", &C::matmul_engine,
                                    {{"cublaslt", MatmulEngine::cublaslt}, {"simple", MatmulEngine::simple}},
                                    "what runs the GEMMs: cublaslt (the default), or simple = our own plain CUDA-core "
                                    "GEMM with unfused epilogues, far slower, for compute-sanitizer: with it a step "
                                    "runs no cuBLASLt kernel, so racecheck and initcheck can check all of it (make "
                                    "sanitize)"),
        choice_option<AttentionKernelChoice>(run, "--attention-kernel", &C::attention_kernel,
                                             attention_kernel_choices(),
                                             "the attention kernels: auto (the default: hopper on a compute "
                                             "capability 9.0 GPU with an sm_90a build, else tensor-cores), hopper "
                                             "(wgmma + TMA), tensor-cores (mma.sync, any GPU from sm_80), or "
                                             "cuda-cores (fp32, slow): to compare them, or for compute-sanitizer's "
                                             "initcheck, which does not see TMA stores (make sanitize)"),
        integer_option(run, "--profile-step", &C::profile_step, 0, kMaxCount,
                       "bracket this step with cudaProfilerStart/Stop, for `ncu --profile-from-start off` "
                       "(dev/bench/step_breakdown.sh; 0 = off)"),
        integer_option(run, "--timeline-step", &C::timeline_step, 0, kMaxCount,
                       "print where this step's time went on rank 0's GPU (forward, backward, gradient "
                       "reduction left after it, optimizer; each layer's reduction), from CUDA events (0 = off)"),
        bool_option(run, "--cuda-graphs", &C::cuda_graphs,
                    "replay each training micro-step's forward and backward passes, and the AdamW update, as CUDA "
                    "graphs captured after the first step: fewer launch gaps, the same losses bit for bit. A "
                    "micro-step whose backward communicates (ZeRO-2; the last of a step on several GPUs with "
                    "--overlap-grad-reduce) and the --timeline-step step run eagerly, as the start-up says"),

        integer_option(eval, "--val-every", &C::val_every, 0, kMaxCount, "validation loss every N steps (0 = never)"),
        integer_option(eval, "--val-tokens", &C::val_tokens, 0, kMaxCount,
                       "cap on the tokens of one evaluation of the validation split, and of the test split (0 = "
                       "the whole split, as the seed)"),
        bool_option(eval, "--test-at-end", &C::test_at_end,
                    "after the last step, the loss and perplexity of the test split, where the dataset has one"),
        bool_option(eval, "--eval-only", &C::eval_only,
                    "no training: the validation and test loss and perplexity of the checkpoint --resume names "
                    "(auto|DIR|FILE; its weights only, so any number of GPUs) or of -e model_SSSSSSSS.bin, "
                    "then exit"),
        integer_option(eval, "--sample-every", &C::sample_every, 0, kMaxCount, "text sample every N steps (0 = never)"),
        integer_option(eval, "--sample-tokens", &C::sample_tokens, 1, 1 << 20,
                       "tokens per sample, <= --max-seq-len (when not given: at most --max-seq-len)"),
        real_option(eval, "--temperature", &C::temperature, RealRange{0.0, 100.0, false, false},
                    "sampling temperature of the samples and of --generate (0 = greedy: the most likely token)"),
        integer_option(eval, "--top-k", &C::top_k, 0, 1 << 24, "sample from the k most likely tokens (0 = all)"),
        real_option(eval, "--top-p", &C::top_p, RealRange{0.0, 1.0, true, false},
                    "then only from the smallest set of the most likely of those whose probabilities sum to at "
                    "least X (nucleus sampling; 1 = no limit)"),
        integer_option(eval, "--hellaswag-every", &C::hellaswag_every, 0, kMaxCount,
                       "HellaSwag accuracy (acc, acc_norm; llm.c's completion scoring) every N steps and at the "
                       "end, and with --eval-only on its checkpoint (0 = never); needs --seq-len >= the longest "
                       "context + ending, less one"),
        text_option(eval, "--hellaswag-file", &C::hellaswag_file, "FILE",
                    "HellaSwag items (./data_prep/prepare hellaswag writes them)",
                    "<data-dir>/hellaswag/hellaswag_val.bin"),
        integer_option(eval, "--hellaswag-items", &C::hellaswag_items, 0, kMaxCount,
                       "evaluate the first N items only (0 = all 10,042)"),
        bool_option(eval, "--hellaswag-only", &C::hellaswag_only,
                    "evaluate HellaSwag on the weights of -e CHECKPOINT, print acc and acc_norm and exit (no "
                    "training, no training data; one GPU; --device-batch rows per pass, auto: 32)"),
        text_option(eval, "--logits-in", &C::logits_in, "FILE",
                    "with --logits-out: a tensor bundle with \"tokens\", int32 (B, T), T <= --max-seq-len", "none"),
        text_option(eval, "--logits-out", &C::logits_out, "FILE",
                    "one forward pass of -e CHECKPOINT over --logits-in's tokens (no dropout, one GPU), written as "
                    "the bundle \"logits\", float32 (B, T, vocab), then exit (no training, no training data)",
                    "none"),
        integer_option(eval, "--norm-monitor-every", &C::norm_monitor_every, 0, kMaxCount,
                       "every N steps, before the update: each parameter tensor's (per layer) largest and mean "
                       "absolute weight and gradient, and the global L1 and L2 norms, into log.jsonl and "
                       "TensorBoard (the seed's NormMonitor; 0 = never)"),

        text_list_option(generation, "--generate", &C::generate, "TEXT",
                         "continue TEXT with the weights of -e CHECKPOINT (KV cache, one GPU, no training data), "
                         "print the completion and exit; repeat it for a batch of prompts; \"\" starts from "
                         "<|endoftext|>. Sampling: --temperature, --top-k, --top-p, --seed"),
        text_option(generation, "--prompt-file", &C::prompt_file, "FILE",
                    "more prompts, one per line (empty lines skipped), after those of --generate", "none"),
        choice_option<PromptFormat>(generation, "--prompt-format", &C::prompt_format,
                                    {{"text", PromptFormat::text}, {"tokens", PromptFormat::tokens}},
                                    "text: prompts are text, encoded with the GPT-2 vocabulary of --vocab-dir (a "
                                    "literal <|endoftext|> is that token), completions printed as text; tokens: token "
                                    "ids separated by spaces, as ./data_prep/tokenize encode prints them, completions "
                                    "printed as ids (no vocabulary needed)"),
        integer_option(generation, "--max-new-tokens", &C::max_new_tokens, 1, model_limits::kMaxSeqLen,
                       "tokens to generate per prompt (fewer where one ends at <|endoftext|>); each prompt plus "
                       "these must fit --max-seq-len"),
        text_option(generation, "--generate-out", &C::generate_out, "FILE",
                    "also write each completion as a JSON line: prompt index, prompt and new token ids, finish "
                    "(end_of_text or length), text",
                    "none"),
        text_option(generation, "--generate-logits-out", &C::generate_logits_out, "FILE",
                    "testing: the logits each new token was chosen from, the tensor bundle \"logits\" float32 "
                    "(prompts, --max-new-tokens, vocab) (zeros after a prompt stopped) and \"tokens\" int32 "
                    "(prompts, --max-new-tokens) (-1 after it stopped)",
                    "none"),
        integer_option(generation, "--generate-bench", &C::generate_bench, 0, 65535,
                       "benchmark: N sequences from <|endoftext|>, --max-new-tokens each (never stopping early), "
                       "with the weights of -e (a checkpoint, or a preset's random ones from --seed), then "
                       "`GENERATE_BENCH batch=... decode_tokens_per_s=...` (0 = off)"),
        bool_option(generation, "--generate-cuda-graph", &C::generate_cuda_graph,
                    "replay each decode step as one CUDA graph instead of launching its kernels one by one (the "
                    "same arithmetic; at small batches the launches take longer than the kernels)"),

        text_option(output, "--out-dir", &C::out_dir, "DIR", "run directory: config, log.jsonl, checkpoints",
                    "runs/<experiment>-<YYYYmmdd-HHMMSS>"),
        bool_option(output, "--tensorboard", &C::tensorboard,
                    "write a TensorBoard event file (events.out.tfevents.*) beside log.jsonl: losses, perplexity, "
                    "lr, gradient norm, loss scale, tokens/s, MFU, memory, HellaSwag, norms"),
        integer_option(output, "--checkpoint-every", &C::checkpoint_every, 0, kMaxCount,
                       "checkpoint every N steps, and at the end (0 = only at the end)"),
        integer_option(output, "--keep-best-checkpoints", &C::keep_best_checkpoints, 0, 1000000,
                       "delete older checkpoints except the newest, these N with the lowest validation loss, those "
                       "at multiples of --keep-checkpoint-every and the one resumed from (all: delete none)",
                       "all", kKeepAllCheckpoints),
        integer_option(output, "--keep-checkpoint-every", &C::keep_checkpoint_every, 0, kMaxCount,
                       "checkpoints at multiples of N are kept for good, also written when --checkpoint-every "
                       "does not fall on them (the seed's progress checkpoints; 0 = none)"),
        text_option(output, "--resume", &C::resume, "auto|DIR|FILE",
                    "continue exactly from a checkpoint: auto = the newest in --out-dir (fresh start if none), a "
                    "run directory, or a model_SSSSSSSS.bin",
                    "none"),

        zero_stage_option(distributed),
        bool_option(distributed, "--overlap-grad-reduce", &C::overlap_grad_reduce,
                    "ZeRO-0: all-reduce each layer's gradients on a second stream while the backward pass "
                    "computes the layers below (0 = after it); ZeRO-1 always reduce-scatters "
                    "after the backward pass, ZeRO-2 always overlaps"),
        integer_option(distributed, "--nproc", &C::nproc, 1, 4096, "GPUs (processes) to launch on this node"),
        text_option(distributed, "--rendezvous", &C::rendezvous, "PATH",
                    "file on a shared filesystem through which the processes find each other", "chosen by the launcher"),
        integer_option(distributed, "--nccl-timeout", &C::nccl_timeout, 1, 86400,
                       "seconds a collective may wait before the run aborts"),
    };
}

}  // namespace

const std::vector<Option>& options() {
    static const std::vector<Option> table = build_options();
    return table;
}

const Option* find_option(const std::string& flag) {
    for (const Option& option : options())
        if (option.flag == flag) return &option;
    return nullptr;
}
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1])});
        std::swap(previous, current);
    }
    return previous[b.size()];
}

std::vector<std::string> split_words(const std::string& text) {
    std::vector<std::string> words;
    std::string word;
    for (char c : text + "-") {
        if (c == '-' || c == '_') {
            if (!word.empty()) words.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    return words;
}

// Flags a mistyped one probably meant, best guesses first: those containing it (--data ->
// --data-dir, --dataset), else those sharing a word (--batch-size -> --device-batch), else
// near misses by edit distance (--lrr -> --lr).
std::vector<std::string> similar_flags(const std::string& flag) {
    const size_t name_start = flag.find_first_not_of('-');
    if (name_start == std::string::npos) return {};
    std::string stem = lowercase(flag.substr(name_start));
    std::replace(stem.begin(), stem.end(), '_', '-');
    std::vector<std::string> containing, sharing, near;
    for (const Option& option : options()) {
        const std::string candidate = option.flag.substr(2);
        if (candidate.find(stem) != std::string::npos) containing.push_back(option.flag);
        for (const std::string& word : split_words(stem))
            if (word.size() >= 3 && candidate.find(word) != std::string::npos) {
                sharing.push_back(option.flag);
                break;
            }
        if (edit_distance(stem, candidate) <= std::max<size_t>(1, stem.size() / 4)) near.push_back(option.flag);
    }
    std::vector<std::string>& best = !containing.empty() ? containing : !sharing.empty() ? sharing : near;
    if (best.size() > 3) best.resize(3);
    return best;
}

}  // namespace

ConfigError unknown_flag(const std::string& flag) {
    const std::vector<std::string> guesses = similar_flags(flag);
    std::string hint;
    for (size_t i = 0; i < guesses.size(); ++i)
        hint += (i == 0 ? "; did you mean " : i + 1 == guesses.size() ? " or " : ", ") + guesses[i];
    return ConfigError("unknown flag " + flag + hint + (guesses.empty() ? "" : "?") + " (--help lists every flag)");
}

}  // namespace config_internal
