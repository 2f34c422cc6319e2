// The mapping between Hugging Face's tensors and ours, shared by export and import: for each
// architecture (GPT2LMHeadModel, GPTNeoXForCausalLM) every tensor's name, shape and layout, and
// the element rearrangement that moves values either way. host/hf_interop.h describes the
// conversions; hf_export.cpp and hf_import.cpp do them.

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "host/hf_interop_internal.h"

namespace hf::internal {

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

std::string read_text_file(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path + " (" + what + "): " + std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace hf::internal
