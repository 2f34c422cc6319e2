// Per-segment statistics of an fp32 array for the norm monitor (train/norm_monitor.cuh): the sum
// of |x|, the sum of x^2 and the largest |x| of each segment (a tensor, or one layer of one).
// One launch covers every segment: blockIdx.y is the segment, kStatsBlocksPerSegment blocks
// grid-stride over it accumulating in fp64 and reduce in global_norm_squared's fixed tree
// (kernels/adamw.cuh), so the result does not depend on the GPU; the caller adds the blocks'
// partials in index order. A NaN makes the sums NaN; the maximum skips it (fmaxf).
#pragma once

#include "kernels/adamw.cuh"
#include "kernels/common.cuh"

constexpr int kStatsBlocksPerSegment = 16;

struct StatsSegment {
    int64_t offset;  // into the array
    int64_t count;
};

// The partials of one launch, kStatsBlocksPerSegment per segment, segment-major.
struct SegmentStatsPartials {
    double* abs_sums;
    double* square_sums;
    float* abs_maxes;
};

__device__ inline float block_max_fixed_order(float x) {
    __shared__ float warp_maxes[kNormThreads / 32];
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_down_sync(0xffffffffu, x, offset));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_maxes[warp] = x;
    __syncthreads();
    x = 0.0f;
    if (warp == 0) {
        x = lane < kNormThreads / 32 ? warp_maxes[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_down_sync(0xffffffffu, x, offset));
    }
    return x;  // valid in thread 0
}

__global__ void __launch_bounds__(kNormThreads)
    segment_stats_kernel(SegmentStatsPartials out, const float* data, const StatsSegment* segments) {
    const StatsSegment segment = segments[blockIdx.y];
    const float* x = data + segment.offset;
    double abs_sum = 0.0, square_sum = 0.0;
    float abs_max = 0.0f;
    const int64_t stride = (int64_t)kStatsBlocksPerSegment * kNormThreads;
    for (int64_t i = (int64_t)blockIdx.x * kNormThreads + threadIdx.x; i < segment.count; i += stride) {
        const float value = x[i];
        abs_sum += fabs((double)value);
        square_sum += (double)value * value;
        abs_max = fmaxf(abs_max, fabsf(value));
    }
    // Each reduction reuses its shared array: the barriers keep one from overwriting the last.
    abs_sum = block_sum_fixed_order(abs_sum);
    __syncthreads();
    square_sum = block_sum_fixed_order(square_sum);
    __syncthreads();
    abs_max = block_max_fixed_order(abs_max);
    if (threadIdx.x == 0) {
        const int slot = blockIdx.y * kStatsBlocksPerSegment + blockIdx.x;
        out.abs_sums[slot] = abs_sum;
        out.square_sums[slot] = square_sum;
        out.abs_maxes[slot] = abs_max;
    }
}

// segments (device, num_segments) into `data`; out: kStatsBlocksPerSegment * num_segments each.
inline void segment_stats(SegmentStatsPartials out, const float* data, const StatsSegment* segments, int num_segments,
                          cudaStream_t stream) {
    REQUIRE(num_segments >= 1 && num_segments <= 65535, "segment_stats: %d segments (1 to 65535)", num_segments);
    segment_stats_kernel<<<dim3(kStatsBlocksPerSegment, num_segments), kNormThreads, 0, stream>>>(out, data, segments);
    CUDA_CHECK_LAUNCH();
}
