// The experiments -e names, each a complete TrainConfig before flags: the seed's presets (gpt2s
// ... gpt3-2.7B) with their -rotary, -8k, -30B / -60B and -hdim128 variants, the dN family of
// GPT-2 shapes, and a model checkpoint file (its shape, dN's recipe). Also the "Experiments"
// section of --help, written from the same preset table.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "host/config_internal.h"

namespace fs = std::filesystem;
using config_internal::format_number;
using config_internal::kAutoWarmupSteps;
using config_internal::lowercase;
using config_internal::parse_integer;

namespace {

// The seed's runs (experiments.md). Shared by all of them: dropout 0.1 x 3, the
// 1/(layer_index+1) attention scaling, AdamW (0.9, 0.999, 1e-8) with weight decay 0.1 on linear
// weights, clip 1.0, seed 1111, learned positions, pre-norm, LayerNorm eps 1e-5.
struct SeedPreset {
    const char* name;
    int n_layer, n_embd, n_head, seq_len;
    int global_batch_seqs;  // the device batch is auto: the largest that fits (host/device_batch.h)
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
    // name, L, C, heads, T, global batch, lr, decay end, steps, val every, pile, init,
    // progress checkpoints, short run, hdim128 heads, ZeRO-1, note
    {"gpt2s", 12, 768, 12, 1024, 512, 6e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, false, ""},
    {"gpt2m", 24, 1024, 16, 1024, 512, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, false, ""},
    {"gpt2l", 36, 1280, 20, 1024, 512, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, true,
     "lr 1.5e-4 is inherited from gpt2m, a seed oddity kept on purpose"},
    {"gpt2xl", 48, 1600, 25, 1024, 512, 1.5e-4, 0, 400000, 1000, false, InitScheme::gpt2, 50000, "", 0, true,
     "lr 1.5e-4 is inherited from gpt2m, a seed oddity kept on purpose"},
    {"gpt3s", 12, 768, 12, 2048, 256, 6e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, false,
     ""},
    {"gpt3m", 24, 1024, 16, 2048, 256, 3e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, false,
     ""},
    {"gpt3l", 24, 1536, 16, 2048, 256, 2.5e-4, 600000, 800000, 2000, true, InitScheme::gpt2, 50000, "30B", 0, true,
     ""},
    {"gpt3xl", 24, 2048, 16, 2048, 512, 2e-4, 300000, 400000, 1000, true, InitScheme::gpt2, 12500, "60B", 0, true,
     ""},
    {"gpt3-2.7B", 32, 2560, 32, 2048, 512, 1.6e-4, 300000, 400000, 1000, true, InitScheme::small_init, 12500, "",
     20, true, "32 heads of 80 (-hdim128: 20 heads of 128); small_init"},
};

constexpr int kLongContext = 8192;                 // the -8k variants
constexpr int64_t kShortRunSteps = 60000;          // the -30B / -60B variants (trainer.max_steps)
constexpr int64_t kPresetCheckpointEvery = 1000;   // model_checkpoint.every_n_train_steps
constexpr int kPresetKeepBestCheckpoints = 3;      // model_checkpoint.save_top_k (monitor val/loss)
constexpr int kMaxDepthPreset = 256;               // dN: largest N

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
    config.val_tokens = 0;  // the whole split, as the seed (the Pile's: 383M tokens)
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
// 128 for gpt3xl and gpt3-2.7B (1,048,576), as the seed's -8k configs.
void apply_8k_variant(TrainConfig& config) {
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
    return config;
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
        << indent << "batch " << preset.global_batch_seqs << " x " << preset.seq_len << ", lr "
        << format_number(preset.lr) << ", warmup " << config.warmup_steps << " (1% of the steps)"
        << (preset.pile ? " from 1e-06" : "");
    if (preset.pile)
        out << ", cosine to 0.1 lr at step " << preset.decay_end_step << " of " << preset.steps;
    else
        out << ", linear to 0 at step " << preset.steps;
    if (preset.note[0] != '\0') out << "\n" << indent << preset.note;
    return out.str();
}

}  // namespace

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

namespace config_internal {

bool seed_shards_optimizer_state(const std::string& experiment) {
    const std::optional<PresetChoice> choice = parse_preset_name(experiment);
    return choice && choice->preset->zero1;
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

std::string experiments_help() {
    std::ostringstream out;
    out << "Experiments (-e, default d12):\n";
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
           "on linear weights), clip 1.0, seed 1111; validation over the whole split (--val-tokens caps it),\n"
           "the test split after the last step (The Pile's; OpenWebText's is its validation holdout), and\n"
           "the largest device batch that fits the GPU (--device-batch auto).\n";
    return out.str();
}

}  // namespace config_internal
