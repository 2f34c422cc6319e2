// AdamW on fp32 master weights with a 16-bit compute copy, and the global gradient norm.
//
// adamw_update follows torch.optim.AdamW exactly (decoupled weight decay first, then the Adam
// step with bias-corrected moments):
//   g = grad * grad_scale                       (grad_scale = 1/loss_scale * clip factor)
//   master *= 1 - lr * weight_decay
//   m = m + (1 - beta1) * (g - m)               (PyTorch's lerp form of beta1*m + (1-beta1)*g)
//   v = beta2 * v + (1 - beta2) * g^2
//   master -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//   params = T(master)                          (round to nearest)
// The bias corrections are computed once per step on the host in double (adamw_step_values).
// The kernel reads the step's values from device memory, not from its arguments, so that a CUDA
// graph of the update replays correctly with every step's learning rate (train/step_graph.cuh).
// One pass: each thread reads 4 consecutive elements of grads, master, m, v (16-byte loads) and
// writes master, m, v and the 4 compute-copy elements (8 bytes).
//
// global_norm_squared is deterministic: a fixed grid of kNormBlocks blocks grid-strides over the
// gradients accumulating squares in fp64 per thread (free for a memory-bound pass), reduces each
// block in a fixed tree, and one block adds the per-block partials in index order. The grid does
// not depend on the GPU, so neither does the result. Non-finite gradients (fp16 overflow) give a
// non-finite result.
#pragma once

#include <algorithm>
#include <cmath>

#include "kernels/common.cuh"

// ---------------------------------------------------------------------------------------------
// AdamW

struct AdamWStep {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    float step_size;            // lr / (1 - beta1^step)
    float inv_sqrt_correction2;  // 1 / sqrt(1 - beta2^step)
};

// The values of update number `step` (1-based, for the bias corrections).
inline AdamWStep adamw_step_values(float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                   int step) {
    REQUIRE(step >= 1, "adamw_step_values: step=%d must be >= 1 (1-based, for the bias corrections)", step);
    AdamWStep s{lr, beta1, beta2, eps, weight_decay, grad_scale, 0.0f, 0.0f};
    s.step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), step)));
    s.inv_sqrt_correction2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(static_cast<double>(beta2), step)));
    return s;
}

__device__ inline void adamw_element(float& master, float& m, float& v, float grad, const AdamWStep& s) {
    const float g = grad * s.grad_scale;
    master *= 1.0f - s.lr * s.weight_decay;
    m += (1.0f - s.beta1) * (g - m);
    v = s.beta2 * v + (1.0f - s.beta2) * g * g;
    master -= s.step_size * m / (sqrtf(v) * s.inv_sqrt_correction2 + s.eps);
}

// 4 T values in one 8-byte store.
template <typename T> struct alignas(8) Vec4 {
    T elements[4];
};

template <typename T>
__global__ void adamw_kernel(T* params, float* master, const float* grads, float* m, float* v, size_t n,
                             const AdamWStep* step_values, bool decay) {
    AdamWStep s = *step_values;
    if (!decay) s.weight_decay = 0.0f;
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const size_t groups = n / 4;
    for (size_t i = first; i < groups; i += stride) {
        float4 w = reinterpret_cast<const float4*>(master)[i];
        float4 mm = reinterpret_cast<const float4*>(m)[i];
        float4 vv = reinterpret_cast<const float4*>(v)[i];
        const float4 g = __ldcs(reinterpret_cast<const float4*>(grads) + i);  // read once
        adamw_element(w.x, mm.x, vv.x, g.x, s);
        adamw_element(w.y, mm.y, vv.y, g.y, s);
        adamw_element(w.z, mm.z, vv.z, g.z, s);
        adamw_element(w.w, mm.w, vv.w, g.w, s);
        reinterpret_cast<float4*>(master)[i] = w;
        reinterpret_cast<float4*>(m)[i] = mm;
        reinterpret_cast<float4*>(v)[i] = vv;
        reinterpret_cast<Vec4<T>*>(params)[i] =
            Vec4<T>{{from_float<T>(w.x), from_float<T>(w.y), from_float<T>(w.z), from_float<T>(w.w)}};
    }
    for (size_t i = groups * 4 + first; i < n; i += stride) {  // the n % 4 tail
        adamw_element(master[i], m[i], v[i], grads[i], s);
        params[i] = from_float<T>(master[i]);
    }
}

inline int elementwise_grid(size_t groups, int threads) {
    // Enough blocks to fill any current GPU several times over; the kernels grid-stride.
    const size_t wanted = (groups + threads - 1) / threads;
    return static_cast<int>(std::max<size_t>(1, std::min<size_t>(wanted, 65536)));
}

// params (n) compute copy; master, m, v (n) fp32 state; grads (n) fp32. step_values: device
// memory holding the update's adamw_step_values() when the kernel runs; without `decay` its
// weight decay is taken as 0 (biases, LayerNorms, embeddings).
template <typename T>
void adamw_update(T* params, float* master, const float* grads, float* m, float* v, size_t n,
                  const AdamWStep* step_values, bool decay, cudaStream_t stream) {
    REQUIRE(is_aligned16(master) && is_aligned16(grads) && is_aligned16(m) && is_aligned16(v) &&
                (reinterpret_cast<uintptr_t>(params) & 7) == 0,
            "adamw_update: master, grads, m, v must be 16-byte aligned and params 8-byte aligned (start each "
            "parameter range at a multiple of 4 elements)");
    if (n == 0) return;
    constexpr int kThreads = 256;
    adamw_kernel<<<elementwise_grid(n / 4 + 1, kThreads), kThreads, 0, stream>>>(params, master, grads, m, v, n,
                                                                                  step_values, decay);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Master weights -> compute copy (after loading a checkpoint)

template <typename T> __global__ void copy_master_to_params_kernel(T* params, const float* master, size_t n) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const size_t groups = n / 4;
    for (size_t i = first; i < groups; i += stride) {
        const float4 w = reinterpret_cast<const float4*>(master)[i];
        reinterpret_cast<Vec4<T>*>(params)[i] =
            Vec4<T>{{from_float<T>(w.x), from_float<T>(w.y), from_float<T>(w.z), from_float<T>(w.w)}};
    }
    for (size_t i = groups * 4 + first; i < n; i += stride) params[i] = from_float<T>(master[i]);
}

template <typename T> void copy_master_to_params(T* params /*(n)*/, const float* master /*(n)*/, size_t n, cudaStream_t stream) {
    REQUIRE(is_aligned16(master) && (reinterpret_cast<uintptr_t>(params) & 7) == 0,
            "copy_master_to_params: master must be 16-byte aligned and params 8-byte aligned");
    if (n == 0) return;
    constexpr int kThreads = 256;
    copy_master_to_params_kernel<<<elementwise_grid(n / 4 + 1, kThreads), kThreads, 0, stream>>>(params, master, n);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Gradient accumulation into a sharded gradient (ZeRO-2): each micro-step's reduced slice is added
// to the owner's fp32 shard. dst and src may have any alignment (slices start anywhere).

__global__ void accumulate_kernel(float* dst, const float* src, size_t n) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] += src[i];
}

inline void accumulate(float* dst /*(n)*/, const float* src /*(n)*/, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    constexpr int kThreads = 256;
    accumulate_kernel<<<elementwise_grid(n, kThreads), kThreads, 0, stream>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Global gradient norm (squared)

constexpr int kNormBlocks = 1024;  // fixed, so the reduction tree (and the result) never changes
constexpr int kNormThreads = 512;

// A range of fp32 gradients; the norm of several disjoint ranges is one call.
struct GradientRange {
    const float* data;
    size_t n;
};

__device__ inline double block_sum_fixed_order(double x) {
    __shared__ double warp_sums[kNormThreads / 32];
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_sums[warp] = x;
    __syncthreads();
    x = 0.0;
    if (warp == 0) {
        x = lane < kNormThreads / 32 ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
    }
    return x;  // valid in thread 0
}

// partials[blockIdx.x] = sum of squares of this block's grid-stride share of `data`.
__global__ void __launch_bounds__(kNormThreads) norm_squared_partial_kernel(double* partials, const float* data, size_t n) {
    const size_t stride = static_cast<size_t>(kNormBlocks) * kNormThreads;
    const size_t first = static_cast<size_t>(blockIdx.x) * kNormThreads + threadIdx.x;
    double sum = 0.0;
    const bool aligned = is_aligned16(data);
    const size_t groups = aligned ? n / 4 : 0;
    for (size_t i = first; i < groups; i += stride) {
        const float4 g = reinterpret_cast<const float4*>(data)[i];
        sum += static_cast<double>(g.x) * g.x + static_cast<double>(g.y) * g.y + static_cast<double>(g.z) * g.z +
               static_cast<double>(g.w) * g.w;
    }
    for (size_t i = groups * 4 + first; i < n; i += stride) sum += static_cast<double>(data[i]) * data[i];
    sum = block_sum_fixed_order(sum);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kNormThreads) norm_squared_finish_kernel(float* out, const double* partials, int count) {
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += kNormThreads) sum += partials[i];
    sum = block_sum_fixed_order(sum);
    if (threadIdx.x == 0) *out = static_cast<float>(sum);
}

// Scratch for global_norm_squared over `num_ranges` ranges, in floats (fp64 partials inside).
inline size_t global_norm_squared_scratch_floats(int num_ranges = 1) {
    return 2 * static_cast<size_t>(kNormBlocks) * num_ranges;
}

// out (1) = sum over all ranges of sum of squares. scratch: global_norm_squared_scratch_floats(
// num_ranges) floats, 8-byte aligned. Deterministic.
inline void global_norm_squared(float* out, const GradientRange* ranges, int num_ranges, float* scratch,
                                cudaStream_t stream) {
    REQUIRE(num_ranges >= 1, "global_norm_squared: need at least one range");
    REQUIRE((reinterpret_cast<uintptr_t>(scratch) & 7) == 0, "global_norm_squared: scratch must be 8-byte aligned");
    double* partials = reinterpret_cast<double*>(scratch);
    for (int r = 0; r < num_ranges; ++r) {
        norm_squared_partial_kernel<<<kNormBlocks, kNormThreads, 0, stream>>>(partials + r * kNormBlocks,
                                                                               ranges[r].data, ranges[r].n);
        CUDA_CHECK_LAUNCH();
    }
    norm_squared_finish_kernel<<<1, kNormThreads, 0, stream>>>(out, partials, kNormBlocks * num_ranges);
    CUDA_CHECK_LAUNCH();
}

inline void global_norm_squared(float* out, const float* grads /*(n)*/, size_t n, float* scratch, cudaStream_t stream) {
    const GradientRange range{grads, n};
    global_norm_squared(out, &range, 1, scratch, stream);
}
