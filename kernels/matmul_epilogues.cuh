// Our own kernels around the GEMMs: bias add, GELU and its derivative (the unfused paths that
// kernels/matmul.cuh can choose instead of cuBLASLt's epilogues, and the GELU recompute of the
// backward pass), and the deterministic column sums that give bias gradients.
#pragma once

#include "kernels/common.cuh"

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation (GPT-2's): gelu(x) = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

__device__ inline float gelu_tanh(float x) {
    const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
__device__ inline float gelu_tanh_derivative(float x) {
    const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
    const float t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
}

// ---------------------------------------------------------------------------------------------
// Kernels of the unfused paths. Element-wise ones take one 16-byte vector per thread; row
// lengths are multiples of 8, so a vector never straddles two rows.

constexpr int kElementwiseThreads = 256;

// out (M,N) += bias (N), in place.
template <typename T> __global__ void add_bias_kernel(T* out, const T* bias, long long vectors, int N) {
    const long long v = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (v >= vectors) return;
    const long long offset = v * Vec16<T>::size;
    const int column = static_cast<int>(offset % N);
    Vec16<T> x = load16(out + offset);
    const Vec16<T> b = load16(bias + column);
    for (int e = 0; e < Vec16<T>::size; ++e) x.set(e, x.get(e) + b.get(e));
    store16(out + offset, x);
}
template <typename T> void add_bias(T* out /*(M,N)*/, const T* bias /*(N)*/, int M, int N, cudaStream_t stream) {
    REQUIRE(N % 8 == 0, "add_bias: N=%d must be a multiple of 8", N);
    const long long vectors = static_cast<long long>(M) * N / Vec16<T>::size;
    add_bias_kernel<<<ceil_div(vectors, static_cast<long long>(kElementwiseThreads)), kElementwiseThreads, 0, stream>>>(
        out, bias, vectors, N);
    CUDA_CHECK_LAUNCH();
}

// out = gelu(pre_gelu), element-wise over `count` elements.
template <typename T> __global__ void gelu_forward_kernel(T* out, const T* pre_gelu, long long vectors) {
    const long long v = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (v >= vectors) return;
    const Vec16<T> x = load16(pre_gelu + v * Vec16<T>::size);
    Vec16<T> y;
    for (int e = 0; e < Vec16<T>::size; ++e) y.set(e, gelu_tanh(x.get(e)));
    store16(out + v * Vec16<T>::size, y);
}
template <typename T> void gelu_forward(T* out, const T* pre_gelu, long long count, cudaStream_t stream) {
    REQUIRE(count % 8 == 0, "gelu_forward: element count %lld must be a multiple of 8", count);
    const long long vectors = count / Vec16<T>::size;
    gelu_forward_kernel<<<ceil_div(vectors, static_cast<long long>(kElementwiseThreads)), kElementwiseThreads, 0,
                          stream>>>(out, pre_gelu, vectors);
    CUDA_CHECK_LAUNCH();
}

// dinp *= gelu'(pre_gelu), in place.
template <typename T> __global__ void gelu_backward_inplace_kernel(T* dinp, const T* pre_gelu, long long vectors) {
    const long long v = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (v >= vectors) return;
    Vec16<T> d = load16(dinp + v * Vec16<T>::size);
    const Vec16<T> x = load16(pre_gelu + v * Vec16<T>::size);
    for (int e = 0; e < Vec16<T>::size; ++e) d.set(e, d.get(e) * gelu_tanh_derivative(x.get(e)));
    store16(dinp + v * Vec16<T>::size, d);
}
template <typename T> void gelu_backward_inplace(T* dinp, const T* pre_gelu, long long count, cudaStream_t stream) {
    REQUIRE(count % 8 == 0, "gelu_backward_inplace: element count %lld must be a multiple of 8", count);
    const long long vectors = count / Vec16<T>::size;
    gelu_backward_inplace_kernel<<<ceil_div(vectors, static_cast<long long>(kElementwiseThreads)),
                                   kElementwiseThreads, 0, stream>>>(dinp, pre_gelu, vectors);
    CUDA_CHECK_LAUNCH();
}

// Deterministic column sums, dbias (N) += sum over rows of x (M,N), in two fixed stages:
//   1. block (tile, chunk) sums a chunk of rows for 256 columns: each of its 8 warps takes every
//      8th row (a warp reads one 512-byte row segment per step), then the 8 warp partials are
//      added in warp order and written to partial (chunks, N);
//   2. one thread per column adds the chunk partials in chunk order and adds the total to dbias
//      (or stores it: GradWrite).
// The chunking depends only on (M, N), so the result does not depend on the GPU.
constexpr int kColumnSumWarps = 8;
constexpr int kColumnSumTileColumns = 32 * 8;  // a warp's 32 lanes x one 16-byte vector of 8
constexpr int kColumnSumMaxBlocks = 1024;      // enough blocks to saturate HBM on any current GPU
constexpr int kColumnSumMaxColumns = kColumnSumMaxBlocks * kColumnSumTileColumns;
// Partials never exceed chunks * N <= (kColumnSumMaxBlocks / tiles) * tiles * 256 floats.
constexpr size_t kColumnSumScratchFloats = static_cast<size_t>(kColumnSumMaxBlocks) * kColumnSumTileColumns;
static_assert(kColumnSumWarps * 32 == kColumnSumTileColumns, "stage 1 gives each thread one column of its tile");

template <typename T>
__global__ void __launch_bounds__(kColumnSumWarps * 32)
    column_sum_partial_kernel(float* partial /*(chunks, N)*/, const T* x /*(M,N)*/, int M, int N, int rows_per_chunk) {
    __shared__ float warp_partials[kColumnSumWarps][kColumnSumTileColumns];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tile_start = blockIdx.x * kColumnSumTileColumns;
    const int column = tile_start + lane * Vec16<T>::size;
    const int row_begin = blockIdx.y * rows_per_chunk;
    const int row_end = min(M, row_begin + rows_per_chunk);
    float sums[Vec16<T>::size] = {};
    if (column < N) {
#pragma unroll 4
        for (int row = row_begin + warp; row < row_end; row += kColumnSumWarps) {
            const Vec16<T> v = load16(x + static_cast<size_t>(row) * N + column);
            for (int e = 0; e < Vec16<T>::size; ++e) sums[e] += v.get(e);
        }
    }
    for (int e = 0; e < Vec16<T>::size; ++e) warp_partials[warp][lane * Vec16<T>::size + e] = sums[e];
    __syncthreads();
    const int my_column = tile_start + threadIdx.x;  // kColumnSumWarps * 32 == kColumnSumTileColumns
    if (my_column < N) {
        float total = 0.0f;
        for (int w = 0; w < kColumnSumWarps; ++w) total += warp_partials[w][threadIdx.x];
        partial[static_cast<size_t>(blockIdx.y) * N + my_column] = total;
    }
}

// dbias (N) += (or =, GradWrite) the sum over the `chunks` rows of partial (chunks, N), in chunk order.
__global__ void column_sum_finish_kernel(float* dbias, const float* partial, int chunks, int N, GradWrite write) {
    const int column = blockIdx.x * blockDim.x + threadIdx.x;
    if (column >= N) return;
    float total = 0.0f;
    for (int k = 0; k < chunks; ++k) total += partial[static_cast<size_t>(k) * N + column];
    write_gradient(dbias + column, total, write);
}
inline void column_sum_finish(float* dbias, const float* partial, int chunks, int N, GradWrite write,
                              cudaStream_t stream) {
    column_sum_finish_kernel<<<ceil_div(N, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(dbias, partial,
                                                                                                   chunks, N, write);
    CUDA_CHECK_LAUNCH();
}

// dbias (N) += (or =, GradWrite) the column sums of x: a bias gradient.
template <typename T>
void column_sum_accumulate(float* dbias /*(N)*/, const T* x /*(M,N)*/, int M, int N, GradWrite write,
                           float* scratch /*kColumnSumScratchFloats*/, cudaStream_t stream) {
    REQUIRE(N % 8 == 0 && N <= kColumnSumMaxColumns, "column_sum_accumulate: N=%d must be a multiple of 8, at most %d",
            N, kColumnSumMaxColumns);
    const int tiles = ceil_div(N, kColumnSumTileColumns);
    int chunks = std::max(1, std::min(ceil_div(M, 32), kColumnSumMaxBlocks / tiles));
    const int rows_per_chunk = ceil_div(M, chunks);
    chunks = ceil_div(M, rows_per_chunk);  // no empty trailing chunk
    column_sum_partial_kernel<T><<<dim3(tiles, chunks), kColumnSumWarps * 32, 0, stream>>>(scratch, x, M, N,
                                                                                           rows_per_chunk);
    CUDA_CHECK_LAUNCH();
    column_sum_finish(dbias, scratch, chunks, N, write, stream);
}
