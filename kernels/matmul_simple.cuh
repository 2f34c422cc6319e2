// A plain GEMM of our own on CUDA cores, for MatmulEngine::simple (kernels/matmul.cuh): with it a
// training step runs no cuBLASLt kernel, so compute-sanitizer's racecheck and initcheck can check a
// whole step (they cannot check cuBLASLt's kernels: racecheck stops inside its first GEMM, and
// initcheck flags reads that cuBLASLt's kernels make; README, Results). Slow by design (fp32
// accumulation, no tensor cores); correctness is all it is for, and dev/cuda/matmul checks it
// against the CPU reference. It uses no shared memory: every thread reads its operands from global
// memory (the caches serve the reuse), so racecheck, which follows shared-memory accesses, has
// nothing to track in it; with shared-memory tiles the whole-model racecheck did not end in 390 s.
#pragma once

#include "kernels/common.cuh"

constexpr int kSimpleGemmThreadsPerSide = 16;  // a block is 16 x 16 threads
constexpr int kSimpleGemmOutputsPerSide = 4;   // each computing 4 x 4 outputs,
constexpr int kSimpleGemmTile = kSimpleGemmThreadsPerSide * kSimpleGemmOutputsPerSide;  // a 64 x 64 tile

// d (rows, cols), row-major, = sum over k of A(r, k) * B(c, k), or d += that (accumulate), where
// A(r, k) = a[r * a_row_stride + k * a_depth_stride] and B(c, k) = b[c * b_col_stride + k * b_depth_stride]:
// the strides pose every transpose the linear layers need without copies. Thread (x, y) of a block
// owns rows row0 + y + 16 i and columns col0 + x + 16 j (i, j < 4) of the block's tile, and sums
// over k in order.
template <typename In, typename Out>
__global__ void __launch_bounds__(kSimpleGemmThreadsPerSide* kSimpleGemmThreadsPerSide)
    simple_gemm_kernel(Out* d, const In* a, const In* b, int rows, int cols, int depth, long long a_row_stride,
                       long long a_depth_stride, long long b_col_stride, long long b_depth_stride, bool accumulate) {
    constexpr int n = kSimpleGemmOutputsPerSide, step = kSimpleGemmThreadsPerSide;
    const int row0 = blockIdx.y * kSimpleGemmTile + threadIdx.y, col0 = blockIdx.x * kSimpleGemmTile + threadIdx.x;
    float sum[n][n] = {};
    for (int k = 0; k < depth; ++k) {
        float a_k[n], b_k[n];  // zeros past the edges
#pragma unroll
        for (int i = 0; i < n; ++i) {
            const int row = row0 + i * step, col = col0 + i * step;
            a_k[i] = row < rows ? to_float(a[row * a_row_stride + k * a_depth_stride]) : 0.0f;
            b_k[i] = col < cols ? to_float(b[col * b_col_stride + k * b_depth_stride]) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < n; ++i)
#pragma unroll
            for (int j = 0; j < n; ++j) sum[i][j] += a_k[i] * b_k[j];
    }
#pragma unroll
    for (int i = 0; i < n; ++i) {
#pragma unroll
        for (int j = 0; j < n; ++j) {
            const int row = row0 + i * step, col = col0 + j * step;
            if (row >= rows || col >= cols) continue;
            Out* out = d + static_cast<long long>(row) * cols + col;
            *out = from_float<Out>(accumulate ? to_float(*out) + sum[i][j] : sum[i][j]);
        }
    }
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
    const dim3 block(kSimpleGemmThreadsPerSide, kSimpleGemmThreadsPerSide);
    simple_gemm_kernel<In, Out><<<grid, block, 0, stream>>>(
        d, a, b, rows, cols, depth, a_row_stride, a_depth_stride, b_col_stride, b_depth_stride, accumulate);
    CUDA_CHECK_LAUNCH();
}
