// Hugging Face import: a transformers GPT-2 or GPT-NeoX directory (config.json and
// model.safetensors, or a safetensors index and its shards; F32, F16 or BF16) to a model
// checkpoint the trainer starts from (-e FILE). Every tensor and configuration field is checked;
// what our model cannot compute exactly is an error naming the file and the field.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "host/checkpoint.h"
#include "host/hf_interop.h"
#include "host/hf_interop_internal.h"
#include "host/safetensors.h"

namespace hf {

using namespace internal;

namespace {

namespace fs = std::filesystem;

// Activation names transformers gives to GELU's tanh approximation, the GELU our model computes.
const std::set<std::string> kTanhGeluNames = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"};

// The tensors of a directory: model.safetensors, or the shards model.safetensors.index.json names.
class TensorSource {
  public:
    explicit TensorSource(const std::string& dir) {
        const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
        if (fs::exists(single)) {
            add_file(single);
        } else if (fs::exists(index)) {
            Json parsed;
            try {
                parsed = Json::parse(read_text_file(index, "the shard index"));
            } catch (const Json::exception& e) {
                throw std::runtime_error(index + " is not valid JSON: " + e.what());
            }
            if (!parsed.contains("weight_map") || !parsed["weight_map"].is_object())
                throw std::runtime_error(index + " has no weight_map object");
            std::set<std::string> shards;
            for (const auto& [name, file] : parsed["weight_map"].items()) {
                if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
                    throw std::runtime_error(index + ": weight_map[\"" + name + "\"] is not a file name in " + dir);
                shards.insert(file.get<std::string>());
            }
            for (const std::string& shard : shards) add_file(dir + "/" + shard);
            for (const auto& [name, file] : parsed["weight_map"].items()) {
                const auto found = where_.find(name);
                if (found == where_.end() || readers_[found->second.first]->path() != dir + "/" + file.get<std::string>())
                    throw std::runtime_error(index + " places \"" + name + "\" in " + file.get<std::string>() +
                                             ", which does not hold it");
            }
        } else if (fs::exists(dir + "/pytorch_model.bin")) {
            throw std::runtime_error(dir + " holds pytorch_model.bin (a pickle) but no model.safetensors: convert it "
                                     "first, e.g. in Python: AutoModelForCausalLM.from_pretrained(DIR)."
                                     "save_pretrained(DIR, safe_serialization=True)");
        } else {
            throw std::runtime_error(dir + " has neither model.safetensors nor model.safetensors.index.json");
        }
    }

    bool contains(const std::string& name) const { return where_.count(name) != 0; }
    std::vector<std::string> names() const {
        std::vector<std::string> all;
        for (const auto& [name, location] : where_) all.push_back(name);
        return all;
    }
    // Checks the shape and reads the tensor as float32.
    std::vector<float> read(const std::string& name, const std::vector<int64_t>& shape) const {
        const auto found = where_.find(name);
        if (found == where_.end())
            throw std::runtime_error(file_list() + " lacks the tensor \"" + name + "\"");
        const safetensors::Reader& reader = *readers_[found->second.first];
        const safetensors::TensorInfo& info = reader.tensors()[found->second.second];
        if (info.shape != shape)
            throw std::runtime_error(reader.path() + ": tensor \"" + name + "\" has the shape " + shape_text(info.shape) +
                                     ", but config.json describes " + shape_text(shape));
        std::vector<float> values(static_cast<size_t>(info.numel()));
        reader.read_as_float32(info, values.data());
        return values;
    }
    std::string file_list() const {
        std::string list;
        for (const auto& reader : readers_) list += (list.empty() ? "" : ", ") + reader->path();
        return list;
    }

    static std::string shape_text(const std::vector<int64_t>& shape) {
        std::string text = "(";
        for (size_t i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
        return text + ")";
    }

  private:
    void add_file(const std::string& path) {
        readers_.push_back(std::make_unique<safetensors::Reader>(path));
        const safetensors::Reader& reader = *readers_.back();
        for (size_t i = 0; i < reader.tensors().size(); i++) {
            const std::string& name = reader.tensors()[i].name;
            if (!where_.emplace(name, std::make_pair(readers_.size() - 1, i)).second)
                throw std::runtime_error(path + " holds \"" + name + "\", which another shard holds too");
        }
    }

    std::vector<std::unique_ptr<safetensors::Reader>> readers_;
    std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (reader, tensor index)
};

// config.json fields, with errors that name the file and the field.
class Config {
  public:
    explicit Config(const std::string& path) : path_(path) {
        try {
            json_ = Json::parse(read_text_file(path, "the model's configuration"));
        } catch (const Json::exception& e) {
            throw std::runtime_error(path + " is not valid JSON: " + e.what());
        }
        if (!json_.is_object()) throw std::runtime_error(path + " is not a JSON object");
    }
    const std::string& path() const { return path_; }
    bool has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }
    const Json& raw(const std::string& key) const { return json_[key]; }

    int positive_int(const std::string& key) const {
        if (!has(key)) fail(key, "is missing");
        const Json& value = json_[key];
        if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<int64_t>() > INT32_MAX)
            fail(key, "is " + value.dump() + ", not a positive integer");
        return value.get<int>();
    }
    double number(const std::string& key, double fallback) const {
        if (!has(key)) return fallback;
        if (!json_[key].is_number()) fail(key, "is " + json_[key].dump() + ", not a number");
        return json_[key].get<double>();
    }
    bool flag(const std::string& key, bool fallback) const {
        if (!has(key)) return fallback;
        if (!json_[key].is_boolean()) fail(key, "is " + json_[key].dump() + ", not true or false");
        return json_[key].get<bool>();
    }
    std::string text(const std::string& key, const std::string& fallback) const {
        if (!has(key)) return fallback;
        if (!json_[key].is_string()) fail(key, "is " + json_[key].dump() + ", not a string");
        return json_[key].get<std::string>();
    }
    [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
        throw std::runtime_error(path_ + ": \"" + key + "\" " + problem);
    }

  private:
    std::string path_;
    Json json_;
};

void require_tanh_gelu(const Config& config, const std::string& key, const std::string& fallback) {
    const std::string act = config.text(key, fallback);
    if (!kTanhGeluNames.count(act))
        config.fail(key, "is \"" + act + "\": our model computes GELU's tanh approximation (gelu_new, "
                         "gelu_pytorch_tanh), so it cannot compute this model exactly");
}

void require_layernorm_eps(const Config& config, const std::string& key) {
    const double eps = config.number(key, 1e-5);
    if (std::fabs(eps - 1e-5) > 1e-12)
        config.fail(key, "is " + std::to_string(eps) + ": model files do not record the LayerNorm epsilon and the "
                         "trainer's default is 1e-5; import only models with 1e-5");
}

// Shape of a GPT-2 config.json (GPT2Config's defaults where a field is absent).
ModelShape gpt2_shape(const Config& config) {
    ModelShape s;
    s.n_layer = config.positive_int("n_layer");
    s.n_embd = config.positive_int("n_embd");
    s.n_head = config.positive_int("n_head");
    s.max_seq_len = config.positive_int("n_positions");
    s.vocab_size = config.positive_int("vocab_size");
    if (s.n_embd % s.n_head) config.fail("n_embd", "is not divisible by n_head");
    if (config.has("n_inner") && config.positive_int("n_inner") != 4 * s.n_embd)
        config.fail("n_inner", "is not 4 x n_embd, the MLP width our model has");
    require_tanh_gelu(config, "activation_function", "gelu_new");
    require_layernorm_eps(config, "layer_norm_epsilon");
    if (!config.flag("scale_attn_weights", true))
        config.fail("scale_attn_weights", "is false: our attention always scales scores by 1/sqrt(head_dim)");
    if (config.flag("add_cross_attention", false)) config.fail("add_cross_attention", "is true: an encoder-decoder model");
    if (!config.flag("tie_word_embeddings", true))
        config.fail("tie_word_embeddings", "is false: our LM head is the token embedding");
    s.learned_pos_emb = true;
    s.scale_attn_by_inverse_layer_idx = config.flag("scale_attn_by_inverse_layer_idx", false);
    return s;
}

// A rope setting from NeoX's own field names or transformers' newer rope_parameters.
double rope_setting(const Config& config, const char* legacy, const char* key, double fallback) {
    if (config.has(legacy)) return config.number(legacy, fallback);
    if (config.has("rope_parameters") && config.raw("rope_parameters").contains(key)) {
        const Json& value = config.raw("rope_parameters")[key];
        if (!value.is_number()) config.fail("rope_parameters", "has " + std::string(key) + " " + value.dump() + ", not a number");
        return value.get<double>();
    }
    return config.number(key, fallback);
}

ModelShape neox_shape(const Config& config) {
    ModelShape s;
    s.n_layer = config.positive_int("num_hidden_layers");
    s.n_embd = config.positive_int("hidden_size");
    s.n_head = config.positive_int("num_attention_heads");
    s.max_seq_len = config.positive_int("max_position_embeddings");
    s.vocab_size = config.positive_int("vocab_size");
    if (s.n_embd % s.n_head) config.fail("hidden_size", "is not divisible by num_attention_heads");
    if (config.positive_int("intermediate_size") != 4 * s.n_embd)
        config.fail("intermediate_size", "is not 4 x hidden_size, the MLP width our model has");
    require_tanh_gelu(config, "hidden_act", "gelu");
    require_layernorm_eps(config, "layer_norm_eps");
    if (config.flag("use_parallel_residual", true))
        config.fail("use_parallel_residual", "is true (or absent, which means true): our blocks are sequential, "
                                             "x + attn(ln1(x)) then + mlp(ln2(.))");
    if (config.has("rope_scaling") || (config.has("rope_parameters") && config.raw("rope_parameters").contains("rope_type") &&
                                       config.raw("rope_parameters")["rope_type"] != "default"))
        config.fail("rope_scaling", "is set: our rotary embedding has no scaling");
    const int hd = s.n_embd / s.n_head;
    const double fraction = rope_setting(config, "rotary_pct", "partial_rotary_factor", 0.25);
    s.rotary_dim = static_cast<int>(hd * fraction);  // as transformers computes rotary_ndims
    if (s.rotary_dim <= 0 || s.rotary_dim % 2)
        config.fail("rotary_pct", "gives " + std::to_string(s.rotary_dim) + " rotary dims of " + std::to_string(hd) +
                                      ": our model needs a positive even number");
    const double base = rope_setting(config, "rotary_emb_base", "rope_theta", 10000.0);
    if (base != std::floor(base) || base < 1 || base > INT32_MAX)
        config.fail("rotary_emb_base", "is " + std::to_string(base) + ": model files store a whole-number base");
    s.rotary_base = static_cast<int>(base);
    s.learned_pos_emb = false;
    return s;
}

bool bitwise_equal(const std::vector<float>& a, const float* b) {
    return std::memcmp(a.data(), b, a.size() * sizeof(float)) == 0;
}

}  // namespace

Summary import_directory(const std::string& hf_dir, const std::string& checkpoint_path, const ImportOptions& options) {
    if (options.pad_vocab_to < 1) throw std::invalid_argument("pad_vocab_to must be at least 1");
    const Config config(hf_dir + "/config.json");
    const std::string model_type = config.text("model_type", "");
    Summary summary;
    bool gpt2 = false, attention_bias = true;
    if (model_type == "gpt2") {
        gpt2 = true;
        summary.shape = gpt2_shape(config);
        summary.architecture = kGpt2Architecture;
    } else if (model_type == "gpt_neox") {
        summary.shape = neox_shape(config);
        summary.architecture = kNeoxArchitecture;
        attention_bias = config.flag("attention_bias", true);
    } else {
        config.fail("model_type", "is \"" + model_type + "\": import reads GPT-2 (\"gpt2\", GPT2LMHeadModel) and "
                                  "GPT-NeoX (\"gpt_neox\", GPTNeoXForCausalLM as export writes it)");
    }
    ModelShape& s = summary.shape;
    s.padded_vocab_size = static_cast<int>((int64_t{s.vocab_size} + options.pad_vocab_to - 1) / options.pad_vocab_to *
                                           options.pad_vocab_to);
    const TensorSource source(hf_dir);

    // OpenAI's gpt2 files on the hub were saved from the base model: names without "transformer.".
    std::string prefix = gpt2 ? kGpt2Prefix : kNeoxPrefix;
    if (gpt2 && !source.contains(prefix + "wte.weight") && source.contains("wte.weight")) prefix = "";
    Weights weights(s);
    std::set<std::string> used;
    for (const TensorMapping& m : tensor_mappings(s, prefix, attention_bias)) {
        std::vector<float> values = source.read(m.hf_name, m.hf_shape);
        rearrange(m, weights.slice(m.ours, m.layer), values.data(), false);
        used.insert(m.hf_name);
    }
    // A stored LM head must be the token embedding: ours is tied.
    const std::string head = gpt2 ? "lm_head.weight" : "embed_out.weight";
    const bool tied = gpt2 || config.flag("tie_word_embeddings", false);
    if (source.contains(head) || !tied) {
        const std::vector<float> values = source.read(head, {s.vocab_size, s.n_embd});
        if (!bitwise_equal(values, weights.slice("wte", -1)))
            throw std::runtime_error(source.file_list() + ": \"" + head + "\" differs from the token embedding: our "
                                     "model ties its LM head to the embedding, so it cannot compute this model");
        used.insert(head);
    }
    // Buffers older transformers versions saved with the weights: the causal mask and the
    // rotary frequencies, which our model computes.
    const std::vector<std::string> buffer_suffixes = {".attn.bias", ".attn.masked_bias", ".attention.bias",
                                                      ".attention.masked_bias", ".attention.rotary_emb.inv_freq"};
    std::vector<std::string> unexpected;
    for (const std::string& name : source.names()) {
        if (used.count(name)) continue;
        bool buffer = false;
        for (const std::string& suffix : buffer_suffixes)
            buffer |= name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (!buffer) unexpected.push_back(name);
    }
    if (!unexpected.empty()) {
        std::string list;
        for (size_t i = 0; i < unexpected.size() && i < 8; i++) list += (i ? ", " : "") + unexpected[i];
        throw std::runtime_error(source.file_list() + " holds " + std::to_string(unexpected.size()) +
                                 " tensor(s) a " + summary.architecture + " of this config has no place for: " + list +
                                 (unexpected.size() > 8 ? ", ..." : ""));
    }
    if (!attention_bias) summary.notes.push_back("attention_bias false: the QKV and output projection biases are zero");
    if (s.padded_vocab_size > s.vocab_size)
        summary.notes.push_back("vocabulary padded with zero rows from " + std::to_string(s.vocab_size) + " to " +
                                std::to_string(s.padded_vocab_size));
    write_model_file(checkpoint_path, s, 0, weights.values.data());
    summary.files.push_back(checkpoint_path);
    return summary;
}

}  // namespace hf
