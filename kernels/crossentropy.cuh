// Fused softmax cross-entropy over the (padded) vocabulary, with the gradient written in place
// into the logits buffer: no second logits-sized allocation (for gpt2s at device batch 64 that
// is N*Vp*2 bytes = 65536 * 50304 * 2 = 6.6 GB).
//
// Per row of logits x (Vp columns, of which the first V are real classes) with target t and
// label smoothing eps, as PyTorch's F.cross_entropy(label_smoothing=eps):
//   lse  = log sum_{c<V} exp(x_c)
//   loss = (1 - eps) * (lse - x_t) + eps * (lse - mean_{c<V} x_c)
//          (eps times the mean over the V classes of -log p_c)
//   dloss/dx_c = p_c - (1 - eps) [c == t] - eps / V  for c < V;  0 for padded columns,
// times grad_scale. Target -100 (ignore index): loss 0 and an all-zero gradient row. A target
// outside [0, V) otherwise is a bug upstream (the data loader rejects such tokens): its loss is
// NaN so that it cannot go unnoticed.
//
// One block per row, two sweeps: the first reads the row once with 16-byte loads and keeps an
// online (max, sum of exp) pair per thread (rescaled when the max grows), plus the sum of the
// logits for the smoothing term; a block reduction gives lse. The second sweep re-reads the row,
// which the first one has just pulled into L2 (a block's row is 100 KB; the rows in flight fit
// in L2 many times over), and overwrites it with the gradient using streaming (evict-first)
// accesses, so HBM sees one read and one write of the logits.
#pragma once

#include <cfloat>

#include "kernels/common.cuh"

constexpr int kCrossEntropyIgnoreIndex = -100;
constexpr int kCrossEntropyThreads = 512;  // from the block-size sweep in dev/cuda/crossentropy.cu
constexpr int kCrossEntropyUnroll = 4;     // 16-byte loads in flight per thread and sweep

// Online softmax statistics of part of a row: running max, sum of exp(x - max), sum of x.
struct SoftmaxStats {
    float max = -FLT_MAX;  // finite, so that exp(identity.max - m) is 0 and never NaN
    float sum = 0.0f;
    float logit_sum = 0.0f;
};

__device__ inline SoftmaxStats combine_stats(const SoftmaxStats& a, const SoftmaxStats& b) {
    SoftmaxStats r;
    r.max = fmaxf(a.max, b.max);
    r.sum = a.sum * __expf(a.max - r.max) + b.sum * __expf(b.max - r.max);
    r.logit_sum = a.logit_sum + b.logit_sum;
    return r;
}

// Adds the real classes (column < V) among the 8 logits at columns [col0, col0 + 8).
template <typename T>
__device__ inline void accumulate_stats(SoftmaxStats& s, const Vec16<T>& x, int col0, int V) {
    float vector_max = -FLT_MAX;
    for (int e = 0; e < Vec16<T>::size; ++e)
        if (col0 + e < V) vector_max = fmaxf(vector_max, x.get(e));
    const float new_max = fmaxf(s.max, vector_max);
    float sum = s.sum * __expf(s.max - new_max);
    for (int e = 0; e < Vec16<T>::size; ++e) {
        if (col0 + e < V) {
            sum += __expf(x.get(e) - new_max);
            s.logit_sum += x.get(e);
        }
    }
    s.max = new_max;
    s.sum = sum;
}

// Combines every thread's stats in a fixed tree (deterministic); every thread gets the result.
template <int kThreads> __device__ SoftmaxStats block_combine_stats(SoftmaxStats s) {
    static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 32");
    __shared__ SoftmaxStats warp_stats[kThreads / 32];
    __shared__ SoftmaxStats block_stats;
    auto warp_combine = [](SoftmaxStats v) {
        for (int offset = 16; offset > 0; offset >>= 1) {
            SoftmaxStats other;
            other.max = __shfl_xor_sync(0xffffffffu, v.max, offset);
            other.sum = __shfl_xor_sync(0xffffffffu, v.sum, offset);
            other.logit_sum = __shfl_xor_sync(0xffffffffu, v.logit_sum, offset);
            v = combine_stats(v, other);
        }
        return v;
    };
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    s = warp_combine(s);
    if (lane == 0) warp_stats[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = warp_combine(lane < kThreads / 32 ? warp_stats[lane] : SoftmaxStats{});
        if (lane == 0) block_stats = s;
    }
    __syncthreads();
    return block_stats;
}

// What the gradient of one row needs besides its logits.
struct CrossEntropyRow {
    float lse;
    int target;
    float one_hot_weight;  // 1 - eps
    float uniform_weight;  // eps / V
    float grad_scale;
    int V;
};

template <typename T> __device__ inline Vec16<T> gradient_vector(const Vec16<T>& x, int col0, const CrossEntropyRow& r) {
    Vec16<T> g;
    for (int e = 0; e < Vec16<T>::size; ++e) {
        const int col = col0 + e;
        float value = 0.0f;
        if (col < r.V)
            value = (__expf(x.get(e) - r.lse) - r.uniform_weight - (col == r.target ? r.one_hot_weight : 0.0f)) *
                    r.grad_scale;
        g.set(e, value);
    }
    return g;
}

template <typename T> __device__ inline void store16_streaming(T* address, const Vec16<T>& v) {
    __stcs(reinterpret_cast<int4*>(address), *reinterpret_cast<const int4*>(&v));
}

// Loss from the row's stats and target logit (ignored rows never get here).
__device__ inline float cross_entropy_loss(const SoftmaxStats& s, float target_logit, bool target_valid, int V,
                                           float label_smoothing) {
    if (!target_valid) return __int_as_float(0x7fc00000);  // NaN: see the header comment
    const float lse = s.max + logf(s.sum);
    return (1.0f - label_smoothing) * (lse - target_logit) + label_smoothing * (lse - s.logit_sum / V);
}

// Writes an all-zero gradient row (ignored targets).
template <typename T, int kThreads> __device__ inline void zero_gradient_row(T* row_logits, int vectors) {
    Vec16<T> zero;
    for (int e = 0; e < Vec16<T>::size; ++e) zero.set(e, 0.0f);
    for (int v = threadIdx.x; v < vectors; v += kThreads) store16_streaming(row_logits + v * Vec16<T>::size, zero);
}

// This block's row (blockIdx.x) as every variant of the kernel starts it (the dev/cuda workbench
// has one that holds the row in registers).
template <typename T> struct CrossEntropyRowInput {
    T* logits;           // the row's Vp columns
    int vectors;         // 16-byte vectors in the row
    int target;
    bool target_valid;   // false: a NaN loss (see the header comment)
    float target_logit;  // thread 0 only
};

// Reads the row's target and, on thread 0, its logit. Returns false when the target is the ignore
// index, after writing the row's loss (0) and, with write_grad, its all-zero gradient.
template <typename T, int kThreads>
__device__ __forceinline__ bool begin_cross_entropy_row(CrossEntropyRowInput<T>& in, T* logits, float* losses,
                                                        const int* targets, int V, int Vp, bool write_grad) {
    in.logits = logits + static_cast<size_t>(blockIdx.x) * Vp;
    in.vectors = Vp / Vec16<T>::size;
    in.target = targets[blockIdx.x];
    if (in.target == kCrossEntropyIgnoreIndex) {
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.0f;
        if (write_grad) zero_gradient_row<T, kThreads>(in.logits, in.vectors);
        return false;
    }
    in.target_valid = in.target >= 0 && in.target < V;
    // Read before any thread can overwrite the row (the reduction's barriers separate the sweeps).
    in.target_logit = threadIdx.x == 0 && in.target_valid ? to_float(in.logits[in.target]) : 0.0f;
    return true;
}

// Combines the threads' stats of the row and writes its loss. Returns false when no gradient is
// wanted (write_grad false), else true with what the gradient needs in `row`.
template <typename T, int kThreads>
__device__ __forceinline__ bool end_cross_entropy_stats(CrossEntropyRow& row, SoftmaxStats stats,
                                                        const CrossEntropyRowInput<T>& in, float* losses, int V,
                                                        float label_smoothing, float grad_scale, bool write_grad) {
    stats = block_combine_stats<kThreads>(stats);
    if (threadIdx.x == 0)
        losses[blockIdx.x] = cross_entropy_loss(stats, in.target_logit, in.target_valid, V, label_smoothing);
    if (!write_grad) return false;
    row = CrossEntropyRow{stats.max + logf(stats.sum), in.target, 1.0f - label_smoothing, label_smoothing / V,
                          grad_scale, V};
    return true;
}

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    fused_cross_entropy_kernel(T* logits /*(N,Vp)*/, float* losses /*(N)*/, const int* targets /*(N)*/, int V,
                               int Vp, float label_smoothing, float grad_scale, bool write_grad) {
    constexpr int kVec = Vec16<T>::size;
    CrossEntropyRowInput<T> in;
    if (!begin_cross_entropy_row<T, kThreads>(in, logits, losses, targets, V, Vp, write_grad)) return;
    T* row_logits = in.logits;
    const int vectors = in.vectors;

    SoftmaxStats stats;
    for (int base = threadIdx.x; base < vectors; base += kThreads * kCrossEntropyUnroll) {
        Vec16<T> x[kCrossEntropyUnroll];
        for (int u = 0; u < kCrossEntropyUnroll; ++u)
            if (base + u * kThreads < vectors) x[u] = load16(row_logits + (base + u * kThreads) * kVec);
        for (int u = 0; u < kCrossEntropyUnroll; ++u)
            if (base + u * kThreads < vectors) accumulate_stats(stats, x[u], (base + u * kThreads) * kVec, V);
    }
    CrossEntropyRow row;
    if (!end_cross_entropy_stats<T, kThreads>(row, stats, in, losses, V, label_smoothing, grad_scale, write_grad))
        return;

    for (int base = threadIdx.x; base < vectors; base += kThreads * kCrossEntropyUnroll) {
        Vec16<T> x[kCrossEntropyUnroll];
        for (int u = 0; u < kCrossEntropyUnroll; ++u)
            if (base + u * kThreads < vectors) x[u] = load16_streaming(row_logits + (base + u * kThreads) * kVec);
        for (int u = 0; u < kCrossEntropyUnroll; ++u) {
            const int v = base + u * kThreads;
            if (v < vectors) store16_streaming(row_logits + v * kVec, gradient_vector(x[u], v * kVec, row));
        }
    }
}

inline void check_cross_entropy_args(const void* logits, int N, int V, int Vp, float label_smoothing) {
    REQUIRE(N > 0 && V > 0 && V <= Vp, "fused_cross_entropy: need N > 0 and 0 < V <= Vp (N=%d V=%d Vp=%d)", N, V, Vp);
    REQUIRE(Vp % 8 == 0, "fused_cross_entropy: the padded vocabulary Vp=%d must be a multiple of 8 (16-byte rows)", Vp);
    REQUIRE(is_aligned16(logits), "fused_cross_entropy: logits must be 16-byte aligned");
    REQUIRE(label_smoothing >= 0.0f && label_smoothing <= 1.0f,
            "fused_cross_entropy: label_smoothing=%g must be in [0, 1]", label_smoothing);
}

// logits (N,Vp): in: logits; out (when write_grad): dloss/dlogits * grad_scale, in place.
// losses (N): per-token loss, 0 where ignored. targets (N): class ids, -100 = ignore.
template <typename T>
void fused_cross_entropy(T* logits, float* losses, const int* targets, int N, int V, int Vp, float label_smoothing,
                         float grad_scale, bool write_grad, cudaStream_t stream) {
    check_cross_entropy_args(logits, N, V, Vp, label_smoothing);
    fused_cross_entropy_kernel<T, kCrossEntropyThreads><<<N, kCrossEntropyThreads, 0, stream>>>(
        logits, losses, targets, V, Vp, label_smoothing, grad_scale, write_grad);
    CUDA_CHECK_LAUNCH();
}
