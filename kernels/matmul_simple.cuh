// A plain GEMM of our own on CUDA cores, for MatmulEngine::simple (kernels/matmul.cuh): with it a
// training step runs no cuBLASLt kernel, so compute-sanitizer's racecheck and initcheck can check a
// whole step (they cannot check cuBLASLt's kernels: racecheck stops inside its first GEMM, and
// initcheck flags reads that cuBLASLt's kernels make; README, Results). Slow by design (one 16 x 16
// tile per block, fp32 accumulation, no tensor cores); correctness is all it is for, and
// dev/cuda/matmul checks it against the CPU reference.
#pragma once

#include "kernels/common.cuh"

constexpr int kSimpleGemmTile = 16;

// d (rows, cols), row-major, = sum over k of A(r, k) * B(c, k), or d += that (accumulate), where
// A(r, k) = a[r * a_row_stride + k * a_depth_stride] and B(c, k) = b[c * b_col_stride + k * b_depth_stride]:
// the strides pose every transpose the linear layers need without copies.
template <typename In, typename Out>
__global__ void __launch_bounds__(kSimpleGemmTile* kSimpleGemmTile)
    simple_gemm_kernel(Out* d, const In* a, const In* b, int rows, int cols, int depth, long long a_row_stride,
                       long long a_depth_stride, long long b_col_stride, long long b_depth_stride, bool accumulate) {
    __shared__ float a_tile[kSimpleGemmTile][kSimpleGemmTile + 1];  // [row][k]; +1: no bank conflicts
    __shared__ float b_tile[kSimpleGemmTile][kSimpleGemmTile + 1];  // [col][k]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row0 = blockIdx.y * kSimpleGemmTile, col0 = blockIdx.x * kSimpleGemmTile;
    float sum = 0.0f;
    for (int k0 = 0; k0 < depth; k0 += kSimpleGemmTile) {
        // Thread (tx, ty) loads element k0 + tx of tile row ty of each operand; zeros past the edges.
        const int k = k0 + tx, a_row = row0 + ty, b_col = col0 + ty;
        a_tile[ty][tx] = a_row < rows && k < depth ? to_float(a[a_row * a_row_stride + k * a_depth_stride]) : 0.0f;
        b_tile[ty][tx] = b_col < cols && k < depth ? to_float(b[b_col * b_col_stride + k * b_depth_stride]) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kSimpleGemmTile; ++kk) sum += a_tile[ty][kk] * b_tile[tx][kk];
        __syncthreads();  // before the next tile overwrites what others still read
    }
    const int row = row0 + ty, col = col0 + tx;
    if (row >= rows || col >= cols) return;
    Out* out = d + static_cast<long long>(row) * cols + col;
    *out = from_float<Out>(accumulate ? to_float(*out) + sum : sum);
}

template <typename In, typename Out>
void simple_gemm(Out* d, const In* a, const In* b, int rows, int cols, int depth, long long a_row_stride,
                 long long a_depth_stride, long long b_col_stride, long long b_depth_stride, bool accumulate,
                 cudaStream_t stream) {
    REQUIRE(rows > 0 && cols > 0 && depth > 0, "simple_gemm: rows=%d, cols=%d, depth=%d must be positive", rows, cols,
            depth);
    REQUIRE(ceil_div(rows, kSimpleGemmTile) <= 65535, "simple_gemm: rows=%d is more than its grid's 65535 tiles",
            rows);
    const dim3 grid(ceil_div(cols, kSimpleGemmTile), ceil_div(rows, kSimpleGemmTile));
    simple_gemm_kernel<In, Out><<<grid, dim3(kSimpleGemmTile, kSimpleGemmTile), 0, stream>>>(
        d, a, b, rows, cols, depth, a_row_stride, a_depth_stride, b_col_stride, b_depth_stride, accumulate);
    CUDA_CHECK_LAUNCH();
}
