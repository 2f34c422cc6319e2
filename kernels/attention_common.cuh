// Pieces shared by the attention kernel families (kernels/attention.cuh is the interface and
// explains the math): argument checks, head-dim dispatch, the shared-memory opt-in, quad
// shuffles, and backward's first kernel, D = rowsum(dO * O), which every family uses.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/common.cuh"

namespace attention_detail {

constexpr float kLog2e = 1.4426950408889634f;

__device__ inline float shuffle_max4(float x) {  // max over the 4 lanes of a quad (lane ^ 1, lane ^ 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ inline float shuffle_sum4(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

inline void check_attention_arguments(const char* who, const void* qkv, const void* out, int B, int T, int NH,
                                      int HD, float softmax_scale, const DropoutParams& drop) {
    REQUIRE(HD == 64 || HD == 80 || HD == 96 || HD == 128,
            "%s: head dimension %d is not supported; use d_model / n_head in {64, 80, 96, 128}", who, HD);
    REQUIRE(B >= 1 && T >= 1 && NH >= 1, "%s: empty shape B=%d T=%d NH=%d", who, B, T, NH);
    REQUIRE(B <= 65535, "%s: batch size %d exceeds the grid limit 65535; split the batch", who, B);
    REQUIRE(softmax_scale > 0.0f && std::isfinite(softmax_scale), "%s: softmax_scale %g must be positive",
            who, softmax_scale);
    REQUIRE(drop.p >= 0.0f && attention_dropout_rate(drop.p).threshold < 65536u,
            "%s: attention dropout probability %g must be in [0, 1 - 2^-17) (the mask resolves p to 2^-16)", who,
            drop.p);
    REQUIRE(is_aligned16(qkv) && is_aligned16(out),
            "%s: qkv and out/dout must be 16-byte aligned (allocate them with cudaMalloc or arena offsets "
            "that are multiples of 8 elements)", who);
}

// =============================================================================================
// Backward's first kernel in every family: D_i = dO_i . O_i, one thread per (b, t, h) row.

template <typename T>
__global__ void attention_backward_row_dot_kernel(float* row_dot /*(B, NH, T)*/, const T* dout /*(B, T, NH, HD)*/,
                                                  const T* out /*(B, T, NH, HD)*/, int B, int seq_len, int NH, int HD) {
    const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, t, h) order
    if (row >= static_cast<int64_t>(B) * seq_len * NH) return;
    const T* o = out + row * HD;
    const T* d = dout + row * HD;
    float sum = 0.0f;
    for (int c = 0; c < HD; c += Vec16<T>::size) {
        const Vec16<T> ov = load16(o + c), dv = load16(d + c);
#pragma unroll
        for (int e = 0; e < Vec16<T>::size; ++e) sum += ov.get(e) * dv.get(e);
    }
    const int h = static_cast<int>(row % NH);
    const int64_t bt = row / NH;
    const int t = static_cast<int>(bt % seq_len), b = static_cast<int>(bt / seq_len);
    row_dot[(static_cast<int64_t>(b) * NH + h) * seq_len + t] = sum;
}

template <typename T>
void attention_backward_row_dot(float* row_dot, const T* dout, const T* out, int B, int T_len, int NH, int HD,
                                cudaStream_t stream) {
    REQUIRE(HD % Vec16<T>::size == 0, "attention_backward: HD=%d must be a multiple of %d", HD, Vec16<T>::size);
    const int64_t rows = static_cast<int64_t>(B) * T_len * NH;
    constexpr int kThreads = 256;
    attention_backward_row_dot_kernel<T><<<static_cast<unsigned>(ceil_div(static_cast<long long>(rows), static_cast<long long>(kThreads))), kThreads, 0,
                                           stream>>>(row_dot, dout, out, B, T_len, NH, HD);
    CUDA_CHECK_LAUNCH();
}

// Calls f(std::integral_constant<int, HD>) for the supported head dims.
template <typename F> void dispatch_head_dim(int HD, F&& f) {
    switch (HD) {
        case 64: f(std::integral_constant<int, 64>{}); break;
        case 80: f(std::integral_constant<int, 80>{}); break;
        case 96: f(std::integral_constant<int, 96>{}); break;
        case 128: f(std::integral_constant<int, 128>{}); break;
        default: REQUIRE(false, "attention: head dimension %d is not one of 64, 80, 96, 128", HD);
    }
}

}  // namespace attention_detail
