// The largest value of each row and where it is: greedy generation's next tokens, found on the
// GPU so that B integers cross to the host instead of B rows of logits (a row of GPT-2's
// vocabulary is 100 KB in 16 bits; the copy and a host scan of it cost more than a decode step
// of a small model at a batch of prompts).
//
// The index is host/sampling.cpp's argmax exactly: the lowest index among equal values, NaN
// never chosen (a row of NaN alone gives -1). One block per row: each thread scans a strided
// part in ascending order (so a later equal value never displaces an earlier one), then the
// block reduces the (value, index) pairs with the same order.
#pragma once

#include <cmath>

#include "kernels/common.cuh"

namespace row_argmax_detail {

constexpr int kThreads = 512;

struct Best {
    float value;
    int index;  // -1: nothing yet
};

// Whether a ranks before b: any value before none, the larger value, then the lower index.
__device__ inline bool ranks_before(const Best& a, const Best& b) {
    return a.index >= 0 && (b.index < 0 || a.value > b.value || (a.value == b.value && a.index < b.index));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_argmax_kernel(int* indices, float* values, const T* x, int cols, int row_stride) {
    const T* row = x + static_cast<size_t>(blockIdx.x) * row_stride;
    Best best{-INFINITY, -1};
    for (int c = threadIdx.x; c < cols; c += kThreads) {
        const float v = to_float(row[c]);
        if (!isnan(v) && (best.index < 0 || v > best.value)) best = {v, c};
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const Best other{__shfl_xor_sync(0xffffffffu, best.value, offset), __shfl_xor_sync(0xffffffffu, best.index, offset)};
        if (ranks_before(other, best)) best = other;
    }
    __shared__ Best warp_best[kThreads / 32];
    if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kThreads / 32; ++w)
            if (ranks_before(warp_best[w], best)) best = warp_best[w];
        indices[blockIdx.x] = best.index;
        values[blockIdx.x] = best.value;
    }
}

}  // namespace row_argmax_detail

// indices (rows), values (rows): per row of x (rows, row_stride), the index and value of the
// largest of its first `cols` entries (see above for ties and NaN).
template <typename T>
void row_argmax(int* indices, float* values, const T* x, int rows, int cols, int row_stride, cudaStream_t stream) {
    REQUIRE(rows >= 1 && cols >= 1 && cols <= row_stride,
            "row_argmax: %d rows of %d values (stride %d)", rows, cols, row_stride);
    row_argmax_detail::row_argmax_kernel<T><<<rows, row_argmax_detail::kThreads, 0, stream>>>(indices, values, x, cols,
                                                                                               row_stride);
    CUDA_CHECK_LAUNCH();
}
