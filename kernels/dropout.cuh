// Standalone dropout, for the one site no fused kernel covers: the embedding output of post-norm
// models, which feeds the first block directly (in pre-norm it is fused into the first LN call).
//
//   forward:  out = keep(i) ? in / (1 - p) : 0
//   backward: d_in = keep(i) ? (d_out_a + d_out_b) / (1 - p) : 0
// The mask is regenerated from DropoutParams in backward (kernels/common.cuh), never stored.
#pragma once

#include "kernels/common.cuh"

template <typename T>
__global__ void dropout_add_kernel(T* out, const T* a, const T* b, DropoutParams drop, int64_t n) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    // Each thread handles one 16-byte vector; its first element index is a multiple of 4, so
    // its Philox calls line up with DropoutParams::keep's groups of four.
    constexpr int V = Vec16<T>::size;
    const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (first >= n) return;
    const Vec16<T> va = load16(a + first);
    Vec16<T> vb;
    if (b) vb = load16(b + first);
    Vec16<T> result;
    for (int group = 0; group < V; group += 4) {
        const uint4 words = drop.enabled() ? drop.random_words((first + group) >> 2) : make_uint4(~0u, ~0u, ~0u, ~0u);
        const uint32_t word[4] = {words.x, words.y, words.z, words.w};
        for (int j = 0; j < 4; ++j) {
            const int i = group + j;
            float value = va.get(i) + (b ? vb.get(i) : 0.0f);
            if (drop.enabled()) value = uniform_from_bits(word[j]) >= drop.p ? value * drop.scale() : 0.0f;
            result.set(i, value);
        }
    }
    store16(out + first, result);
}

// out (n) = dropout(in (n)); out may alias in. n must be a multiple of 8.
template <typename T> void dropout_forward(T* out, const T* in, DropoutParams drop, int64_t n, cudaStream_t stream) {
    if (!drop.enabled() && out == in) return;
    REQUIRE(n % Vec16<T>::size == 0, "dropout: n = %lld must be a multiple of %d", (long long)n, Vec16<T>::size);
    REQUIRE(is_aligned16(out) && is_aligned16(in), "dropout: buffers must be 16-byte aligned");
    const int threads = 256;
    const int64_t vectors = n / Vec16<T>::size;
    dropout_add_kernel<T><<<(unsigned)ceil_div((long long)vectors, (long long)threads), threads, 0, stream>>>(out, in, nullptr, drop, n);
    CUDA_CHECK_LAUNCH();
}

// d_in (n) = dropout'(d_out_a + d_out_b): the gradient of a dropout whose output fed two
// consumers. d_out_b may be nullptr; d_in may alias either input.
template <typename T>
void dropout_add_backward(T* d_in, const T* d_out_a, const T* d_out_b, DropoutParams drop, int64_t n,
                          cudaStream_t stream) {
    REQUIRE(n % Vec16<T>::size == 0, "dropout: n = %lld must be a multiple of %d", (long long)n, Vec16<T>::size);
    REQUIRE(is_aligned16(d_in) && is_aligned16(d_out_a) && (!d_out_b || is_aligned16(d_out_b)),
            "dropout: buffers must be 16-byte aligned");
    const int threads = 256;
    const int64_t vectors = n / Vec16<T>::size;
    dropout_add_kernel<T>
        <<<(unsigned)ceil_div((long long)vectors, (long long)threads), threads, 0, stream>>>(d_in, d_out_a, d_out_b, drop, n);
    CUDA_CHECK_LAUNCH();
}
