// What the CUDA kernels support, for the checks that must happen at configuration time, before a
// GPU is touched (TrainConfig::resolve). The kernels check the same limits when they launch:
// kernels/attention's head-dimension dispatch, kernels/layernorm's row shape, kernels/crossentropy's
// padded vocabulary, and the 16-byte vector loads of kernels/encoder, matmul and dropout.
#pragma once

namespace kernel_support {

// Head dimensions (n_embd / n_head) the attention kernels are compiled for.
constexpr int kAttentionHeadDims[] = {64, 80, 96, 128};
// Elements of 16-bit storage in one 16-byte vector: n_embd and the padded vocabulary must be
// multiples of it.
constexpr int kVectorElements = 8;
// Widest hidden size of the fused dropout + residual + LayerNorm kernels.
constexpr int kLayerNormMaxWidth = 8192;

constexpr bool is_attention_head_dim(int head_dim) {
    for (int supported : kAttentionHeadDims)
        if (head_dim == supported) return true;
    return false;
}

}  // namespace kernel_support
