// The model's shape and its parameter layout: which tensors exist, their order, offsets and
// initialization. This order is the order of every weight in memory (the parameter, gradient and
// AdamW arenas) and on disk (model files), so a checkpoint is one write and a ZeRO shard is a
// range of offsets. Plain C++: the trainer, the checkpoint code, the tests and the tools share it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// Everything that decides the parameter layout and the function the model computes.
struct ModelShape {
    int n_layer = 0;
    int n_embd = 0;
    int n_head = 0;
    int max_seq_len = 0;
    int vocab_size = 0;
    int padded_vocab_size = 0;
    bool learned_pos_emb = true;
    bool post_norm = false;
    bool rotary_interleaved = false;
    bool scale_attn_by_inverse_layer_idx = false;
    bool fp32_residual = false;
    int rotary_dim = 0;  // 0 = no rotary embedding
    int rotary_base = 10000;

    bool operator==(const ModelShape& other) const;
    bool operator!=(const ModelShape& other) const { return !(*this == other); }
};

// Parameter layout. Tensors in this order (L = n_layer, C = n_embd, Vp = padded_vocab_size),
// each contiguous, per-layer tensors stacked over layers (layer l at offset + l * numel / L):
//   wte (Vp, C)  wpe (max_seq_len, C) [only with learned_pos_emb]
//   ln1_w (L, C)  ln1_b (L, C)  qkv_w (L, 3C, C)  qkv_b (L, 3C)  attn_proj_w (L, C, C)
//   attn_proj_b (L, C)  ln2_w (L, C)  ln2_b (L, C)  fc_w (L, 4C, C)  fc_b (L, 4C)
//   fc_proj_w (L, C, 4C)  fc_proj_b (L, C)
//   lnf_w (C)  lnf_b (C) [pre-norm only]
// Linear weights are (out_features, in_features) as in torch.nn.Linear. The LM head is wte.

enum class ParamInit { normal, zeros, ones };

struct ParamTensor {
    std::string name;
    std::vector<int64_t> shape;
    int64_t numel = 0;
    int64_t offset = 0;         // in elements, into the flat parameter array
    bool per_layer = false;     // shape[0] is n_layer
    bool weight_decay = false;  // AdamW decay: only the four linear weights
    ParamInit init = ParamInit::zeros;
    double init_std = 0.0;      // for ParamInit::normal
};

// The output projections (attn_proj_w, fc_proj_w) start at base_std / sqrt(2 * n_layer), so the
// residual stream's variance does not grow with depth (GPT-2; the seed applies it under both
// init schemes).
double residual_projection_init_std(double base_std, int n_layer);

// A run [offset, offset + count) of the flat parameter array.
struct ParamRange {
    int64_t offset = 0;
    int64_t count = 0;
    bool operator==(const ParamRange& other) const { return offset == other.offset && count == other.count; }
};

class ParamLayout {
  public:
    // `base_init_std`: std of wte, wpe, qkv_w and fc_w (0.02, or sqrt(2/(5C)) for small_init).
    ParamLayout(const ModelShape& shape, double base_init_std);

    const std::vector<ParamTensor>& tensors() const { return tensors_; }
    int64_t total() const { return total_; }
    int n_layer() const { return n_layer_; }
    // Throws std::out_of_range naming a tensor this model does not have.
    const ParamTensor& get(std::string_view name) const;
    const ParamTensor* find(std::string_view name) const;
    // First element of layer `layer` of a per-layer tensor.
    int64_t layer_offset(const ParamTensor& tensor, int layer) const;
    // Where layer `layer`'s parameters lie (its slice of every per-layer tensor), and where the
    // rest lies (wte, wpe, lnf); each in offset order with adjacent ranges merged. Together the
    // n_layer + 1 lists tile [0, total()) once: gradient synchronisation sends each layer's
    // gradients once the backward pass has finished that layer, and the rest after it.
    std::vector<ParamRange> layer_ranges(int layer) const;
    std::vector<ParamRange> non_layer_ranges() const;

  private:
    int n_layer_;
    std::vector<ParamTensor> tensors_;
    int64_t total_ = 0;
};
