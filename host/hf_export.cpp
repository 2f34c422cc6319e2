// Hugging Face export: a model checkpoint to a directory that transformers loads with no custom
// code (model.safetensors, config.json, generation_config.json and the GPT-2 tokenizer files), as
// GPT2LMHeadModel or GPTNeoXForCausalLM; host/hf_interop.h says what is transformed and why.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "host/checkpoint.h"
#include "host/hf_interop.h"
#include "host/hf_interop_internal.h"
#include "host/safetensors.h"
#include "host/tokenizer.h"

namespace hf {

using namespace internal;

namespace {

namespace fs = std::filesystem;

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


}  // namespace

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

}  // namespace hf
