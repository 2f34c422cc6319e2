// Causal multi-head attention (FlashAttention): forward and deterministic backward.
//
// Math, per batch b and head h, with s = softmax_scale and queries/keys/values q_i, k_j, v_j:
//   S_ij = s * q_i . k_j  for j <= i (causal; j > i is masked out)
//   P_ij = exp(S_ij - lse_i),  lse_i = log sum_j exp(S_ij)            (the row's log-sum-exp)
//   Pd_ij = P_ij * keep_ij * c                                         (attention dropout)
//   O_i = sum_j Pd_ij v_j
// Backward, with dO the gradient of O:
//   dV_j = sum_i Pd_ij dO_i
//   dP_ij = (dO_i . v_j) * keep_ij * c
//   D_i = sum_j P_ij dP_ij = dO_i . O_i                                 (one dot product per row)
//   dS_ij = P_ij (dP_ij - D_i)
//   dQ_i = s * sum_j dS_ij k_j,   dK_j = s * sum_i dS_ij q_i
//
// Fused structure. The T x T matrices S and P never reach memory: forward streams key/value
// tiles through shared memory and keeps a running (max, sum) per query row (online softmax),
// saving only O and lse (memory linear in T). Backward recomputes P from lse. The dropout mask
// is regenerated from DropoutParams, so nothing mask-sized is stored either.
//
// Dropout mask (attention_keep in kernels/common.cuh): one Philox-4x32-10 call per (b, h, query
// i, cell of 8 keys j >> 3), call id ((b*NH + h)*T + i) * ceil(T/8) + (j >> 3); its four words
// hold eight 16-bit values, key j taking half (j & 1) of word (j & 7) >> 1; keep_ij iff the
// value >= threshold = round(p * 65536), and c = 1 / (1 - threshold / 65536) (the effective
// rate is p rounded to a multiple of 2^-16). Philox dominates the cost of dropout, so the
// tensor-core kernels compute each call once per warp and trade the keep bits between the lanes
// that hold its 8 keys (see tile_keep): 1/8 of a call per element in all three kernels.
//
// Determinism: no floating-point atomics. Backward is three kernels: D = rowsum(dO * O); dK and
// dV by key tile (each block loops over the query tiles that see its keys); dQ by query tile
// (each block loops over its key tiles). The price is computing S and dP twice (7 matmuls per
// tile pair instead of FlashAttention-2's 5 with atomic dQ); see dev/cuda/attention_notes.md.
//
// Launch order: grids are (tiles, NH, B) with the tile index fastest, so the blocks running at
// once are the tiles of a few heads and share those heads' K/V (forward, dQ) or Q/dO (dK/dV) in
// L2. With heads fastest, the ~400 resident blocks on an H100 spanned every head of a GPT-2
// batch (150 MB of qkv, three times L2): ncu measured the forward at a 45% L2 hit rate and
// 2.57 TB/s of DRAM traffic, memory-bound.
//
// Two kernel families compute the same function:
//   TensorCores: FlashAttention-2-style kernels on mma.sync m16n8k16 (fp32 accumulation),
//                operands fetched with ldmatrix, tiles double-buffered with cp.async. Each warp
//                owns 16 rows (query rows in forward and dQ, key rows in dK/dV).
//   CudaCores:   the same tiling in plain fp32 on CUDA cores, 32 x 32 tiles. Several times
//                slower; kept as the trusted fallback and as variant 1 of the dev/cuda workbench.
// kDefaultAttentionKernel selects the family that attention_forward/attention_backward use; the
// *_using variants take it at run time (the two families can be mixed: their O and lse agree).
//
// Layouts: qkv (B, T, 3, NH, HD) packed as the QKV matmul writes it (row stride 3*NH*HD);
// out and dout (B, T, NH, HD); lse (B, NH, T), natural log; dqkv like qkv.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/common.cuh"

enum class AttentionKernel { TensorCores, CudaCores };
inline constexpr AttentionKernel kDefaultAttentionKernel = AttentionKernel::TensorCores;

inline const char* attention_kernel_name(AttentionKernel kernel) {
    return kernel == AttentionKernel::TensorCores ? "tensor cores (mma.sync)" : "CUDA cores (fp32)";
}

// Floats of scratch attention_backward needs: D = rowsum(dO * O), one per (b, h, query).
inline size_t attention_backward_scratch_floats(int B, int T, int NH, int HD) {
    (void)HD;
    return static_cast<size_t>(B) * NH * T;
}

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

// Kernels with more than 48 KiB of shared memory must opt in, per kernel.
template <typename Kernel> void allow_dynamic_smem(Kernel kernel, size_t bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// =============================================================================================
// Shared by both families: D_i = dO_i . O_i, one thread per (b, t, h) row.

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

// =============================================================================================
// CUDA-core family: 32 x 32 tiles in fp32 shared memory, 128 threads. Thread t owns tile row
// r = t / 4 and, within it, the columns c = t % 4 + 4 i (scores) and head dims d = t % 4 + 4 i
// (accumulators), so the 4 lanes of a row sit in one quad and reduce with two shuffles.
// Rows are padded to HD + 1 floats so that the 8 rows read at once fall in distinct banks.

namespace cuda_cores {

constexpr int kTile = 32;
constexpr int kThreads = 128;
constexpr int kScoreStride = kTile + 1;

template <int HD> constexpr int row_floats() { return HD + 1; }

// Loads `valid_rows` rows of HD elements (row stride `row_stride` elements) as floats; rows
// beyond them become zeros, so they contribute nothing and produce no NaN.
template <typename T, int HD>
__device__ void load_rows_as_float(float* dst /*(kTile, HD + 1)*/, const T* src, int64_t row_stride, int valid_rows) {
    constexpr int kChunks = HD / Vec16<T>::size;
    for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
        const int row = i / kChunks, col = (i % kChunks) * Vec16<T>::size;
        float* d = dst + row * row_floats<HD>() + col;
        if (row < valid_rows) {
            const Vec16<T> v = load16(src + row * row_stride + col);
#pragma unroll
            for (int e = 0; e < Vec16<T>::size; ++e) d[e] = v.get(e);
        } else {
#pragma unroll
            for (int e = 0; e < Vec16<T>::size; ++e) d[e] = 0.0f;
        }
    }
}

template <int HD> __device__ inline float dot_rows(const float* a, const float* b) {
    float sum = 0.0f;
#pragma unroll 16
    for (int d = 0; d < HD; ++d) sum += a[d] * b[d];
    return sum;
}

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(T* out, float* lse, const T* qkv, int seq_len, int NH, float softmax_scale, DropoutParams drop) {
    constexpr int RF = row_floats<HD>();
    constexpr int kDims = HD / 4;  // accumulators per thread
    extern __shared__ float smem[];
    float* q_s = smem;                 // (kTile, RF)
    float* k_s = q_s + kTile * RF;     // (kTile, RF)
    float* v_s = k_s + kTile * RF;     // (kTile, RF)
    float* p_s = v_s + kTile * RF;     // (kTile, kScoreStride)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;  // most key tiles first: better tail balance
    const int q0 = q_tile * kTile;
    const int64_t row_stride = 3LL * NH * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;
    load_rows_as_float<T, HD>(q_s, q_g + q0 * row_stride, row_stride, min(kTile, seq_len - q0));

    const int r = threadIdx.x / 4, sub = threadIdx.x % 4;
    const int query = q0 + r;
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    float row_max = -INFINITY, row_sum = 0.0f;  // row_sum: this thread's columns only, reduced at the end
    float acc[kDims];
#pragma unroll
    for (int i = 0; i < kDims; ++i) acc[i] = 0.0f;

    for (int j = 0; j <= q_tile; ++j) {
        const int k0 = j * kTile;
        __syncthreads();  // previous tile fully consumed (and, for j == 0, q_s written)
        load_rows_as_float<T, HD>(k_s, k_g + k0 * row_stride, row_stride, min(kTile, seq_len - k0));
        load_rows_as_float<T, HD>(v_s, v_g + k0 * row_stride, row_stride, min(kTile, seq_len - k0));
        __syncthreads();

        float s[kTile / 4];
        float tile_max = row_max;
#pragma unroll
        for (int i = 0; i < kTile / 4; ++i) {
            const int c = sub + 4 * i;
            s[i] = k0 + c <= query ? dot_rows<HD>(q_s + r * RF, k_s + c * RF) : -INFINITY;
            tile_max = fmaxf(tile_max, s[i]);
        }
        tile_max = shuffle_max4(tile_max);
        // A row whose keys are all masked so far keeps max -inf; use 0 as the base so exp2 gives 0, not NaN.
        const float base = tile_max == -INFINITY ? 0.0f : tile_max;
        const float alpha = exp2f((row_max - base) * scale_log2);
        row_max = tile_max;
        row_sum *= alpha;
#pragma unroll
        for (int i = 0; i < kDims; ++i) acc[i] *= alpha;
#pragma unroll
        for (int i = 0; i < kTile / 4; ++i) {
            const int c = sub + 4 * i;
            float p = exp2f((s[i] - base) * scale_log2);
            row_sum += p;
            if (drop.enabled() && k0 + c <= query &&
                !attention_keep(drop, drop_rate.threshold, b, h, NH, seq_len, query, k0 + c))
                p = 0.0f;
            p_s[r * kScoreStride + c] = p;
        }
        __syncwarp();  // a row's probabilities are written and read by the same quad
        for (int c = 0; c < kTile; ++c) {
            const float p = p_s[r * kScoreStride + c];
#pragma unroll
            for (int i = 0; i < kDims; ++i) acc[i] += p * v_s[c * RF + sub + 4 * i];
        }
    }

    row_sum = shuffle_sum4(row_sum);
    if (query >= seq_len) return;
    const float inv = (drop.enabled() ? drop_rate.scale : 1.0f) / row_sum;
    T* o = out + ((static_cast<int64_t>(b) * seq_len + query) * NH + h) * HD;
#pragma unroll
    for (int i = 0; i < kDims; ++i) o[sub + 4 * i] = from_float<T>(acc[i] * inv);
    if (sub == 0) lse[(static_cast<int64_t>(b) * NH + h) * seq_len + query] = row_max * softmax_scale + logf(row_sum);
}

// Head h of batch b in the backward kernels' inputs: its Q, K and V rows in qkv (row stride
// 3 * NH * HD) and its dO rows in dout (row stride NH * HD). The dQ kernel holds a query tile
// and streams key tiles, the dK/dV kernel the other way round; both load tiles with these.
template <typename T, int HD> struct BackwardHeadRows {
    const T* q;
    const T* k;
    const T* v;
    const T* dout;
    int64_t qkv_stride;
    int seq_len, NH;

    __device__ __forceinline__ BackwardHeadRows(const T* qkv, const T* dout_all, int b, int h, int seq_len_, int NH_)
        : qkv_stride(3LL * NH_ * HD), seq_len(seq_len_), NH(NH_) {
        q = qkv + static_cast<int64_t>(b) * seq_len * qkv_stride + static_cast<int64_t>(h) * HD;
        k = q + NH * HD;
        v = k + NH * HD;
        dout = dout_all + (static_cast<int64_t>(b) * seq_len * NH + h) * HD;
    }
    // Q and dO rows [q0, q0 + kTile), as floats.
    __device__ __forceinline__ void load_query_tile(float* q_s, float* do_s, int q0) const {
        load_rows_as_float<T, HD>(q_s, q + q0 * qkv_stride, qkv_stride, min(kTile, seq_len - q0));
        load_rows_as_float<T, HD>(do_s, dout + static_cast<int64_t>(q0) * NH * HD, static_cast<int64_t>(NH) * HD,
                                  min(kTile, seq_len - q0));
    }
    // K and V rows [k0, k0 + kTile), as floats.
    __device__ __forceinline__ void load_key_tile(float* k_s, float* v_s, int k0) const {
        load_rows_as_float<T, HD>(k_s, k + k0 * qkv_stride, qkv_stride, min(kTile, seq_len - k0));
        load_rows_as_float<T, HD>(v_s, v + k0 * qkv_stride, qkv_stride, min(kTile, seq_len - k0));
    }
};

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    backward_dq_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                       int NH, float softmax_scale, DropoutParams drop) {
    constexpr int RF = row_floats<HD>();
    constexpr int kDims = HD / 4;
    extern __shared__ float smem[];
    float* q_s = smem;                  // (kTile, RF)
    float* do_s = q_s + kTile * RF;     // (kTile, RF)
    float* k_s = do_s + kTile * RF;     // (kTile, RF)
    float* v_s = k_s + kTile * RF;      // (kTile, RF)
    float* ds_s = v_s + kTile * RF;     // (kTile, kScoreStride)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;
    const int q0 = q_tile * kTile;
    const BackwardHeadRows<T, HD> rows(qkv, dout, b, h, seq_len, NH);
    rows.load_query_tile(q_s, do_s, q0);

    const int r = threadIdx.x / 4, sub = threadIdx.x % 4;
    const int query = q0 + r;
    const int64_t stat_index = (static_cast<int64_t>(b) * NH + h) * seq_len + query;
    const float lse_log2 = query < seq_len ? lse[stat_index] * kLog2e : 0.0f;
    const float d_row = query < seq_len ? row_dot[stat_index] : 0.0f;
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    float acc[kDims];
#pragma unroll
    for (int i = 0; i < kDims; ++i) acc[i] = 0.0f;

    for (int j = 0; j <= q_tile; ++j) {
        const int k0 = j * kTile;
        __syncthreads();
        rows.load_key_tile(k_s, v_s, k0);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < kTile / 4; ++i) {
            const int c = sub + 4 * i, key = k0 + c;
            float ds = 0.0f;
            if (key <= query) {
                const float p = exp2f(dot_rows<HD>(q_s + r * RF, k_s + c * RF) * scale_log2 - lse_log2);
                float dp = dot_rows<HD>(do_s + r * RF, v_s + c * RF);
                if (drop.enabled()) {
                    const bool keep = attention_keep(drop, drop_rate.threshold, b, h, NH, seq_len, query, key);
                    dp = keep ? dp * drop_scale : 0.0f;
                }
                ds = p * (dp - d_row);
            }
            ds_s[r * kScoreStride + c] = ds;
        }
        __syncwarp();
        for (int c = 0; c < kTile; ++c) {
            const float ds = ds_s[r * kScoreStride + c];
#pragma unroll
            for (int i = 0; i < kDims; ++i) acc[i] += ds * k_s[c * RF + sub + 4 * i];
        }
    }
    if (query >= seq_len) return;
    const int64_t row_stride = rows.qkv_stride;
    T* dq = dqkv + static_cast<int64_t>(b) * seq_len * row_stride + query * row_stride + static_cast<int64_t>(h) * HD;
#pragma unroll
    for (int i = 0; i < kDims; ++i) dq[sub + 4 * i] = from_float<T>(acc[i] * softmax_scale);
}

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    backward_dkdv_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                         int NH, float softmax_scale, DropoutParams drop) {
    constexpr int RF = row_floats<HD>();
    constexpr int kDims = HD / 4;
    extern __shared__ float smem[];
    float* k_s = smem;                          // (kTile, RF)
    float* v_s = k_s + kTile * RF;              // (kTile, RF)
    float* q_s = v_s + kTile * RF;              // (kTile, RF)
    float* do_s = q_s + kTile * RF;             // (kTile, RF)
    float* pd_s = do_s + kTile * RF;            // (kTile, kScoreStride): dropped P, keys x queries
    float* ds_s = pd_s + kTile * kScoreStride;  // (kTile, kScoreStride): dS, keys x queries
    float* lse_s = ds_s + kTile * kScoreStride; // (kTile) in log2 units
    float* d_s = lse_s + kTile;                 // (kTile)

    const int h = blockIdx.y, b = blockIdx.z;
    const int k_tile = blockIdx.x;  // tile 0 sees every query: heaviest first
    const int k0 = k_tile * kTile;
    const BackwardHeadRows<T, HD> rows(qkv, dout, b, h, seq_len, NH);
    const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;
    rows.load_key_tile(k_s, v_s, k0);

    const int r = threadIdx.x / 4, sub = threadIdx.x % 4;
    const int key = k0 + r;
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    float dk[kDims], dv[kDims];
#pragma unroll
    for (int i = 0; i < kDims; ++i) dk[i] = dv[i] = 0.0f;

    const int num_q_tiles = ceil_div(seq_len, kTile);
    for (int qt = k_tile; qt < num_q_tiles; ++qt) {
        const int qs0 = qt * kTile;
        __syncthreads();
        rows.load_query_tile(q_s, do_s, qs0);
        if (threadIdx.x < kTile) {
            const int q = qs0 + threadIdx.x;
            lse_s[threadIdx.x] = q < seq_len ? lse[stat_base + q] * kLog2e : 0.0f;
            d_s[threadIdx.x] = q < seq_len ? row_dot[stat_base + q] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < kTile / 4; ++i) {
            const int c = sub + 4 * i, query = qs0 + c;
            float pd = 0.0f, ds = 0.0f;
            if (key <= query && query < seq_len) {
                const float p = exp2f(dot_rows<HD>(k_s + r * RF, q_s + c * RF) * scale_log2 - lse_s[c]);
                float dp = dot_rows<HD>(v_s + r * RF, do_s + c * RF);
                pd = p;
                if (drop.enabled()) {
                    const bool keep = attention_keep(drop, drop_rate.threshold, b, h, NH, seq_len, query, key);
                    pd = keep ? p * drop_scale : 0.0f;
                    dp = keep ? dp * drop_scale : 0.0f;
                }
                ds = p * (dp - d_s[c]);
            }
            pd_s[r * kScoreStride + c] = pd;
            ds_s[r * kScoreStride + c] = ds;
        }
        __syncwarp();
        for (int c = 0; c < kTile; ++c) {
            const float pd = pd_s[r * kScoreStride + c], ds = ds_s[r * kScoreStride + c];
#pragma unroll
            for (int i = 0; i < kDims; ++i) {
                dv[i] += pd * do_s[c * RF + sub + 4 * i];
                dk[i] += ds * q_s[c * RF + sub + 4 * i];
            }
        }
    }
    if (key >= seq_len) return;
    const int64_t row_stride = rows.qkv_stride;
    T* dk_g = dqkv + static_cast<int64_t>(b) * seq_len * row_stride + key * row_stride + static_cast<int64_t>(NH + h) * HD;
    T* dv_g = dk_g + NH * HD;
#pragma unroll
    for (int i = 0; i < kDims; ++i) {
        dk_g[sub + 4 * i] = from_float<T>(dk[i] * softmax_scale);
        dv_g[sub + 4 * i] = from_float<T>(dv[i]);
    }
}

template <typename T, int HD>
void forward(T* out, float* lse, const T* qkv, int B, int T_len, int NH, float softmax_scale, DropoutParams drop,
             cudaStream_t stream) {
    const size_t smem = (3 * kTile * row_floats<HD>() + kTile * kScoreStride) * sizeof(float);
    allow_dynamic_smem(forward_kernel<T, HD>, smem);
    const dim3 grid(ceil_div(T_len, kTile), NH, B);
    forward_kernel<T, HD><<<grid, kThreads, smem, stream>>>(out, lse, qkv, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

template <typename T, int HD>
void backward(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len, int NH,
              float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    const dim3 grid(ceil_div(T_len, kTile), NH, B);
    const size_t dq_smem = (4 * kTile * row_floats<HD>() + kTile * kScoreStride) * sizeof(float);
    allow_dynamic_smem(backward_dq_kernel<T, HD>, dq_smem);
    backward_dq_kernel<T, HD><<<grid, kThreads, dq_smem, stream>>>(dqkv, qkv, dout, lse, row_dot, T_len, NH,
                                                                   softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
    const size_t dkdv_smem = (4 * kTile * row_floats<HD>() + 2 * kTile * kScoreStride + 2 * kTile) * sizeof(float);
    allow_dynamic_smem(backward_dkdv_kernel<T, HD>, dkdv_smem);
    backward_dkdv_kernel<T, HD><<<grid, kThreads, dkdv_smem, stream>>>(dqkv, qkv, dout, lse, row_dot, T_len, NH,
                                                                       softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

}  // namespace cuda_cores

// =============================================================================================
// Tensor-core family.
//
// mma.sync.m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
// type"), with g = lane / 4 and t = lane % 4; each 32-bit register holds two consecutive
// 16-bit elements, the lower column (or row, for B) in the low half:
//   A (16 x 16, row-major): a[0] = A[g][2t..2t+1]   a[1] = A[g+8][2t..2t+1]
//                           a[2] = A[g][2t+8..2t+9] a[3] = A[g+8][2t+8..2t+9]
//   B (16 x 8):             b[0] = B[2t..2t+1][g]   b[1] = B[2t+8..2t+9][g]
//   C (16 x 8, fp32):       c[0..1] = C[g][2t..2t+1] c[2..3] = C[g+8][2t..2t+1]
// ldmatrix.x4 loads four 8 x 8 matrices: lanes 8m..8m+7 supply the row addresses of matrix m,
// and register m of lane l receives row l/4, columns 2(l%4)..+1 of matrix m; with .trans it
// receives rows 2(l%4)..+1 of column l/4 instead. Consequences used below:
//   * an A fragment is ldmatrix of the 16 x 16 block with matrices ordered (rows 0-7, cols 0-7),
//     (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15)   ["A order"];
//   * when B^T is stored row-major as X[n][k] (K in Q K^T), B fragments for two n8 tiles are
//     ldmatrix of X with matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
//     (n 8-15, k 8-15)   ["B order"]: registers 0, 1 serve n 0-7 and registers 2, 3 n 8-15;
//   * when B is stored row-major as X[k][n] (V in P V), B fragments for two n8 tiles are
//     ldmatrix.trans of X in A order: registers 0, 1 serve n 0-7 and registers 2, 3 n 8-15;
//   * a C tile pair (n8 tiles 2i and 2i+1) is, element for element, the A fragment of k16
//     step i, so P and dS go from one matmul into the next without leaving registers.

namespace tensor_cores {

// Shared-memory rows are padded by 8 elements (16 bytes). For HD in {64, 80, 96, 128} the row
// pitch (144, 176, 208, 272 bytes) is an odd multiple of 16 bytes modulo 128, so the 8 rows of
// one ldmatrix matrix start in 8 distinct 16-byte bank groups: conflict-free without a swizzle.
template <int HD> constexpr int smem_pitch() { return HD + 8; }

__device__ inline uint32_t smem_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy that bypasses registers; an invalid source writes zeros
// (src-size 0), so rows past the sequence end are finite and contribute nothing.
__device__ inline void cp_async_16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ inline void cp_async_4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(dst)), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ inline void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(p))
                 : "memory");
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(p))
                 : "memory");
}

template <typename T> __device__ inline void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ inline void mma_16x8x16<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ inline void mma_16x8x16<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T> __device__ inline uint32_t pack_pair(float lo, float hi);
template <> __device__ inline uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) is the low half
    return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ inline uint32_t pack_pair<__half>(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// A fragment of the 16 x 16 block at (row0, col0) of a row-major tile (A order, see above).
template <int P, typename T> __device__ inline void load_a(uint32_t (&a)[4], const T* tile, int row0, int col0, int lane) {
    ldmatrix_x4(a, tile + (row0 + (lane & 15)) * P + col0 + ((lane >> 4) << 3));
}
// B fragments of n tiles n0..n0+7 (b[0], b[1]) and n0+8..n0+15 (b[2], b[3]) over k0..k0+15, from a
// tile stored as X[n][k] (B order).
template <int P, typename T> __device__ inline void load_b_nk(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
    ldmatrix_x4(b, tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * P + k0 + (((lane >> 3) & 1) << 3));
}
// The same from a tile stored as X[k][n] (transposing load, A order).
template <int P, typename T> __device__ inline void load_b_kn(uint32_t (&b)[4], const T* tile, int k0, int n0, int lane) {
    ldmatrix_x4_trans(b, tile + (k0 + (lane & 15)) * P + n0 + ((lane >> 4) << 3));
}

// C tiles 2i and 2i+1 (16 x 16 fp32) -> A fragment of k16 step i, rounded to T.
template <typename T> __device__ inline void c_pair_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = pack_pair<T>(c0[0], c0[1]);
    a[1] = pack_pair<T>(c0[2], c0[3]);
    a[2] = pack_pair<T>(c1[0], c1[1]);
    a[3] = pack_pair<T>(c1[2], c1[3]);
}

// Issues cp.async for ROWS rows of HD elements (global row stride `row_stride`); rows at or past
// `valid_rows` become zeros.
template <int HD, int ROWS, int NTHREADS, typename T>
__device__ inline void load_tile_async(T* dst /*(ROWS, pitch)*/, const T* src, int64_t row_stride, int valid_rows) {
    static_assert(sizeof(T) == 2, "16-bit storage types only");
    constexpr int kChunks = HD / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < ROWS * kChunks; i += NTHREADS) {
        const int row = i / kChunks, col = (i % kChunks) * 8;
        const bool valid = row < valid_rows;
        cp_async_16(dst + row * smem_pitch<HD>() + col, valid ? src + row * row_stride + col : src, valid);
    }
}
template <int N, int NTHREADS>
__device__ inline void load_floats_async(float* dst /*(N)*/, const float* src, int valid) {
    for (int i = threadIdx.x; i < N; i += NTHREADS) cp_async_4(dst + i, i < valid ? src + i : src, i < valid);
}

// A warp's 16 x HD fp32 accumulators (C layout, n8 tiles along HD) -> T rows in shared memory,
// rows g and g+8 multiplied by scale0 and scale1. Packed 32-bit stores: with the padded pitch
// the 32 lanes hit 32 distinct banks.
template <typename T, int HD>
__device__ inline void stage_rows(T* dst /*(16, pitch)*/, const float (&acc)[HD / 8][4], float scale0, float scale1,
                                  int lane) {
    constexpr int P = smem_pitch<HD>();
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(dst + g * P + dt * 8 + 2 * t) = pack_pair<T>(acc[dt][0] * scale0, acc[dt][1] * scale0);
        *reinterpret_cast<uint32_t*>(dst + (g + 8) * P + dt * 8 + 2 * t) =
            pack_pair<T>(acc[dt][2] * scale1, acc[dt][3] * scale1);
    }
}
// Copies the first `valid_rows` staged rows to global memory with 16-byte stores.
template <typename T, int HD>
__device__ inline void store_rows(T* dst, int64_t row_stride, const T* src /*(16, pitch)*/, int valid_rows, int lane) {
    constexpr int kChunks = HD / 8;
    __syncwarp();  // rows were staged by other lanes
    for (int i = lane; i < 16 * kChunks; i += 32) {
        const int row = i / kChunks, col = (i % kChunks) * 8;
        if (row < valid_rows) store16(dst + row * row_stride + col, load16(src + row * smem_pitch<HD>() + col));
    }
}

// Attention dropout on a warp's 16 x 8NT score tile in C fragments. Lane (g, t) holds elements
// (nt, e), e = 0..3, at tile row g + 8 (e >> 1), column 8 nt + 2t + (e & 1):
//   row layout (forward, dQ; S = Q K^T): rows are queries, columns keys;
//   key-row layout (dK/dV; S^T = K Q^T): rows are keys, columns queries.
// The tile needs 16 NT Philox calls (attention_keep: one per query and cell of 8 keys), and the
// 8 values of each call belong to one group of lanes: in the row layout the quad sharing g (cell
// nt of row g + 8i, lane t taking keys 2t, 2t+1), in the key-row layout the 8 lanes sharing t
// (query 8 nt + 2t + (e & 1), cell of keys 8i..8i+7, lane g taking key g). Rather than have every
// lane recompute whole calls, member s of a group computes calls c = GROUP n + s of its group
// (n = 0 .. NT/2 - 1) and stores each call's keep byte (attention_keep_byte) at byte n % 4 of a
// word; transpose_keep_bits then hands every member the flags of its own keys. The group's calls
// are numbered c = 2 nt + (e >> 1) (row layout) or c = 4 nt + e (key-row layout), which puts the
// flag of element (nt, e) at bit 4 (nt % 8) + e of word nt / 8 in both layouts (TileKeep).

// Transposes keep bits within groups of GROUP (4 or 8) lanes, lanes STRIDE apart. Before: member
// s holds in byte j the 8 flags of one call. After: member d holds in byte j, at bits W s .. W s
// + W - 1 (W = 8 / GROUP), member s's flags W d .. W d + W - 1 of byte j. A butterfly: each step
// swaps one bit of the position within the byte with one bit of the member index, with one
// shuffle (cheaper than exchanging whole 32-bit words: 2 or 3 shuffles for 4 calls per lane).
template <int GROUP, int STRIDE> __device__ inline uint32_t transpose_keep_bits(uint32_t bits, int member) {
    static_assert(GROUP == 4 || GROUP == 8, "a group covers the 8 keys of a cell in W = 8 / GROUP bits per lane");
    constexpr int kFirstLevel = GROUP == 4 ? 1 : 0;  // log2(W): position bits below it stay in place
#pragma unroll
    for (int level = kFirstLevel; level < 3; ++level) {
        // Byte positions with bit `level` set; member bit (level - kFirstLevel) trades places with it.
        const uint32_t upper = level == 0 ? 0xAAAAAAAAu : level == 1 ? 0xCCCCCCCCu : 0xF0F0F0F0u;
        const int shift = 1 << level, member_bit = level - kFirstLevel;
        const bool upper_member = (member >> member_bit) & 1;
        const uint32_t send = upper_member ? (bits & ~upper) << shift : (bits & upper) >> shift;
        const uint32_t received = __shfl_xor_sync(0xffffffffu, send, STRIDE << member_bit);
        bits = (bits & (upper_member ? upper : ~upper)) | received;
    }
    return bits;
}

// Keep flags of a warp's score tile (layout above); element (nt, e) is kept iff keep(nt, e).
template <int NT> struct TileKeep {
    uint32_t words[(NT + 7) / 8] = {};
    __device__ bool operator()(int nt, int e) const { return (words[nt >> 3] >> (4 * (nt & 7) + e)) & 1u; }
};

// call_id(n): the Philox call id of this lane's n-th call, group call GROUP n + member. Every lane
// of the warp must take part (shuffles); calls of masked elements are computed like the others.
template <int NT, int GROUP, int STRIDE, typename CallId>
__device__ inline TileKeep<NT> tile_keep(const DropoutParams& drop, uint32_t threshold, int member, CallId call_id) {
    static_assert(NT % 2 == 0, "16 NT calls over 32 lanes");
    TileKeep<NT> keep;
#pragma unroll
    for (int w = 0; w < (NT + 7) / 8; ++w) {
        uint32_t bytes = 0;
#pragma unroll
        for (int j = 0; j < 4 && 4 * w + j < NT / 2; ++j)
            bytes |= attention_keep_byte(drop.random_words(call_id(4 * w + j)), threshold) << (8 * j);
        keep.words[w] = transpose_keep_bits<GROUP, STRIDE>(bytes, member);
    }
    return keep;
}

// Forward and dQ stream key tiles: issues cp.async for K and V rows [k0, k0 + BK) of a head
// into one stage of the double buffers (rows past the sequence end become zeros).
template <int HD, int BK, int NTHREADS, typename T>
__device__ __forceinline__ void load_key_tile_async(T* k_dst /*(BK, pitch)*/, T* v_dst /*(BK, pitch)*/, const T* k_g,
                                                    const T* v_g, int64_t row_stride, int k0, int seq_len) {
    load_tile_async<HD, BK, NTHREADS>(k_dst, k_g + k0 * row_stride, row_stride, min(BK, seq_len - k0));
    load_tile_async<HD, BK, NTHREADS>(v_dst, v_g + k0 * row_stride, row_stride, min(BK, seq_len - k0));
}

// acc += S X for a warp's 16 rows (O += P V in forward, dQ += dS K in dQ): S the 16 x BK score
// tile in C fragments, rounded to T on the way into A fragments; X the BK x HD tile stored
// row-major in shared memory.
template <typename T, int HD, int BK>
__device__ __forceinline__ void accumulate_scores_times_tile(float (&acc)[HD / 8][4], const float (&s)[BK / 8][4],
                                                             const T* x_tile /*(BK, pitch)*/, int lane) {
    constexpr int P = smem_pitch<HD>();
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
        uint32_t sa[4];
        c_pair_to_a<T>(sa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
        for (int dt = 0; dt < HD / 16; ++dt) {
            uint32_t xb[4];
            load_b_kn<P>(xb, x_tile, kc * 16, dt * 16, lane);
            mma_16x8x16<T>(acc[2 * dt], sa, xb[0], xb[1]);
            mma_16x8x16<T>(acc[2 * dt + 1], sa, xb[2], xb[3]);
        }
    }
}

// Forward. Block: NWARPS warps x 16 query rows; loops over key tiles of BK keys up to the
// diagonal, K and V double-buffered so the copy of tile j+1 overlaps the math of tile j.
template <typename T, int HD, int NWARPS, int BK>
__global__ void __launch_bounds__(NWARPS * 32)
    forward_kernel(T* out, float* lse, const T* qkv, int seq_len, int NH, float softmax_scale, DropoutParams drop) {
    constexpr int BQ = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16;  // k16 steps over the head dim
    constexpr int ND = HD / 8;   // n8 tiles over the head dim
    constexpr int NK = BK / 8;   // n8 tiles over a key tile
    static_assert(BK % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* q_s = reinterpret_cast<T*>(smem_raw);  // (BQ, P); each warp later stages its output in its rows
    T* k_s = q_s + BQ * P;                    // (2, BK, P)
    T* v_s = k_s + 2 * BK * P;                // (2, BK, P)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;  // most key tiles first: better tail balance
    const int q0 = q_tile * BQ;
    const int q_rows = min(BQ, seq_len - q0);
    const int num_k_tiles = ceil_div(q0 + q_rows, BK);
    const int64_t row_stride = 3LL * NH * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;

    load_tile_async<HD, BQ, NTHREADS>(q_s, q_g + q0 * row_stride, row_stride, q_rows);
    load_key_tile_async<HD, BK, NTHREADS>(k_s, v_s, k_g, v_g, row_stride, 0, seq_len);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_q0 = q0 + warp * 16;
    const bool warp_active = warp_q0 < seq_len;  // warp-uniform
    const int row[2] = {warp_q0 + lane / 4, warp_q0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    // This lane's dropout calls in key tile k0 (tile_keep, row layout): row g + 8 (t & 1), cells
    // k0/8 + 2n + (t >> 1).
    const uint64_t drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);

    cp_async_wait_all();
    __syncthreads();
    uint32_t q_frag[KD][4];
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) load_a<P>(q_frag[kd], q_s, warp * 16, kd * 16, lane);

    float o[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's columns

    for (int j = 0; j < num_k_tiles; ++j) {
        if (j > 0) {
            cp_async_wait_all();  // tile j has landed ...
            __syncthreads();      // ... for every thread, and every warp is done with tile j-1
        }
        if (j + 1 < num_k_tiles) {  // refill the buffer tile j-1 used
            const int next = (j + 1) * BK;
            const int stage = (j + 1) & 1;
            load_key_tile_async<HD, BK, NTHREADS>(k_s + stage * BK * P, v_s + stage * BK * P, k_g, v_g, row_stride, next,
                                                  seq_len);
            cp_async_commit();
        }
        const int k0 = j * BK;
        if (!warp_active || k0 > warp_q0 + 15) continue;  // every key of the tile is after every row
        const T* k_tile = k_s + (j & 1) * BK * P;
        const T* v_tile = v_s + (j & 1) * BK * P;

        float s[NK][4];
#pragma unroll
        for (int nt = 0; nt < NK; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
            for (int np = 0; np < NK / 2; ++np) {
                uint32_t kb[4];
                load_b_nk<P>(kb, k_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(s[2 * np], q_frag[kd], kb[0], kb[1]);
                mma_16x8x16<T>(s[2 * np + 1], q_frag[kd], kb[2], kb[3]);
            }
        }
        if (k0 + BK - 1 > warp_q0) {  // the tile reaches past the diagonal of some row: causal mask
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (k0 + nt * 8 + 2 * t + (e & 1) > row[e >> 1]) s[nt][e] = -INFINITY;
        }

        // Online softmax in raw-score units: max first, then p = exp2((s - max) * scale * log2 e).
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float tile_max = row_max[i];
#pragma unroll
            for (int nt = 0; nt < NK; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
            tile_max = shuffle_max4(tile_max);
            // All keys masked so far (only rows past the sequence end): base 0 keeps exp2 at 0, not NaN.
            const float base = tile_max == -INFINITY ? 0.0f : tile_max;
            const float alpha = exp2f((row_max[i] - base) * scale_log2);
            row_max[i] = tile_max;
            row_sum[i] *= alpha;
#pragma unroll
            for (int dt = 0; dt < ND; ++dt) {
                o[dt][2 * i] *= alpha;
                o[dt][2 * i + 1] *= alpha;
            }
            const float offset = base * scale_log2;
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 2 * i; e < 2 * i + 2; ++e) {
                    s[nt][e] = exp2f(fmaf(s[nt][e], scale_log2, -offset));
                    row_sum[i] += s[nt][e];
                }
        }
        // Dropout zeroes probabilities after they entered the softmax sum; its scale is applied once at the end.
        if (drop.enabled()) {
            const TileKeep<NK> keep = tile_keep<NK, 4, 1>(drop, drop_rate.threshold, t,
                                                          [&](int n) { return drop_call0 + k0 / 8 + 2 * n; });
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!keep(nt, e)) s[nt][e] = 0.0f;
        }
        accumulate_scores_times_tile<T, HD, BK>(o, s, v_tile, lane);
    }
    if (!warp_active) return;  // no block-wide barrier follows

    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        row_sum[i] = shuffle_sum4(row_sum[i]);
        inv[i] = drop_scale / row_sum[i];
        if (t == 0 && row[i] < seq_len)
            lse[(static_cast<int64_t>(b) * NH + h) * seq_len + row[i]] = row_max[i] * softmax_scale + logf(row_sum[i]);
    }
    T* o_s = q_s + warp * 16 * P;  // this warp's Q rows: already in q_frag
    stage_rows<T, HD>(o_s, o, inv[0], inv[1], lane);
    store_rows<T, HD>(out + ((static_cast<int64_t>(b) * seq_len + warp_q0) * NH + h) * HD, static_cast<int64_t>(NH) * HD,
                      o_s, min(16, seq_len - warp_q0), lane);
}

// Backward, dQ. Block: NWARPS warps x 16 query rows (Q and dO fragments stay in registers);
// loops over key tiles of BK keys up to the diagonal, recomputing P and dP per tile.
template <typename T, int HD, int NWARPS, int BK>
__global__ void __launch_bounds__(NWARPS * 32)
    backward_dq_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                       int NH, float softmax_scale, DropoutParams drop) {
    constexpr int BQ = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16, ND = HD / 8, NK = BK / 8;
    static_assert(BK % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* q_s = reinterpret_cast<T*>(smem_raw);  // (BQ, P); each warp later stages its dQ in its rows
    T* do_s = q_s + BQ * P;                   // (BQ, P)
    T* k_s = do_s + BQ * P;                   // (2, BK, P)
    T* v_s = k_s + 2 * BK * P;                // (2, BK, P)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;
    const int q0 = q_tile * BQ;
    const int q_rows = min(BQ, seq_len - q0);
    const int num_k_tiles = ceil_div(q0 + q_rows, BK);
    const int64_t row_stride = 3LL * NH * HD, out_stride = static_cast<int64_t>(NH) * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;
    const T* do_g = dout + static_cast<int64_t>(b) * seq_len * out_stride + static_cast<int64_t>(h) * HD;

    load_tile_async<HD, BQ, NTHREADS>(q_s, q_g + q0 * row_stride, row_stride, q_rows);
    load_tile_async<HD, BQ, NTHREADS>(do_s, do_g + q0 * out_stride, out_stride, q_rows);
    load_key_tile_async<HD, BK, NTHREADS>(k_s, v_s, k_g, v_g, row_stride, 0, seq_len);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_q0 = q0 + warp * 16;
    const bool warp_active = warp_q0 < seq_len;
    const int row[2] = {warp_q0 + lane / 4, warp_q0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    // This lane's dropout calls in key tile k0, as in forward.
    const uint64_t drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);
    const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;
    float lse_log2[2], d_row[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        lse_log2[i] = row[i] < seq_len ? lse[stat_base + row[i]] * kLog2e : 0.0f;
        d_row[i] = row[i] < seq_len ? row_dot[stat_base + row[i]] : 0.0f;
    }

    cp_async_wait_all();
    __syncthreads();
    uint32_t q_frag[KD][4], do_frag[KD][4];
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
        load_a<P>(q_frag[kd], q_s, warp * 16, kd * 16, lane);
        load_a<P>(do_frag[kd], do_s, warp * 16, kd * 16, lane);
    }
    float dq[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;

    for (int j = 0; j < num_k_tiles; ++j) {
        if (j > 0) {
            cp_async_wait_all();
            __syncthreads();
        }
        if (j + 1 < num_k_tiles) {
            const int next = (j + 1) * BK;
            const int stage = (j + 1) & 1;
            load_key_tile_async<HD, BK, NTHREADS>(k_s + stage * BK * P, v_s + stage * BK * P, k_g, v_g, row_stride, next,
                                                  seq_len);
            cp_async_commit();
        }
        const int k0 = j * BK;
        if (!warp_active || k0 > warp_q0 + 15) continue;
        const T* k_tile = k_s + (j & 1) * BK * P;
        const T* v_tile = v_s + (j & 1) * BK * P;

        float s[NK][4], dp[NK][4];  // S = Q K^T and dP = dO V^T, 16 rows x BK keys
#pragma unroll
        for (int nt = 0; nt < NK; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
            for (int np = 0; np < NK / 2; ++np) {
                uint32_t kb[4], vb[4];
                load_b_nk<P>(kb, k_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(s[2 * np], q_frag[kd], kb[0], kb[1]);
                mma_16x8x16<T>(s[2 * np + 1], q_frag[kd], kb[2], kb[3]);
                load_b_nk<P>(vb, v_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(dp[2 * np], do_frag[kd], vb[0], vb[1]);
                mma_16x8x16<T>(dp[2 * np + 1], do_frag[kd], vb[2], vb[3]);
            }
        }
        const bool masked_tile = k0 + BK - 1 > warp_q0;
        TileKeep<NK> keep;
        if (drop.enabled())
            keep = tile_keep<NK, 4, 1>(drop, drop_rate.threshold, t,
                                       [&](int n) { return drop_call0 + k0 / 8 + 2 * n; });
        // dS = P (dP - D), written over s.
#pragma unroll
        for (int nt = 0; nt < NK; ++nt)
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int key = k0 + nt * 8 + 2 * t;
                float p0 = exp2f(fmaf(s[nt][2 * i], scale_log2, -lse_log2[i]));
                float p1 = exp2f(fmaf(s[nt][2 * i + 1], scale_log2, -lse_log2[i]));
                if (masked_tile) {
                    if (key > row[i]) p0 = 0.0f;
                    if (key + 1 > row[i]) p1 = 0.0f;
                }
                float dp0 = dp[nt][2 * i], dp1 = dp[nt][2 * i + 1];
                if (drop.enabled()) {
                    dp0 = keep(nt, 2 * i) ? dp0 * drop_scale : 0.0f;
                    dp1 = keep(nt, 2 * i + 1) ? dp1 * drop_scale : 0.0f;
                }
                s[nt][2 * i] = p0 * (dp0 - d_row[i]);
                s[nt][2 * i + 1] = p1 * (dp1 - d_row[i]);
            }
        accumulate_scores_times_tile<T, HD, BK>(dq, s, k_tile, lane);  // dQ += dS K
    }
    if (!warp_active) return;
    T* dq_s = q_s + warp * 16 * P;  // this warp's Q rows: already in q_frag
    stage_rows<T, HD>(dq_s, dq, softmax_scale, softmax_scale, lane);
    store_rows<T, HD>(dqkv + static_cast<int64_t>(b) * seq_len * row_stride + warp_q0 * row_stride +
                          static_cast<int64_t>(h) * HD,
                      row_stride, dq_s, min(16, seq_len - warp_q0), lane);
}

// Backward, dK and dV. Block: NWARPS warps x 16 key rows (K and V stay in shared memory for the
// whole block); loops over the query tiles of BQ queries that see these keys (from the diagonal
// to the end), with Q, dO, lse and D double-buffered. Works on transposed scores S^T (keys x
// queries) so that each warp's accumulators are its own key rows.
template <typename T, int HD, int NWARPS, int BQ>
__global__ void __launch_bounds__(NWARPS * 32)
    backward_dkdv_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                         int NH, float softmax_scale, DropoutParams drop) {
    constexpr int BKV = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16, ND = HD / 8, NQ = BQ / 8;
    static_assert(BQ % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* k_s = reinterpret_cast<T*>(smem_raw);                // (BKV, P); each warp later stages its dK in its rows
    T* v_s = k_s + BKV * P;                                 // (BKV, P); ... and its dV
    T* q_s = v_s + BKV * P;                                 // (2, BQ, P)
    T* do_s = q_s + 2 * BQ * P;                             // (2, BQ, P)
    float* lse_s = reinterpret_cast<float*>(do_s + 2 * BQ * P);  // (2, BQ)
    float* d_s = lse_s + 2 * BQ;                            // (2, BQ)

    const int h = blockIdx.y, b = blockIdx.z;
    const int k0 = blockIdx.x * BKV;  // key tile 0 sees every query: heaviest first
    const int first_q_tile = k0 / BQ, num_q_tiles = ceil_div(seq_len, BQ);
    const int64_t row_stride = 3LL * NH * HD, out_stride = static_cast<int64_t>(NH) * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;
    const T* do_g = dout + static_cast<int64_t>(b) * seq_len * out_stride + static_cast<int64_t>(h) * HD;
    const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;

    auto load_query_tile = [&](int q_tile, int stage) {
        const int qs0 = q_tile * BQ, rows = min(BQ, seq_len - qs0);
        load_tile_async<HD, BQ, NTHREADS>(q_s + stage * BQ * P, q_g + qs0 * row_stride, row_stride, rows);
        load_tile_async<HD, BQ, NTHREADS>(do_s + stage * BQ * P, do_g + qs0 * out_stride, out_stride, rows);
        load_floats_async<BQ, NTHREADS>(lse_s + stage * BQ, lse + stat_base + qs0, rows);
        load_floats_async<BQ, NTHREADS>(d_s + stage * BQ, row_dot + stat_base + qs0, rows);
    };
    load_tile_async<HD, BKV, NTHREADS>(k_s, k_g + k0 * row_stride, row_stride, min(BKV, seq_len - k0));
    load_tile_async<HD, BKV, NTHREADS>(v_s, v_g + k0 * row_stride, row_stride, min(BKV, seq_len - k0));
    load_query_tile(first_q_tile, 0);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_k0 = k0 + warp * 16;
    const bool warp_active = warp_k0 < seq_len;
    const int key[2] = {warp_k0 + lane / 4, warp_k0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    // This lane's dropout calls in query tile qs0 (tile_keep, key-row layout, member g = lane / 4):
    // queries qs0 + 16n + 8 (g >> 2) + 2t + (g & 1), key cell warp_k0/8 + ((g >> 1) & 1). Call ids
    // are linear in the query: query q + d has call id + d * ceil(T/8).
    const int g = lane / 4;
    const uint64_t drop_call0 =
        attention_dropout_call(b, h, NH, seq_len, 8 * (g >> 2) + 2 * t + (g & 1), warp_k0 / 8 + ((g >> 1) & 1));
    const uint64_t drop_calls_per_query = ceil_div(seq_len, 8);

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.0f;

    cp_async_wait_all();
    __syncthreads();
    for (int q_tile = first_q_tile; q_tile < num_q_tiles; ++q_tile) {
        const int stage = (q_tile - first_q_tile) & 1;
        if (q_tile > first_q_tile) {
            cp_async_wait_all();
            __syncthreads();
        }
        if (q_tile + 1 < num_q_tiles) {
            load_query_tile(q_tile + 1, stage ^ 1);
            cp_async_commit();
        }
        const int qs0 = q_tile * BQ;
        if (!warp_active || warp_k0 > qs0 + BQ - 1) continue;  // every query of the tile is before every key
        const T* q_tile_s = q_s + stage * BQ * P;
        const T* do_tile_s = do_s + stage * BQ * P;
        const float* lse_t = lse_s + stage * BQ;
        const float* d_t = d_s + stage * BQ;

        float st[NQ][4], dpt[NQ][4];  // S^T = K Q^T and dP^T = V dO^T, 16 keys x BQ queries
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) st[nt][e] = dpt[nt][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
            uint32_t ka[4], va[4];
            load_a<P>(ka, k_s, warp * 16, kd * 16, lane);
            load_a<P>(va, v_s, warp * 16, kd * 16, lane);
#pragma unroll
            for (int np = 0; np < NQ / 2; ++np) {
                uint32_t qb[4], ob[4];
                load_b_nk<P>(qb, q_tile_s, np * 16, kd * 16, lane);
                mma_16x8x16<T>(st[2 * np], ka, qb[0], qb[1]);
                mma_16x8x16<T>(st[2 * np + 1], ka, qb[2], qb[3]);
                load_b_nk<P>(ob, do_tile_s, np * 16, kd * 16, lane);
                mma_16x8x16<T>(dpt[2 * np], va, ob[0], ob[1]);
                mma_16x8x16<T>(dpt[2 * np + 1], va, ob[2], ob[3]);
            }
        }
        // Masked: key after query (causal), or query past the sequence end (partial last tile).
        const bool masked_tile = warp_k0 + 15 > qs0 || qs0 + BQ > seq_len;
        TileKeep<NQ> keep;
        if (drop.enabled())
            keep = tile_keep<NQ, 8, 4>(drop, drop_rate.threshold, g, [&](int n) {
                return drop_call0 + static_cast<uint64_t>(qs0 + 16 * n) * drop_calls_per_query;
            });
        // st := dropped P^T, dpt := dS^T
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = nt * 8 + 2 * t + (e & 1), query = qs0 + col, k = key[e >> 1];
                float p = exp2f(fmaf(st[nt][e], scale_log2, -lse_t[col] * kLog2e));
                if (masked_tile && (k > query || query >= seq_len)) p = 0.0f;
                float dpv = dpt[nt][e], pd = p;
                if (drop.enabled()) {
                    pd = keep(nt, e) ? p * drop_scale : 0.0f;
                    dpv = keep(nt, e) ? dpv * drop_scale : 0.0f;
                }
                st[nt][e] = pd;
                dpt[nt][e] = p * (dpv - d_t[col]);
            }
        // dV += Pd^T dO,  dK += dS^T Q
#pragma unroll
        for (int kc = 0; kc < BQ / 16; ++kc) {
            uint32_t pa[4], da[4];
            c_pair_to_a<T>(pa, st[2 * kc], st[2 * kc + 1]);
            c_pair_to_a<T>(da, dpt[2 * kc], dpt[2 * kc + 1]);
#pragma unroll
            for (int dd = 0; dd < HD / 16; ++dd) {
                uint32_t ob[4], qb[4];
                load_b_kn<P>(ob, do_tile_s, kc * 16, dd * 16, lane);
                mma_16x8x16<T>(dv[2 * dd], pa, ob[0], ob[1]);
                mma_16x8x16<T>(dv[2 * dd + 1], pa, ob[2], ob[3]);
                load_b_kn<P>(qb, q_tile_s, kc * 16, dd * 16, lane);
                mma_16x8x16<T>(dk[2 * dd], da, qb[0], qb[1]);
                mma_16x8x16<T>(dk[2 * dd + 1], da, qb[2], qb[3]);
            }
        }
    }
    if (!warp_active) return;
    T* dk_s = k_s + warp * 16 * P;  // this warp's K and V rows: read only by this warp, now done
    T* dv_s = v_s + warp * 16 * P;
    stage_rows<T, HD>(dk_s, dk, softmax_scale, softmax_scale, lane);
    stage_rows<T, HD>(dv_s, dv, 1.0f, 1.0f, lane);
    T* dk_g = dqkv + static_cast<int64_t>(b) * seq_len * row_stride + warp_k0 * row_stride + static_cast<int64_t>(NH + h) * HD;
    const int rows = min(16, seq_len - warp_k0);
    store_rows<T, HD>(dk_g, row_stride, dk_s, rows, lane);
    store_rows<T, HD>(dk_g + NH * HD, row_stride, dv_s, rows, lane);
}

template <typename T, int HD, int NWARPS, int BK>
void forward(T* out, float* lse, const T* qkv, int B, int T_len, int NH, float softmax_scale, DropoutParams drop,
             cudaStream_t stream) {
    constexpr int BQ = 16 * NWARPS;
    const size_t smem = static_cast<size_t>(BQ + 4 * BK) * smem_pitch<HD>() * sizeof(T);
    allow_dynamic_smem(forward_kernel<T, HD, NWARPS, BK>, smem);
    forward_kernel<T, HD, NWARPS, BK><<<dim3(ceil_div(T_len, BQ), NH, B), NWARPS * 32, smem, stream>>>(
        out, lse, qkv, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

template <typename T, int HD, int NWARPS, int BK>
void backward_dq(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len, int NH,
                 float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    constexpr int BQ = 16 * NWARPS;
    const size_t smem = static_cast<size_t>(2 * BQ + 4 * BK) * smem_pitch<HD>() * sizeof(T);
    allow_dynamic_smem(backward_dq_kernel<T, HD, NWARPS, BK>, smem);
    backward_dq_kernel<T, HD, NWARPS, BK><<<dim3(ceil_div(T_len, BQ), NH, B), NWARPS * 32, smem, stream>>>(
        dqkv, qkv, dout, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

template <typename T, int HD, int NWARPS, int BQ>
void backward_dkdv(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len,
                   int NH, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    constexpr int BKV = 16 * NWARPS;
    const size_t smem =
        static_cast<size_t>(2 * BKV + 4 * BQ) * smem_pitch<HD>() * sizeof(T) + 4 * BQ * sizeof(float);
    allow_dynamic_smem(backward_dkdv_kernel<T, HD, NWARPS, BQ>, smem);
    backward_dkdv_kernel<T, HD, NWARPS, BQ><<<dim3(ceil_div(T_len, BKV), NH, B), NWARPS * 32, smem, stream>>>(
        dqkv, qkv, dout, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

// Production tile shapes per head dim. Warps per block and the streamed tile length of each
// kernel (keys for forward and dQ, queries for dK/dV). Larger head dims use shorter streamed
// tiles in backward to stay within 255 registers (accumulators grow with HD); see the sweep in
// dev/cuda/attention.cu and the notes for the measurements.
template <int HD> struct Config {
    // Forward: 8 warps (128 queries) per block at HD 128, where the H100 tile sweep measured 211
    // against 199 TFLOP/s at (8,16,2048,128) and 235 against 221 at (4,32,4096,128); at HD 64, 4
    // warps (173 against 135 at (32,12,1024,64)).
    static constexpr int kForwardWarps = HD >= 128 ? 8 : 4, kForwardKeys = 64;
    static constexpr int kDqWarps = 4, kDqKeys = HD <= 80 ? 64 : 32;
    // 32 streamed queries for every head dim: the H100 sweep measured 0.61 ms against 0.85 ms
    // with 64 at (32,12,1024,64), and 1.49 against 2.10 ms at (16,16,2048,64).
    static constexpr int kDkdvWarps = 4, kDkdvQueries = 32;
};

}  // namespace tensor_cores

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

// =============================================================================================
// Host launchers (contract of the trainer).

template <typename T>
void attention_forward_using(AttentionKernel kernel, T* out /*(B,T,NH,HD)*/, float* lse /*(B,NH,T)*/,
                             const T* qkv /*(B,T,3,NH,HD)*/, int B, int T_len, int NH, int HD, float softmax_scale,
                             DropoutParams drop /*element ((b*NH+h)*T+q)*T+k*/, cudaStream_t stream) {
    attention_detail::check_attention_arguments("attention_forward", qkv, out, B, T_len, NH, HD, softmax_scale, drop);
    attention_detail::dispatch_head_dim(HD, [&](auto head_dim) {
        constexpr int D = decltype(head_dim)::value;
        using Config = attention_detail::tensor_cores::Config<D>;
        if (kernel == AttentionKernel::TensorCores)
            attention_detail::tensor_cores::forward<T, D, Config::kForwardWarps, Config::kForwardKeys>(
                out, lse, qkv, B, T_len, NH, softmax_scale, drop, stream);
        else
            attention_detail::cuda_cores::forward<T, D>(out, lse, qkv, B, T_len, NH, softmax_scale, drop, stream);
    });
}

template <typename T>
void attention_backward_using(AttentionKernel kernel, T* dqkv /*(B,T,3,NH,HD) overwritten*/,
                              float* scratch /*attention_backward_scratch_floats(B,T,NH,HD)*/,
                              const T* dout /*(B,T,NH,HD)*/, const T* qkv /*(B,T,3,NH,HD)*/,
                              const T* out /*(B,T,NH,HD)*/, const float* lse /*(B,NH,T)*/, int B, int T_len, int NH,
                              int HD, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    attention_detail::check_attention_arguments("attention_backward", qkv, out, B, T_len, NH, HD, softmax_scale, drop);
    REQUIRE(is_aligned16(dqkv) && is_aligned16(dout), "attention_backward: dqkv and dout must be 16-byte aligned");
    REQUIRE(scratch != nullptr, "attention_backward: scratch of attention_backward_scratch_floats() floats is required");
    float* row_dot = scratch;  // (B, NH, T): D = rowsum(dO * O)
    attention_detail::attention_backward_row_dot<T>(row_dot, dout, out, B, T_len, NH, HD, stream);
    attention_detail::dispatch_head_dim(HD, [&](auto head_dim) {
        constexpr int D = decltype(head_dim)::value;
        namespace tc = attention_detail::tensor_cores;
        using Config = tc::Config<D>;
        if (kernel == AttentionKernel::TensorCores) {
            tc::backward_dkdv<T, D, Config::kDkdvWarps, Config::kDkdvQueries>(dqkv, row_dot, dout, qkv, lse, B, T_len,
                                                                              NH, softmax_scale, drop, stream);
            tc::backward_dq<T, D, Config::kDqWarps, Config::kDqKeys>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH,
                                                                     softmax_scale, drop, stream);
        } else {
            attention_detail::cuda_cores::backward<T, D>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH, softmax_scale,
                                                         drop, stream);
        }
    });
}

template <typename T>
void attention_forward(T* out /*(B,T,NH,HD)*/, float* lse /*(B,NH,T)*/, const T* qkv /*(B,T,3,NH,HD)*/, int B,
                       int T_len, int NH, int HD, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    attention_forward_using(kDefaultAttentionKernel, out, lse, qkv, B, T_len, NH, HD, softmax_scale, drop, stream);
}

template <typename T>
void attention_backward(T* dqkv /*(B,T,3,NH,HD) overwritten*/, float* scratch, const T* dout /*(B,T,NH,HD)*/,
                        const T* qkv, const T* out, const float* lse /*(B,NH,T)*/, int B, int T_len, int NH, int HD,
                        float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    attention_backward_using(kDefaultAttentionKernel, dqkv, scratch, dout, qkv, out, lse, B, T_len, NH, HD,
                             softmax_scale, drop, stream);
}
