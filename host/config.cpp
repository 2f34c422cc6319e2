// TrainConfig's own functions: resolve() (every range and combination checked, the shapes the
// kernels run among them, and the derived fields computed), the views other modules take of a
// configuration (model shape, learning-rate schedule, checkpoint retention), and its rendering
// as JSON (--print-config, the run directory's config) and as the start-up table. The option
// table, the experiments and the command line live in config_options.cpp, config_presets.cpp
// and config_command_line.cpp (host/config_internal.h is what they share).

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "host/config_internal.h"
#include "host/gpu_specs.h"
#include "host/kernel_support.h"

using config_internal::display;
using config_internal::format_number;
using config_internal::Json;
using config_internal::kAutoWarmupSteps;
using config_internal::Option;
using config_internal::options;

namespace {

constexpr int64_t kWarmupPercentOfSteps = 1;  // the seed's warmup_t / num_warmup_steps = 0.01 * max_steps

// The shapes the CUDA kernels run (host/kernel_support.h), so that a bad one fails here and not
// after minutes of start-up on a GPU.
void check_kernel_support(const TrainConfig& config) {
    using namespace kernel_support;
    const std::string width = "--n-embd " + std::to_string(config.n_embd);
    if (config.n_embd % kVectorElements != 0)
        throw ConfigError(width + " is not a multiple of " + std::to_string(kVectorElements) +
                          ": the kernels move 16-byte vectors of " + std::to_string(kVectorElements) + " values");
    if (config.n_embd > kLayerNormMaxWidth)
        throw ConfigError(width + " is wider than the fused LayerNorm's " + std::to_string(kLayerNormMaxWidth));
    if (config.n_embd % config.n_head != 0)
        throw ConfigError(width + " is not divisible by --n-head " + std::to_string(config.n_head));
    const int head_dim = config.n_embd / config.n_head;
    if (!is_attention_head_dim(head_dim)) {
        std::string supported, choices;
        for (int dim : kAttentionHeadDims) {
            supported += (supported.empty() ? "" : ", ") + std::to_string(dim);
            if (config.n_embd % dim == 0)
                choices += (choices.empty() ? "" : ", ") + std::to_string(config.n_embd / dim) + " (heads of " +
                           std::to_string(dim) + ")";
        }
        throw ConfigError(width + " / --n-head " + std::to_string(config.n_head) + " gives heads of " +
                          std::to_string(head_dim) + "; the attention kernels support " + supported + ". " +
                          (choices.empty() ? "Choose --n-embd as a multiple of one of them"
                                           : "For this width use --n-head " + choices));
    }
    const int64_t padded = (int64_t{config.vocab_size} + config.pad_vocab_to - 1) / config.pad_vocab_to *
                           config.pad_vocab_to;
    if (padded % kVectorElements != 0)
        throw ConfigError("--vocab-size " + std::to_string(config.vocab_size) + " padded to a multiple of --pad-vocab-to " +
                          std::to_string(config.pad_vocab_to) + " is " + std::to_string(padded) +
                          ", not a multiple of " + std::to_string(kVectorElements) +
                          " (the cross-entropy kernel's 16-byte rows): use --pad-vocab-to 64 or 128");
}

// --logits-out and --hellaswag-only run a checkpoint's forward pass instead of training: they
// need its weights and run on one GPU.
void check_standalone_modes(const TrainConfig& config, int num_processes) {
    if (config.logits_in.empty() != config.logits_out.empty())
        throw ConfigError(std::string(config.logits_in.empty() ? "--logits-out" : "--logits-in") +
                          " needs " + (config.logits_in.empty() ? "--logits-in" : "--logits-out") +
                          ": the tokens come from one bundle and the logits go to the other");
    const bool logits = !config.logits_out.empty();
    if (logits && config.hellaswag_only)
        throw ConfigError("--logits-out and --hellaswag-only are two runs: give one of them");
    if (!logits && !config.hellaswag_only) return;
    const std::string mode = logits ? "--logits-out" : "--hellaswag-only";
    if (config.eval_only)
        throw ConfigError(mode + " and --eval-only are two runs: give one of them (--eval-only: the validation "
                          "and test losses)");
    if (config.init_from.empty())
        throw ConfigError(mode + " evaluates a trained model: give its checkpoint with -e model_SSSSSSSS.bin");
    if (num_processes > 1 || config.nproc > 1)
        throw ConfigError(mode + " runs on one GPU: drop --nproc and mpirun");
}

}  // namespace

void TrainConfig::resolve(int num_processes) {
    if (num_processes < 1) throw ConfigError("world size " + std::to_string(num_processes) + " must be at least 1");
    // First: the default --out-dir is named after the checkpoint, and would be blamed instead.
    if (const std::string problem = config_internal::utf8_problem(init_from); !problem.empty())
        throw ConfigError("-e FILE " + problem);
    for (const Option& option : options()) {
        const std::string problem = option.problem(*this);
        if (!problem.empty()) throw ConfigError(option.flag + " " + problem);
    }
    check_kernel_support(*this);
    if (seq_len > max_seq_len)
        throw ConfigError("--seq-len " + std::to_string(seq_len) + " exceeds the model's --max-seq-len " +
                          std::to_string(max_seq_len) + " (the positions it has embeddings for)");
    if (sample_tokens > max_seq_len)
        throw ConfigError("--sample-tokens " + std::to_string(sample_tokens) + " exceeds the model's --max-seq-len " +
                          std::to_string(max_seq_len));
    if (top_k > vocab_size)
        throw ConfigError("--top-k " + std::to_string(top_k) + " exceeds --vocab-size " + std::to_string(vocab_size));
    if (post_norm && fp32_residual)
        throw ConfigError("--fp32-residual needs pre-norm blocks; drop it or set --post-norm 0");
    check_standalone_modes(*this, num_processes);
    if (dataset.empty() && (train_glob.empty() || val_glob.empty()))
        throw ConfigError("--dataset is empty: give a dataset name (e.g. tiny), or both --train-glob and --val-glob");
    if (eval_only && resume.empty() && init_from.empty())
        throw ConfigError("--eval-only evaluates a checkpoint: name it with --resume auto|DIR|FILE (a run's "
                          "checkpoint; -e names the experiment it trained) or -e model_SSSSSSSS.bin (the shape "
                          "comes from the file)");
    if (eval_only && bench_steps > 0)
        throw ConfigError("--eval-only and --bench-steps exclude each other: evaluate a checkpoint, or benchmark "
                          "training steps");

    d_head = n_embd / n_head;
    rotary_dim = 0;
    if (rotary_fraction > 0.0) {
        const double dims = rotary_fraction * d_head;
        const long rounded = std::lround(dims);
        if (std::fabs(dims - rounded) > 1e-6 || rounded % 2 != 0 || rounded == 0)
            throw ConfigError("--rotary-fraction " + format_number(rotary_fraction) + " gives rotary_dim " +
                              format_number(dims) + " of d_head " + std::to_string(d_head) +
                              ": it must be a whole, even, positive number of dims");
        rotary_dim = static_cast<int>(rounded);
    }

    world_size = num_processes;
    padded_vocab_size = static_cast<int>((int64_t{vocab_size} + pad_vocab_to - 1) / pad_vocab_to * pad_vocab_to);
    if (min_lr_ratio < 0.0) min_lr_ratio = schedule == LrScheduleKind::cosine ? 0.1 : 0.0;
    if (warmup_steps == kAutoWarmupSteps) warmup_steps = (steps * kWarmupPercentOfSteps + 99) / 100;
    if (decay_end_step == 0) decay_end_step = steps;
    const int64_t gpu_tokens = int64_t{world_size} * seq_len;
    sequences_per_gpu = (global_batch_tokens + gpu_tokens - 1) / gpu_tokens;
    // auto: B divides sequences_per_gpu (host/device_batch.h), so the step holds as many tokens as
    // it will with the B the GPU gets.
    const int batch = device_batch == kDeviceBatchAuto ? 1 : device_batch;
    const int64_t micro_batch_tokens = gpu_tokens * batch;
    const int64_t micro_steps = (global_batch_tokens + micro_batch_tokens - 1) / micro_batch_tokens;
    if (micro_steps > INT32_MAX)
        throw ConfigError("--global-batch-tokens " + std::to_string(global_batch_tokens) + " takes " +
                          std::to_string(micro_steps) + " micro-steps of " + std::to_string(batch) + " x " +
                          std::to_string(seq_len) + " tokens on " + std::to_string(world_size) + " GPU(s), more than " +
                          std::to_string(INT32_MAX) + ": use a larger --device-batch or --seq-len");
    grad_accum = device_batch == kDeviceBatchAuto ? 0 : static_cast<int>(micro_steps);
    tokens_per_step = micro_steps * micro_batch_tokens;
    base_init_std = init_scheme == InitScheme::small_init ? std::sqrt(2.0 / (5.0 * n_embd)) : init_std;
    residual_init_std = residual_projection_init_std(base_init_std, n_layer);
    num_params = ParamLayout(model_shape(), base_init_std).total();
    flops_per_token = ::flops_per_token(num_params, n_layer, n_embd, seq_len);
    const bool seed_shards = config_internal::seed_shards_optimizer_state(experiment);
    zero_stage = zero_stage_setting != kZeroStageAuto ? zero_stage_setting : world_size > 1 && seed_shards ? 1 : 0;
    const std::string dataset_dir = config_internal::join_path(data_dir, dataset);
    train_pattern = train_glob.empty() ? config_internal::join_path(dataset_dir, "*_train_*.bin") : train_glob;
    val_pattern = val_glob.empty() ? config_internal::join_path(dataset_dir, "*_val_*.bin") : val_glob;
    test_pattern = !test_glob.empty() ? test_glob
                   : dataset.empty()  ? ""
                                      : config_internal::join_path(dataset_dir, "*_test_*.bin");
    hellaswag_path = hellaswag_file.empty()
                         ? config_internal::join_path(config_internal::join_path(data_dir, "hellaswag"), "hellaswag_val.bin")
                         : hellaswag_file;
}

TrainConfig TrainConfig::with_device_batch(int batch) const {
    TrainConfig chosen = *this;
    chosen.device_batch = batch;
    chosen.resolve(world_size);
    return chosen;
}

ModelShape TrainConfig::model_shape() const {
    ModelShape shape;
    shape.n_layer = n_layer;
    shape.n_embd = n_embd;
    shape.n_head = n_head;
    shape.max_seq_len = max_seq_len;
    shape.vocab_size = vocab_size;
    shape.padded_vocab_size = padded_vocab_size;
    shape.learned_pos_emb = learned_pos_emb;
    shape.post_norm = post_norm;
    shape.rotary_interleaved = rotary_interleaved;
    shape.scale_attn_by_inverse_layer_idx = scale_attn_by_inverse_layer_idx;
    shape.fp32_residual = fp32_residual;
    shape.rotary_dim = rotary_dim;
    shape.rotary_base = rotary_base;
    return shape;
}

RetentionPolicy TrainConfig::checkpoint_retention() const {
    RetentionPolicy policy;
    policy.keep_best = keep_best_checkpoints;
    policy.keep_every = keep_checkpoint_every;
    return policy;
}

LrSchedule TrainConfig::lr_schedule() const {
    LrSchedule schedule_out;
    schedule_out.kind = schedule;
    schedule_out.lr = lr;
    schedule_out.warmup_init_lr = warmup_init_lr;
    schedule_out.warmup_steps = warmup_steps;
    schedule_out.decay_end_step = decay_end_step;
    schedule_out.min_lr_ratio = min_lr_ratio;
    return schedule_out;
}

namespace {

// (section, key, value) rows in print order: the experiment, every option, then derived fields.
struct Row {
    std::string section, key;
    Json value;
};

std::vector<Row> config_rows(const TrainConfig& config) {
    std::vector<Row> rows;
    rows.push_back({"experiment", "experiment", config.experiment});
    rows.push_back({"experiment", "init_from", config.init_from});
    for (const Option& option : options()) rows.push_back({option.section, option.key, option.get(config)});
    const std::string derived = "derived";
    rows.push_back({derived, "world_size", config.world_size});
    rows.push_back({derived, "padded_vocab_size", config.padded_vocab_size});
    rows.push_back({derived, "d_head", config.d_head});
    rows.push_back({derived, "rotary_dim", config.rotary_dim});
    rows.push_back({derived, "grad_accum",
                    config.device_batch == kDeviceBatchAuto ? Json("auto") : Json(config.grad_accum)});
    rows.push_back({derived, "tokens_per_step", config.tokens_per_step});
    rows.push_back({derived, "sequences_per_gpu", config.sequences_per_gpu});
    rows.push_back({derived, "base_init_std", config.base_init_std});
    rows.push_back({derived, "residual_init_std", config.residual_init_std});
    rows.push_back({derived, "num_params", config.num_params});
    rows.push_back({derived, "flops_per_token", config.flops_per_token});
    rows.push_back({derived, "train_pattern", config.train_pattern});
    rows.push_back({derived, "val_pattern", config.val_pattern});
    rows.push_back({derived, "test_pattern", config.test_pattern});
    return rows;
}

}  // namespace

std::string TrainConfig::to_json() const {
    Json object = Json::object();
    for (const Row& row : config_rows(*this)) object[row.key] = row.value;
    return object.dump(2);
}

std::string TrainConfig::to_table() const {
    const std::vector<Row> rows = config_rows(*this);
    size_t width = 0;
    for (const Row& row : rows) width = std::max(width, row.key.size());
    std::ostringstream out;
    std::string section;
    for (const Row& row : rows) {
        if (row.section != section) {
            section = row.section;
            out << section << "\n";
        }
        const std::string value = display(row.value);
        out << "  " << row.key << std::string(width + 2 - row.key.size(), ' ') << (value.empty() ? "-" : value)
            << "\n";
    }
    return out.str();
}

std::string config_internal::join_path(const std::string& dir, const std::string& name) {
    return (std::filesystem::path(dir) / name).string();
}
