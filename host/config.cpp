#include "host/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "host/gpu_specs.h"
#include "host/kernel_support.h"
#include "host/model_limits.h"

namespace fs = std::filesystem;

namespace {

using Json = nlohmann::ordered_json;

constexpr int64_t kMaxCount = int64_t{1} << 40;  // bound for step and token counts
constexpr int64_t kAutoWarmupSteps = -1;         // --warmup-steps auto: 1% of --steps
constexpr int64_t kWarmupPercentOfSteps = 1;     // the seed's warmup_t / num_warmup_steps = 0.01 * max_steps

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

bool parse_real(const std::string& text, double* value) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    char* end = nullptr;
    const double parsed = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(parsed)) return false;
    *value = parsed;
    return true;
}

bool parse_bool(const std::string& text, bool* value) {
    std::string lower = text;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "1" || lower == "true" || lower == "on" || lower == "yes") *value = true;
    else if (lower == "0" || lower == "false" || lower == "off" || lower == "no") *value = false;
    else return false;
    return true;
}

std::string lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    return text;
}

// The JSON rendering of a value, without quotes for strings: one formatter for the table, the
// help's defaults and error messages.
std::string display(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

std::string format_number(double value) { return display(Json(value)); }

// ---------------------------------------------------------------------------------------------
// The option table

struct Option {
    std::string flag;        // "--n-layer"
    std::string key;         // "n_layer": JSON key and table label
    std::string section;
    std::string value_name;  // placeholder in --help
    std::string help;
    std::string valid;       // the valid values, in words
    std::string default_note;  // replaces the shown default where it depends on the run
    std::function<std::string(const TrainConfig&)> problem;  // "" when the value is valid
    std::function<void(TrainConfig&, const std::string&)> set;  // throws ConfigError
    std::function<Json(const TrainConfig&)> get;
};

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
    option.problem = [](const TrainConfig&) { return std::string(); };
    option.set = [member](TrainConfig& config, const std::string& text) { config.*member = text; };
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

std::vector<Option> build_options() {
    using C = TrainConfig;
    const std::string model = "model", batch = "batch", optimizer = "optimizer", precision = "precision",
                      data = "data", run = "run", eval = "evaluation and samples", output = "output",
                      distributed = "distributed";
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
        integer_option(batch, "--device-batch", &C::device_batch, 1, 65536,
                       "B: sequences per GPU per micro-step; the global batch stays fixed, accumulation adapts"),
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
        text_option(data, "--vocab-dir", &C::vocab_dir, "DIR", "GPT-2 encoder.json + vocab.bpe, to decode samples",
                    "where `make setup` puts them"),

        integer_option(run, "--steps", &C::steps, 1, kMaxCount, "optimizer steps to train"),
        integer_option(run, "--seed", &C::seed, 0, LLONG_MAX, "seed of the init, the data order and dropout"),
        integer_option(run, "--log-every", &C::log_every, 1, kMaxCount, "console and log line every N steps"),
        integer_option(run, "--bench-steps", &C::bench_steps, 0, kMaxCount,
                       "benchmark: N steps on real data, then `BENCH tokens_per_s=... mfu=... peak_mem_gb=...` (0 = "
                       "off)"),
        integer_option(run, "--profile-step", &C::profile_step, 0, kMaxCount,
                       "bracket this step with cudaProfilerStart/Stop, for `ncu --profile-from-start off` "
                       "(dev/bench/step_breakdown.sh; 0 = off)"),
        integer_option(run, "--timeline-step", &C::timeline_step, 0, kMaxCount,
                       "print where this step's time went on rank 0's GPU (forward, backward, gradient "
                       "reduction left after it, optimizer; each layer's reduction), from CUDA events (0 = off)"),

        integer_option(eval, "--val-every", &C::val_every, 0, kMaxCount, "validation loss every N steps (0 = never)"),
        integer_option(eval, "--val-tokens", &C::val_tokens, 0, kMaxCount,
                       "cap on validation tokens per evaluation (0 = the whole split)"),
        integer_option(eval, "--sample-every", &C::sample_every, 0, kMaxCount, "text sample every N steps (0 = never)"),
        integer_option(eval, "--sample-tokens", &C::sample_tokens, 1, 1 << 20,
                       "tokens per sample, <= --max-seq-len (when not given: at most --max-seq-len)"),
        real_option(eval, "--temperature", &C::temperature, RealRange{0.0, 100.0, true, false}, "sampling temperature"),
        integer_option(eval, "--top-k", &C::top_k, 0, 1 << 24, "sample from the k most likely tokens (0 = all)"),

        text_option(output, "--out-dir", &C::out_dir, "DIR", "run directory: config, log.jsonl, checkpoints",
                    "runs/<experiment>-<YYYYmmdd-HHMMSS>"),
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

const std::vector<Option>& options() {
    static const std::vector<Option> table = build_options();
    return table;
}

const Option* find_option(const std::string& flag) {
    for (const Option& option : options())
        if (option.flag == flag) return &option;
    return nullptr;
}

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

ConfigError unknown_flag(const std::string& flag) {
    const std::vector<std::string> guesses = similar_flags(flag);
    std::string hint;
    for (size_t i = 0; i < guesses.size(); ++i)
        hint += (i == 0 ? "; did you mean " : i + 1 == guesses.size() ? " or " : ", ") + guesses[i];
    return ConfigError("unknown flag " + flag + hint + (guesses.empty() ? "" : "?") + " (--help lists every flag)");
}

// ---------------------------------------------------------------------------------------------
// Experiments

// The seed's runs (experiments.md). Shared by all of them: dropout 0.1 x 3, the
// 1/(layer_index+1) attention scaling, AdamW (0.9, 0.999, 1e-8) with weight decay 0.1 on linear
// weights, clip 1.0, seed 1111, learned positions, pre-norm, LayerNorm eps 1e-5.
struct SeedPreset {
    const char* name;
    int n_layer, n_embd, n_head, seq_len;
    int global_batch_seqs;
    int device_batch;     // fits an 80 GB GPU
    double lr;
    int64_t decay_end_step;  // cosine floor reached here; 0 = the last step (linear runs)
    int64_t steps;
    int64_t val_every;
    bool pile;            // The Pile (bf16, cosine, warmup from 1e-6) or OpenWebText (fp16, linear)
    InitScheme init_scheme;
    int64_t progress_checkpoint_every;  // model_checkpoint_progress.every_n_train_steps
    const char* short_run;   // the seed's 60,000-step variant ("30B" / "60B" tokens), "" if none
    int hdim128_heads;       // heads of the seed's -hdim128 variant (d_head 128), 0 if none
    bool zero1;              // the seed's strategy is DDPStrategyZero1 (optimizer state sharded)
    const char* note;     // oddities of the seed, shown in --help
};

constexpr SeedPreset kSeedPresets[] = {
    // name, L, C, heads, T, global batch, B, lr, decay end, steps, val every, pile, init,
    // progress checkpoints, short run, hdim128 heads, ZeRO-1, note
    {"gpt2s", 12, 768, 12, 1024, 512, 64, 6e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, false, ""},
    {"gpt2m", 24, 1024, 16, 1024, 512, 64, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, false, ""},
    {"gpt2l", 36, 1280, 20, 1024, 512, 32, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, true,
     "lr 1.5e-4 is inherited from gpt2m, a seed oddity kept on purpose"},
    {"gpt2xl", 48, 1600, 25, 1024, 512, 16, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, true,
     "lr 1.5e-4 is inherited from gpt2m, a seed oddity kept on purpose"},
    {"gpt3s", 12, 768, 12, 2048, 256, 32, 6e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, false,
     ""},
    {"gpt3m", 24, 1024, 16, 2048, 256, 32, 3e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, false,
     ""},
    {"gpt3l", 24, 1536, 16, 2048, 256, 16, 2.5e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, true,
     ""},
    {"gpt3xl", 24, 2048, 16, 2048, 512, 8, 2e-4, 300000, 400000, 1000, true, InitScheme::gpt2, 12500, "60B", 0, true,
     ""},
    {"gpt3-2.7B", 32, 2560, 32, 2048, 512, 4, 1.6e-4, 300000, 400000, 1000, true, InitScheme::small_init, 12500, "",
     20, true, "32 heads of 80 (-hdim128: 20 heads of 128); small_init"},
};

constexpr int kLongContext = 8192;                 // the -8k variants
constexpr int64_t kShortRunSteps = 60000;          // the -30B / -60B variants (trainer.max_steps)
constexpr int64_t kPileValTokenCap = 10 * (1 << 20);  // the Pile's val split is 383M tokens
constexpr int64_t kPresetCheckpointEvery = 1000;   // model_checkpoint.every_n_train_steps
constexpr int kPresetKeepBestCheckpoints = 3;      // model_checkpoint.save_top_k (monitor val/loss)
constexpr int kMaxDepthPreset = 256;               // dN: largest N

// dN and checkpoint-started runs: B so that B * T stays at 32 sequences of 1024 tokens for
// d12-sized models, halving for wider ones, so the activations fit an 80 GB GPU.
int default_device_batch(int n_embd, int seq_len) {
    const int batch_at_1024 = n_embd <= 768 ? 32 : n_embd <= 1280 ? 16 : 8;
    return std::max(1, static_cast<int>(int64_t{batch_at_1024} * 1024 / seq_len));
}

TrainConfig base_config(const ParseContext& context) {
    TrainConfig config;
    config.data_dir = context.data_dir_env.empty() ? "data" : context.data_dir_env;
    return config;
}

void apply_seed_preset(const SeedPreset& preset, TrainConfig& config) {
    config.n_layer = preset.n_layer;
    config.n_embd = preset.n_embd;
    config.n_head = preset.n_head;
    config.max_seq_len = config.seq_len = preset.seq_len;
    config.global_batch_tokens = int64_t{preset.global_batch_seqs} * preset.seq_len;
    config.device_batch = preset.device_batch;
    config.lr = preset.lr;
    config.warmup_steps = kAutoWarmupSteps;
    config.warmup_init_lr = preset.pile ? 1e-6 : 0.0;
    config.schedule = preset.pile ? LrScheduleKind::cosine : LrScheduleKind::linear;
    config.decay_end_step = preset.decay_end_step;
    config.min_lr_ratio = preset.pile ? 0.1 : 0.0;
    config.steps = preset.steps;
    config.precision = preset.pile ? Precision::bf16 : Precision::fp16;
    config.dataset = preset.pile ? "the_pile" : "openwebtext";
    config.val_every = config.sample_every = preset.val_every;
    config.val_tokens = preset.pile ? kPileValTokenCap : 0;  // OpenWebText's 4.4M-token holdout in full
    config.checkpoint_every = kPresetCheckpointEvery;
    config.keep_best_checkpoints = kPresetKeepBestCheckpoints;
    config.keep_checkpoint_every = preset.progress_checkpoint_every;
    config.dropout_embd = config.dropout_resid = config.dropout_attn = 0.1;
    config.scale_attn_by_inverse_layer_idx = true;
    config.fp32_residual = true;  // residual_in_fp32 in owt/gpt2s-flash and pile/gpt3s-flash, inherited by all
    config.init_scheme = preset.init_scheme;
}

void apply_rotary_variant(TrainConfig& config) {
    config.learned_pos_emb = false;
    config.rotary_fraction = 0.5;
    config.rotary_base = 10000;
    config.rotary_interleaved = false;
}

// Sequences of 8192 with the global batch unchanged in tokens: 64 sequences for 524,288 tokens,
// 128 for gpt3xl and gpt3-2.7B (1,048,576), as the seed's -8k configs; tokens per GPU too.
void apply_8k_variant(TrainConfig& config) {
    config.device_batch = std::max(1, static_cast<int>(int64_t{config.device_batch} * config.seq_len / kLongContext));
    config.max_seq_len = config.seq_len = kLongContext;
}

// The seed's -30B / -60B runs: 60,000 steps with the cosine reaching its floor at the last step
// (t_initial: ${trainer.max_steps}); the warmup follows the steps (1%: 600).
void apply_short_run_variant(TrainConfig& config) {
    config.steps = kShortRunSteps;
    config.decay_end_step = 0;
}

// An experiment name: a seed preset and its variants, any order after the preset's name.
struct PresetChoice {
    const SeedPreset* preset = nullptr;
    bool hdim128 = false, rotary = false, long_context = false, short_run = false;

    std::string name() const {
        return std::string(preset->name) + (hdim128 ? "-hdim128" : "") + (rotary ? "-rotary" : "") +
               (long_context ? "-8k" : "") + (short_run ? std::string("-") + preset->short_run : "");
    }
};

// nullopt when `name` is no preset name; throws ConfigError for a variant the preset lacks.
std::optional<PresetChoice> parse_preset_name(const std::string& name) {
    const std::string lower = lowercase(name);
    for (const SeedPreset& preset : kSeedPresets) {
        const std::string base = lowercase(preset.name);
        if (lower.compare(0, base.size(), base) != 0) continue;
        std::string rest = lower.substr(base.size());
        const auto take = [&rest](const char* suffix, bool& seen) {
            if (seen || rest.rfind(suffix, 0) != 0) return false;
            seen = true;
            rest.erase(0, std::strlen(suffix));
            return true;
        };
        PresetChoice choice;
        choice.preset = &preset;
        bool run_30b = false, run_60b = false;
        while (take("-rotary", choice.rotary) || take("-8k", choice.long_context) || take("-hdim128", choice.hdim128) ||
               take("-30b", run_30b) || take("-60b", run_60b)) {
        }
        if (!rest.empty() || (run_30b && run_60b)) continue;
        if (run_30b || run_60b) {
            const std::string asked = run_30b ? "30B" : "60B";
            if (asked != preset.short_run) {
                std::string owners;
                for (const SeedPreset& other : kSeedPresets)
                    if (asked == other.short_run) owners += std::string(owners.empty() ? "" : ", ") + other.name;
                throw ConfigError("-e " + name + ": the seed has no " + preset.name + " -" + asked + " run; -" + asked +
                                  " (60,000 steps) is a variant of " + owners);
            }
            choice.short_run = true;
        }
        if (choice.hdim128 && preset.hdim128_heads == 0)
            throw ConfigError("-e " + name + ": -hdim128 (heads of 128) is a variant of gpt3-2.7B only, as in the seed");
        return choice;
    }
    return std::nullopt;
}

// GPT-2 family shapes with d_head 64: d12/d24/d36/d48 are GPT-2 small/medium/large/xl. Other
// depths interpolate the head count between those four linearly; below 12 layers the width is
// 64 per layer (as d12: 768 = 64 * 12), above 48 the width-to-depth ratio of d48 is kept.
int depth_preset_heads(int n_layer) {
    const int anchors[][2] = {{12, 12}, {24, 16}, {36, 20}, {48, 25}};
    if (n_layer <= 12) return n_layer;
    if (n_layer >= 48) return static_cast<int>(std::lround(25.0 * n_layer / 48.0));
    for (int i = 0; i + 1 < 4; ++i) {
        const int lo = anchors[i][0], hi = anchors[i + 1][0];
        if (n_layer <= hi) {
            const double t = static_cast<double>(n_layer - lo) / (hi - lo);
            return static_cast<int>(std::lround(anchors[i][1] + t * (anchors[i + 1][1] - anchors[i][1])));
        }
    }
    return 25;
}

bool parse_depth_preset(const std::string& name, int* n_layer) {
    if (name.size() < 2 || name[0] != 'd') return false;
    long long depth = 0;
    if (!std::all_of(name.begin() + 1, name.end(), [](unsigned char c) { return std::isdigit(c); }) ||
        !parse_integer(name.substr(1), &depth))
        return false;
    if (depth < 1 || depth > kMaxDepthPreset)
        throw ConfigError("-e " + name + ": dN takes N from 1 to " + std::to_string(kMaxDepthPreset));
    *n_layer = static_cast<int>(depth);
    return true;
}

// Round-up multiple of the largest power of two that reproduces `padded` from `vocab`, so a
// checkpoint's padded vocabulary comes back as a natural --pad-vocab-to.
int pad_multiple_for(int vocab, int padded) {
    for (int multiple = 65536; multiple > 1; multiple /= 2)
        if ((vocab + multiple - 1) / multiple * multiple == padded) return multiple;
    return padded == vocab ? 1 : padded;
}

TrainConfig checkpoint_config(const std::string& path, const ParseContext& context) {
    ModelFileHeader header;
    try {
        header = read_model_header(path);
    } catch (const std::exception& e) {
        throw ConfigError(std::string("-e ") + path + ": " + e.what());
    }
    const ModelShape& shape = header.shape;
    TrainConfig config = base_config(context);
    config.experiment = path;
    config.init_from = path;
    config.n_layer = shape.n_layer;
    config.n_embd = shape.n_embd;
    config.n_head = shape.n_head;
    config.max_seq_len = config.seq_len = shape.max_seq_len;
    config.vocab_size = shape.vocab_size;
    config.pad_vocab_to = pad_multiple_for(shape.vocab_size, shape.padded_vocab_size);
    config.learned_pos_emb = shape.learned_pos_emb;
    config.post_norm = shape.post_norm;
    config.rotary_interleaved = shape.rotary_interleaved;
    config.scale_attn_by_inverse_layer_idx = shape.scale_attn_by_inverse_layer_idx;
    config.fp32_residual = shape.fp32_residual;
    config.rotary_fraction = static_cast<double>(shape.rotary_dim) / (shape.n_embd / shape.n_head);
    config.rotary_base = shape.rotary_base;
    config.device_batch = default_device_batch(shape.n_embd, config.seq_len);
    return config;
}

// A run from a checkpoint takes the file's shape; a shape flag that contradicts it is an error,
// not a model that could not load its weights.
void check_checkpoint_shape(const TrainConfig& config) {
    try {
        check_model_shape(config.init_from, read_model_header(config.init_from).shape, config.model_shape());
    } catch (const std::exception& e) {
        throw ConfigError("-e " + config.init_from + ": " + e.what() +
                          "; a checkpoint's shape is fixed: drop the flag, or start a new model from a preset or dN");
    }
}

std::string parameter_count_text(int64_t count) {
    char text[32];
    if (count >= 1000000000) std::snprintf(text, sizeof(text), "%.1fB", count / 1e9);
    else std::snprintf(text, sizeof(text), "%.0fM", count / 1e6);
    return text;
}

// Help lines of a preset, each prefixed by `indent` after the first.
std::string preset_summary(const SeedPreset& preset, const std::string& indent) {
    TrainConfig config;
    apply_seed_preset(preset, config);
    config.resolve(1);
    std::ostringstream out;
    out << (preset.pile ? "GPT-3 " : "GPT-2 ") << parameter_count_text(config.num_params) << ": " << preset.n_layer
        << " layers x " << preset.n_embd << ", " << preset.n_head << " heads, T " << preset.seq_len << "; "
        << (preset.pile ? "The Pile, bf16" : "OpenWebText, fp16") << "\n"
        << indent << "batch " << preset.global_batch_seqs << " x " << preset.seq_len << " (B " << preset.device_batch
        << "), lr " << format_number(preset.lr) << ", warmup " << config.warmup_steps << " (1% of the steps)"
        << (preset.pile ? " from 1e-06" : "");
    if (preset.pile)
        out << ", cosine to 0.1 lr at step " << preset.decay_end_step << " of " << preset.steps;
    else
        out << ", linear to 0 at step " << preset.steps;
    if (preset.note[0] != '\0') out << "\n" << indent << preset.note;
    return out.str();
}

std::string timestamp(std::time_t now) {
    std::tm local{};
    localtime_r(&now, &local);
    char text[32];
    std::strftime(text, sizeof(text), "%Y%m%d-%H%M%S", &local);
    return text;
}

std::string experiment_label(const TrainConfig& config) {
    return config.init_from.empty() ? config.experiment : fs::path(config.init_from).stem().string();
}

std::string join_path(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Experiments

std::vector<std::string> preset_names() {
    std::vector<std::string> names;
    for (const SeedPreset& preset : kSeedPresets) names.push_back(preset.name);
    return names;
}

TrainConfig experiment_config(const std::string& name, const ParseContext& context) {
    TrainConfig config = base_config(context);
    int depth = 0;
    if (parse_depth_preset(name, &depth)) {
        config.experiment = name;
        config.n_layer = depth;
        config.n_head = depth_preset_heads(depth);
        config.n_embd = 64 * config.n_head;
        config.device_batch = default_device_batch(config.n_embd, config.seq_len);
        return config;
    }

    if (const std::optional<PresetChoice> choice = parse_preset_name(name)) {
        apply_seed_preset(*choice->preset, config);
        if (choice->hdim128) config.n_head = choice->preset->hdim128_heads;
        if (choice->rotary) apply_rotary_variant(config);
        if (choice->long_context) apply_8k_variant(config);
        if (choice->short_run) apply_short_run_variant(config);
        config.experiment = choice->name();
        return config;
    }

    // Not a preset name (those win over a file of the same name in the working directory).
    std::error_code error;
    if (fs::is_regular_file(name, error)) return checkpoint_config(name, context);

    std::string names;
    for (const SeedPreset& preset : kSeedPresets) names += std::string(names.empty() ? "" : ", ") + preset.name;
    const bool looks_like_path = name.find('/') != std::string::npos ||
                                 (name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0);
    throw ConfigError("-e " + name + ": " + (looks_like_path ? "no such checkpoint file. " : "unknown experiment. ") +
                      "Expected a preset (" + names + ", each also with -rotary and/or -8k; see --help for "
                      "-30B, -60B, -hdim128), dN (GPT-2 shape "
                      "with N layers, e.g. d12), or the path of a model checkpoint");
}

// ---------------------------------------------------------------------------------------------
// Resolution and rendering

namespace {

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

}  // namespace

void TrainConfig::resolve(int num_processes) {
    if (num_processes < 1) throw ConfigError("world size " + std::to_string(num_processes) + " must be at least 1");
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
    if (dataset.empty() && (train_glob.empty() || val_glob.empty()))
        throw ConfigError("--dataset is empty: give a dataset name (e.g. tiny), or both --train-glob and --val-glob");

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
    const int64_t micro_batch_tokens = int64_t{world_size} * device_batch * seq_len;
    const int64_t micro_steps = (global_batch_tokens + micro_batch_tokens - 1) / micro_batch_tokens;
    if (micro_steps > INT32_MAX)
        throw ConfigError("--global-batch-tokens " + std::to_string(global_batch_tokens) + " takes " +
                          std::to_string(micro_steps) + " micro-steps of " + std::to_string(device_batch) + " x " +
                          std::to_string(seq_len) + " tokens on " + std::to_string(world_size) + " GPU(s), more than " +
                          std::to_string(INT32_MAX) + ": use a larger --device-batch or --seq-len");
    grad_accum = static_cast<int>(micro_steps);
    tokens_per_step = micro_steps * micro_batch_tokens;
    base_init_std = init_scheme == InitScheme::small_init ? std::sqrt(2.0 / (5.0 * n_embd)) : init_std;
    residual_init_std = residual_projection_init_std(base_init_std, n_layer);
    num_params = ParamLayout(model_shape(), base_init_std).total();
    flops_per_token = ::flops_per_token(num_params, n_layer, n_embd, seq_len);
    const std::optional<PresetChoice> preset = parse_preset_name(experiment);
    zero_stage = zero_stage_setting != kZeroStageAuto ? zero_stage_setting
                 : world_size > 1 && preset && preset->preset->zero1 ? 1
                                                                     : 0;
    const std::string dataset_dir = join_path(data_dir, dataset);
    train_pattern = train_glob.empty() ? join_path(dataset_dir, "*_train_*.bin") : train_glob;
    val_pattern = val_glob.empty() ? join_path(dataset_dir, "*_val_*.bin") : val_glob;
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
    rows.push_back({derived, "grad_accum", config.grad_accum});
    rows.push_back({derived, "tokens_per_step", config.tokens_per_step});
    rows.push_back({derived, "base_init_std", config.base_init_std});
    rows.push_back({derived, "residual_init_std", config.residual_init_std});
    rows.push_back({derived, "num_params", config.num_params});
    rows.push_back({derived, "flops_per_token", config.flops_per_token});
    rows.push_back({derived, "train_pattern", config.train_pattern});
    rows.push_back({derived, "val_pattern", config.val_pattern});
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

// ---------------------------------------------------------------------------------------------
// Command line

ParseContext parse_context_from_environment() {
    ParseContext context;
    if (const char* data_dir = std::getenv("DATA_DIR")) context.data_dir_env = data_dir;
    // One run, one directory: the --nproc launcher fixes the start time for all its ranks.
    const char* run_time = std::getenv("GPT_RUN_TIMESTAMP");
    char* end = nullptr;
    const long long fixed = run_time ? std::strtoll(run_time, &end, 10) : 0;
    context.now = run_time && *run_time && *end == '\0' && fixed > 0 ? static_cast<std::time_t>(fixed) : std::time(nullptr);
    return context;
}

ParsedArgs parse_args(int argc, char** argv) {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    return parse_args(args, parse_context_from_environment());
}

ParsedArgs parse_args(const std::vector<std::string>& args, const ParseContext& context) {
    ParsedArgs parsed;
    for (const std::string& arg : args) {
        if (arg == "--help" || arg == "-h") {
            parsed.show_help = true;
            return parsed;
        }
    }

    std::string experiment = "d12";
    bool experiment_given = false;
    std::vector<std::pair<const Option*, std::string>> overrides;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "-e") {
            if (i + 1 >= args.size())
                throw ConfigError("-e needs a value: a preset (e.g. gpt2s), dN, or a model checkpoint file");
            if (experiment_given) throw ConfigError("-e given twice (" + experiment + ", " + args[i + 1] + ")");
            experiment = args[++i];
            experiment_given = true;
            continue;
        }
        if (arg == "--print-config") {
            parsed.print_config = true;
            continue;
        }
        if (arg.rfind("--", 0) != 0)
            throw ConfigError("unexpected argument '" + arg + "': options are -e NAME and --flag VALUE (see --help)");
        const size_t equals = arg.find('=');
        const std::string flag = arg.substr(0, equals);
        const Option* option = find_option(flag);
        if (!option) throw unknown_flag(flag);
        std::string value;
        if (equals != std::string::npos) {
            value = arg.substr(equals + 1);
        } else {
            if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)
                throw ConfigError(flag + " needs a value (" +
                                  (option->valid.empty() ? option->value_name : option->valid) + ")");
            value = args[++i];
        }
        overrides.emplace_back(option, value);
    }

    parsed.config = experiment_config(experiment, context);
    TrainConfig& config = parsed.config;
    std::set<std::string> given;
    for (const auto& [option, value] : overrides) {
        option->set(config, value);
        given.insert(option->key);
    }
    // The default sample length must not be an error for a model with short positions; an
    // explicit --sample-tokens beyond --max-seq-len still is (resolve()).
    if (!given.count("sample_tokens")) config.sample_tokens = std::min(config.sample_tokens, config.max_seq_len);
    // The presets keep the residual stream in fp32, a pre-norm feature (the seed's blocks assert
    // it): --post-norm 1 on a preset drops it, while --post-norm 1 --fp32-residual 1 stays an
    // error (resolve()).
    if (config.post_norm && given.count("post_norm") && !given.count("fp32_residual")) config.fp32_residual = false;

    if (config.out_dir.empty()) {
        if (config.resume == "auto")
            throw ConfigError("--resume auto continues the newest checkpoint in --out-dir: give the run's directory, "
                              "e.g. --out-dir runs/" + experiment_label(config) + "-" + timestamp(context.now));
        config.out_dir = join_path("runs", experiment_label(config) + "-" + timestamp(context.now));
    }
    config.resolve(config.nproc);
    if (!config.init_from.empty()) check_checkpoint_shape(config);
    return parsed;
}

std::string help_text() {
    constexpr size_t kHelpColumn = 38;
    std::ostringstream out;
    out << "usage: train_gpt2cu [-e EXPERIMENT] [--flag VALUE | --flag=VALUE ...]\n"
           "       train_gpt2cu -e EXPERIMENT --print-config   print every resolved setting as JSON, then exit\n"
           "\n"
           "The experiment sets every field; flags then override fields one by one.\n"
           "\n"
           "Experiments (-e, default d12):\n";
    constexpr size_t kNameColumn = 11;
    for (const SeedPreset& preset : kSeedPresets) {
        std::string name = preset.name;
        name.resize(kNameColumn, ' ');
        out << "  " << name << "  " << preset_summary(preset, std::string(kNameColumn + 4, ' ')) << "\n";
    }
    out << "  NAME-rotary  any of the above with rotary embeddings on half of each head's dims (base 10000,\n"
           "               GPT-NeoX halves) instead of learned positions\n"
           "  NAME-8k      any of the above (or NAME-rotary-8k) with 8192-token sequences; the global batch\n"
           "               keeps its tokens (64 sequences, 128 for gpt3xl and gpt3-2.7B)\n"
           "  NAME-30B     gpt3s, gpt3m, gpt3l (the seed runs them -rotary-30B): 60,000 steps (31B tokens),\n"
           "               the cosine reaching its floor at the last step, warmup 600\n"
           "  NAME-60B     gpt3xl (the seed runs gpt3xl-rotary-60B): the same with 1M-token steps (63B tokens)\n"
           "  gpt3-2.7B-hdim128  20 heads of 128 instead of 32 of 80, also with -rotary and -8k\n"
           "  dN           GPT-2 shape with N layers, d_head 64 (d12 124M, d24 355M, d36 774M, d48 1.6B; other\n"
           "               N interpolate the width); a quick recipe for the tiny dataset: bf16, no dropout\n"
           "  FILE         a model_SSSSSSSS.bin checkpoint: its shape and weights, dN's training recipe\n"
           "\n"
           "All seed presets: dropout 0.1 (embeddings, residuals, attention), attention scaled by\n"
           "1/(layer_index+1), the residual stream in fp32, AdamW (0.9, 0.999, eps 1e-8, weight decay 0.1\n"
           "on linear weights), clip 1.0, seed 1111; OpenWebText validates the whole holdout, The Pile the\n"
           "first 10,485,760 tokens.\n";

    const TrainConfig defaults = experiment_config("d12", ParseContext{});
    std::string section;
    for (const Option& option : options()) {
        if (option.section != section) {
            section = option.section;
            out << "\n" << section << ":\n";
        }
        std::string usage = option.flag + " " + option.value_name;
        usage.resize(std::max<size_t>(usage.size(), kHelpColumn), ' ');
        const std::string default_value = option.default_note.empty() ? display(option.get(defaults))
                                                                       : option.default_note;
        out << "  " << usage << " " << option.help << "\n"
            << "  " << std::string(kHelpColumn, ' ') << " " << (option.valid.empty() ? "" : option.valid + "; ")
            << "default " << (default_value.empty() ? "none" : default_value) << "\n";
    }
    std::string print_config = "--print-config", help = "--help, -h";
    print_config.resize(kHelpColumn, ' ');
    help.resize(kHelpColumn, ' ');
    out << "\nother:\n"
        << "  " << print_config << " print the resolved configuration as JSON and exit\n"
        << "  " << help << " this text\n";
    return out.str();
}
