// Attention on CUDA cores in fp32 (AttentionKernel::CudaCores): the trusted fallback and the
// dev/cuda workbench's variant 1. Several times slower than the tensor-core families; simple
// enough to check by reading. Same function, layouts and dropout mask as kernels/attention.cuh
// describes.
//
// 32 x 32 tiles in fp32 shared memory, 128 threads. Thread t owns tile row r = t / 4 and,
// within it, the columns c = t % 4 + 4 i (scores) and head dims d = t % 4 + 4 i (accumulators),
// so the 4 lanes of a row sit in one quad and reduce with two shuffles. Rows are padded to
// HD + 1 floats so that the 8 rows read at once fall in distinct banks.
#pragma once

#include "kernels/attention_common.cuh"

namespace attention_detail {
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
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
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
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
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
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
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
}  // namespace attention_detail
