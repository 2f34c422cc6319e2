#include "host/hf_interop.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "host/checkpoint.h"
#include "host/safetensors.h"
#include "host/tokenizer.h"

namespace hf {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const char* const kGpt2Architecture = "GPT2LMHeadModel";
const char* const kNeoxArchitecture = "GPTNeoXForCausalLM";
const char* const kGpt2Prefix = "transformer.";
const char* const kNeoxPrefix = "gpt_neox.";
// Activation names transformers gives to GELU's tanh approximation, the GELU our model computes.
const std::set<std::string> kTanhGeluNames = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"};

// ---------------------------------------------------------------------------------------------
// Tensor layouts. Each Hugging Face tensor is a rearrangement of one tensor of ours (or one
// layer's slice of it); the same mapping serves both directions.

enum class Layout {
    copy,       // element i is our element i (the first hf-numel elements: unpadded wte rows)
    transpose,  // Conv1D: hf (K, R) is our (R, K) transposed
    neox_qkv,   // hf row (head, part, d) is our row (part, head, d); rows of `cols` elements
};

struct TensorMapping {
    std::string hf_name;
    std::vector<int64_t> hf_shape;
    std::string ours;
    int layer = -1;  // -1: the whole tensor
    Layout layout = Layout::copy;
    int64_t rows = 0, cols = 0;  // transpose: our (rows, cols); neox_qkv: 3C rows of cols elements
    int n_head = 0, head_dim = 0;
    int64_t numel() const {
        int64_t count = 1;
        for (int64_t dim : hf_shape) count *= dim;
        return count;
    }
};

// hf[i] from ours (to_hf) or ours from hf[i] (!to_hf); `ours` points at the tensor's slice.
void rearrange(const TensorMapping& m, float* ours, float* hf, bool to_hf) {
    auto move = [to_hf](float& our_value, float& hf_value) {
        if (to_hf) hf_value = our_value;
        else our_value = hf_value;
    };
    switch (m.layout) {
        case Layout::copy:
            for (int64_t i = 0; i < m.numel(); i++) move(ours[i], hf[i]);
            return;
        case Layout::transpose:
            for (int64_t r = 0; r < m.rows; r++)
                for (int64_t k = 0; k < m.cols; k++) move(ours[r * m.cols + k], hf[k * m.rows + r]);
            return;
        case Layout::neox_qkv: {
            const int64_t C = int64_t{m.n_head} * m.head_dim;
            for (int h = 0; h < m.n_head; h++)
                for (int part = 0; part < 3; part++)
                    for (int d = 0; d < m.head_dim; d++) {
                        const int64_t hf_row = (int64_t{h} * 3 + part) * m.head_dim + d;
                        const int64_t our_row = part * C + int64_t{h} * m.head_dim + d;
                        for (int64_t k = 0; k < m.cols; k++) move(ours[our_row * m.cols + k], hf[hf_row * m.cols + k]);
                    }
            return;
        }
    }
}

bool is_gpt2_shape(const ModelShape& s) { return s.learned_pos_emb && s.rotary_dim == 0; }

// Every tensor of the Hugging Face model for `shape`, in the order export writes them. `prefix`:
// the base model's prefix ("transformer." / "gpt_neox."), or "" for files saved from the base
// model (OpenAI's gpt2 on the hub). `with_attention_bias`: NeoX's attention_bias.
std::vector<TensorMapping> tensor_mappings(const ModelShape& s, const std::string& prefix, bool with_attention_bias) {
    const int64_t C = s.n_embd, V = s.vocab_size;
    const int hd = s.n_embd / s.n_head;
    std::vector<TensorMapping> m;
    auto add = [&](std::string name, std::vector<int64_t> shape, std::string ours, int layer, Layout layout = Layout::copy,
                   int64_t rows = 0, int64_t cols = 0) {
        m.push_back({prefix + name, std::move(shape), std::move(ours), layer, layout, rows, cols, s.n_head, hd});
    };
    if (is_gpt2_shape(s)) {
        add("wte.weight", {V, C}, "wte", -1);
        add("wpe.weight", {s.max_seq_len, C}, "wpe", -1);
        for (int l = 0; l < s.n_layer; l++) {
            const std::string h = "h." + std::to_string(l) + ".";
            add(h + "ln_1.weight", {C}, "ln1_w", l);
            add(h + "ln_1.bias", {C}, "ln1_b", l);
            add(h + "attn.c_attn.weight", {C, 3 * C}, "qkv_w", l, Layout::transpose, 3 * C, C);
            add(h + "attn.c_attn.bias", {3 * C}, "qkv_b", l);
            add(h + "attn.c_proj.weight", {C, C}, "attn_proj_w", l, Layout::transpose, C, C);
            add(h + "attn.c_proj.bias", {C}, "attn_proj_b", l);
            add(h + "ln_2.weight", {C}, "ln2_w", l);
            add(h + "ln_2.bias", {C}, "ln2_b", l);
            add(h + "mlp.c_fc.weight", {C, 4 * C}, "fc_w", l, Layout::transpose, 4 * C, C);
            add(h + "mlp.c_fc.bias", {4 * C}, "fc_b", l);
            add(h + "mlp.c_proj.weight", {4 * C, C}, "fc_proj_w", l, Layout::transpose, C, 4 * C);
            add(h + "mlp.c_proj.bias", {C}, "fc_proj_b", l);
        }
        add("ln_f.weight", {C}, "lnf_w", -1);
        add("ln_f.bias", {C}, "lnf_b", -1);
        return m;
    }
    add("embed_in.weight", {V, C}, "wte", -1);
    for (int l = 0; l < s.n_layer; l++) {
        const std::string layer = "layers." + std::to_string(l) + ".";
        add(layer + "input_layernorm.weight", {C}, "ln1_w", l);
        add(layer + "input_layernorm.bias", {C}, "ln1_b", l);
        add(layer + "attention.query_key_value.weight", {3 * C, C}, "qkv_w", l, Layout::neox_qkv, 3 * C, C);
        if (with_attention_bias) add(layer + "attention.query_key_value.bias", {3 * C}, "qkv_b", l, Layout::neox_qkv, 3 * C, 1);
        add(layer + "attention.dense.weight", {C, C}, "attn_proj_w", l);
        if (with_attention_bias) add(layer + "attention.dense.bias", {C}, "attn_proj_b", l);
        add(layer + "post_attention_layernorm.weight", {C}, "ln2_w", l);
        add(layer + "post_attention_layernorm.bias", {C}, "ln2_b", l);
        add(layer + "mlp.dense_h_to_4h.weight", {4 * C, C}, "fc_w", l);
        add(layer + "mlp.dense_h_to_4h.bias", {4 * C}, "fc_b", l);
        add(layer + "mlp.dense_4h_to_h.weight", {C, 4 * C}, "fc_proj_w", l);
        add(layer + "mlp.dense_4h_to_h.bias", {C}, "fc_proj_b", l);
    }
    add("final_layer_norm.weight", {C}, "lnf_w", -1);
    add("final_layer_norm.bias", {C}, "lnf_b", -1);
    return m;
}

// A checkpoint's weights with the slices the mappings name.
struct Weights {
    ModelShape shape;
    ParamLayout layout;
    std::vector<float> values;

    explicit Weights(const ModelShape& model_shape)
        : shape(model_shape), layout(model_shape, 0.0), values(static_cast<size_t>(layout.total()), 0.0f) {}
    float* slice(const std::string& name, int layer) {
        const ParamTensor& tensor = layout.get(name);
        return values.data() + (layer < 0 ? tensor.offset : layout.layer_offset(tensor, layer));
    }
};

// ---------------------------------------------------------------------------------------------
// Export

// Which architecture can compute `shape` exactly; throws saying why none can.
std::string architecture_for(const ModelShape& s, const std::string& path) {
    if (s.post_norm)
        throw std::runtime_error(path + " is a post-norm model (LayerNorm after each residual add, no final LayerNorm): "
                                 "no Hugging Face architecture computes that exactly (GPT2LMHeadModel and "
                                 "GPTNeoXForCausalLM are pre-norm), so it cannot be exported");
    if (s.learned_pos_emb && s.rotary_dim > 0)
        throw std::runtime_error(path + " has both learned position embeddings and rotary embeddings: no Hugging Face "
                                 "architecture has both (GPT-2 has the first, GPT-NeoX the second)");
    if (!s.learned_pos_emb && s.rotary_dim == 0)
        throw std::runtime_error(path + " has no position information (no learned positions, no rotary): neither "
                                 "GPT2LMHeadModel nor GPTNeoXForCausalLM computes that");
    return is_gpt2_shape(s) ? kGpt2Architecture : kNeoxArchitecture;
}

// rotary_pct such that transformers' int(head_dim * rotary_pct) gives rotary_dim back.
double rotary_fraction(int rotary_dim, int head_dim) {
    double fraction = static_cast<double>(rotary_dim) / head_dim;
    while (static_cast<int>(head_dim * fraction) < rotary_dim) fraction = std::nextafter(fraction, 2.0);
    return fraction;
}

// Interleaved rotary pairs (2i, 2i+1) -> rotate-half pairs (i, i + r/2), in q's and k's rows
// of qkv weights and biases (row (part, head, d), `cols` elements per row).
void interleaved_to_rotate_half(float* qkv, const ModelShape& s, int64_t cols) {
    const int hd = s.n_embd / s.n_head, half = s.rotary_dim / 2;
    std::vector<float> head(static_cast<size_t>(s.rotary_dim * cols));
    for (int part = 0; part < 2; part++)
        for (int h = 0; h < s.n_head; h++) {
            float* rows = qkv + (int64_t{part} * s.n_embd + int64_t{h} * hd) * cols;
            for (int i = 0; i < half; i++) {
                std::memcpy(&head[i * cols], rows + 2 * i * cols, cols * sizeof(float));
                std::memcpy(&head[(half + i) * cols], rows + (2 * i + 1) * cols, cols * sizeof(float));
            }
            std::memcpy(rows, head.data(), head.size() * sizeof(float));
        }
}

void write_text_file(const std::string& path, const std::string& text, std::vector<std::string>& files) {
    AtomicFileWriter file(path);
    file.write(text.data(), text.size());
    file.finish();
    files.push_back(path);
}

std::string read_text_file(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path + " (" + what + "): " + std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

Json gpt2_config(const ModelShape& s, bool layer_scaling_flag, double eps) {
    return {{"architectures", {kGpt2Architecture}},
            {"model_type", "gpt2"},
            {"vocab_size", s.vocab_size},
            {"n_positions", s.max_seq_len},
            {"n_ctx", s.max_seq_len},
            {"n_embd", s.n_embd},
            {"n_layer", s.n_layer},
            {"n_head", s.n_head},
            {"n_inner", nullptr},
            {"activation_function", "gelu_new"},
            {"layer_norm_epsilon", eps},
            {"scale_attn_weights", true},
            {"scale_attn_by_inverse_layer_idx", layer_scaling_flag},
            {"reorder_and_upcast_attn", false},
            {"resid_pdrop", 0.0},
            {"embd_pdrop", 0.0},
            {"attn_pdrop", 0.0},
            {"initializer_range", 0.02},
            {"tie_word_embeddings", true},
            {"use_cache", true}};
}

Json neox_config(const ModelShape& s, double eps) {
    return {{"architectures", {kNeoxArchitecture}},
            {"model_type", "gpt_neox"},
            {"vocab_size", s.vocab_size},
            {"hidden_size", s.n_embd},
            {"num_hidden_layers", s.n_layer},
            {"num_attention_heads", s.n_head},
            {"intermediate_size", 4 * s.n_embd},
            {"hidden_act", "gelu_new"},
            {"rotary_pct", rotary_fraction(s.rotary_dim, s.n_embd / s.n_head)},
            {"rotary_emb_base", s.rotary_base},
            {"max_position_embeddings", s.max_seq_len},
            {"layer_norm_eps", eps},
            {"use_parallel_residual", false},
            {"attention_bias", true},
            {"attention_dropout", 0.0},
            {"hidden_dropout", 0.0},
            {"initializer_range", 0.02},
            {"tie_word_embeddings", true},
            {"use_cache", true}};
}

void write_tokenizer(const std::string& vocab_dir, const std::string& out_dir, const ModelShape& s,
                     std::vector<std::string>& files) {
    const std::string encoder = read_text_file(vocab_dir + "/encoder.json", "GPT-2's encoder.json; pass --vocab DIR");
    std::string merges = read_text_file(vocab_dir + "/vocab.bpe", "GPT-2's vocab.bpe; pass --vocab DIR");
    // transformers' GPT2Tokenizer skips the first line of merges.txt: it must be the version line.
    if (merges.rfind("#version", 0) != 0) merges = "#version: 0.2\n" + merges;
    write_text_file(out_dir + "/vocab.json", encoder, files);
    write_text_file(out_dir + "/merges.txt", merges, files);
    const std::string eot(Gpt2Tokenizer::kEndOfTextString);
    const Json tokenizer_config = {{"tokenizer_class", "GPT2Tokenizer"}, {"model_max_length", s.max_seq_len},
                                   {"bos_token", eot}, {"eos_token", eot}, {"unk_token", eot},
                                   {"add_prefix_space", false}};
    write_text_file(out_dir + "/tokenizer_config.json", tokenizer_config.dump(2) + "\n", files);
}

// ---------------------------------------------------------------------------------------------
// Import

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

// ---------------------------------------------------------------------------------------------

Summary export_checkpoint(const std::string& checkpoint_path, const std::string& out_dir, const ExportOptions& options) {
    const ModelFileHeader header = read_model_header(checkpoint_path);
    Summary summary;
    summary.shape = header.shape;
    const ModelShape& s = header.shape;
    summary.architecture = architecture_for(s, checkpoint_path);
    const bool gpt2 = summary.architecture == kGpt2Architecture;
    if (!gpt2 && options.layer_scaling == LayerScaling::flag && s.scale_attn_by_inverse_layer_idx)
        throw std::runtime_error(checkpoint_path + ": GPT-NeoX has no per-layer attention scaling flag; export it with "
                                 "the scaling folded into the query weights (the default)");
    Weights weights(s);
    read_model_params(checkpoint_path, s, weights.values.data(), 0, weights.layout.total());

    if (!gpt2 && s.rotary_interleaved) {
        for (int l = 0; l < s.n_layer; l++) {
            interleaved_to_rotate_half(weights.slice("qkv_w", l), s, s.n_embd);
            interleaved_to_rotate_half(weights.slice("qkv_b", l), s, 1);
        }
        summary.notes.push_back("interleaved rotary: the first " + std::to_string(s.rotary_dim) +
                                " dims of every q and k head reordered to GPT-NeoX's rotate-half pairs");
    }
    const bool fold = s.scale_attn_by_inverse_layer_idx && (!gpt2 || options.layer_scaling == LayerScaling::fold);
    if (fold) {
        for (int l = 0; l < s.n_layer; l++) {
            const float divisor = static_cast<float>(l + 1);
            float* w = weights.slice("qkv_w", l);
            float* b = weights.slice("qkv_b", l);
            for (int64_t i = 0; i < int64_t{s.n_embd} * s.n_embd; i++) w[i] /= divisor;
            for (int64_t i = 0; i < s.n_embd; i++) b[i] /= divisor;
        }
        summary.notes.push_back("the 1/(layer+1) attention scaling folded into the query weights and biases");
    }

    std::error_code error;
    fs::create_directories(out_dir, error);
    if (error) throw std::runtime_error("cannot create " + out_dir + ": " + error.message());
    std::vector<safetensors::TensorToWrite> tensors;
    for (const TensorMapping& m : tensor_mappings(s, gpt2 ? kGpt2Prefix : kNeoxPrefix, true)) {
        float* ours = weights.slice(m.ours, m.layer);
        tensors.push_back({m.hf_name, safetensors::DType::F32, m.hf_shape,
                           [m, ours](void* dst) { rearrange(m, ours, static_cast<float*>(dst), true); }});
    }
    const std::string weights_path = out_dir + "/model.safetensors";
    safetensors::write_file(weights_path,
                            {{"format", "pt"},
                             {"producer", "train_gpt2cu hf export"},
                             {"source_checkpoint", fs::path(checkpoint_path).filename().string()},
                             {"source_step", std::to_string(header.step)}},
                            tensors);
    summary.files.push_back(weights_path);
    if (s.vocab_size < s.padded_vocab_size)
        summary.notes.push_back("vocabulary unpadded from " + std::to_string(s.padded_vocab_size) + " to " +
                                std::to_string(s.vocab_size) + " rows");

    const bool gpt2_vocab = s.vocab_size == Gpt2Tokenizer::kVocabSize;
    Json config = gpt2 ? gpt2_config(s, s.scale_attn_by_inverse_layer_idx && !fold, options.layernorm_eps)
                       : neox_config(s, options.layernorm_eps);
    Json generation = Json::object();
    if (gpt2_vocab) {
        for (Json* target : {&config, &generation}) {
            (*target)["bos_token_id"] = Gpt2Tokenizer::kEndOfText;
            (*target)["eos_token_id"] = Gpt2Tokenizer::kEndOfText;
        }
    }
    write_text_file(out_dir + "/config.json", config.dump(2) + "\n", summary.files);
    write_text_file(out_dir + "/generation_config.json", generation.dump(2) + "\n", summary.files);
    if (gpt2 && s.scale_attn_by_inverse_layer_idx && !fold)
        summary.notes.push_back("scale_attn_by_inverse_layer_idx set in config.json: load with "
                                "attn_implementation=\"eager\" (transformers' SDPA path ignored it before PR #44397)");
    if (options.tokenizer && gpt2_vocab) {
        write_tokenizer(options.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : options.vocab_dir, out_dir, s,
                        summary.files);
    } else if (options.tokenizer) {
        summary.notes.push_back("no tokenizer files: the vocabulary (" + std::to_string(s.vocab_size) +
                                ") is not GPT-2's " + std::to_string(Gpt2Tokenizer::kVocabSize));
    }
    return summary;
}

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
