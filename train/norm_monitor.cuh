// The seed's norm monitor (--norm-monitor-every N): on every N-th step, before the update, the
// largest and mean absolute value of every parameter tensor (per layer) and of its gradient, and
// the global L1 and L2 norms, into log.jsonl and TensorBoard. As in the seed the gradients are
// those the optimizer step sees before clipping, unscaled (fp16's loss scale divided out), and
// the weights those before the update. Each rank measures the shard of the master weights and
// gradients it owns; under ZeRO-1/2 the sums and maxima meet in an all-reduce.
#pragma once

#include <algorithm>
#include <vector>

#include "host/param_norms.h"
#include "kernels/param_stats.cuh"
#include "model/parameters.cuh"
#include "train/nccl_context.cuh"

class NormMonitor {
  public:
    // `sharded`: each rank owns only `shard` of the weights and gradients (ZeRO-1, ZeRO-2).
    NormMonitor(const ParamLayout& layout, const OptimizerShard& shard, bool sharded)
        : segments_(param_segments(layout)), sharded_(sharded) {
        std::vector<StatsSegment> local;
        for (const ParamSegment& segment : segments_) {  // the part of each segment in this rank's shard
            const int64_t begin = std::max(segment.offset, shard.begin);
            const int64_t end = std::min(segment.offset + segment.count, shard.end);
            local.push_back(begin < end ? StatsSegment{begin - shard.begin, end - begin} : StatsSegment{0, 0});
        }
        const size_t slots = slot_count();
        CUDA_CHECK(cudaMalloc(&device_segments_, local.size() * sizeof(StatsSegment)));
        CUDA_CHECK(cudaMemcpy(device_segments_, local.data(), local.size() * sizeof(StatsSegment), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMalloc(&partials_, 2 * slots * (2 * sizeof(double) + sizeof(float))));
        CUDA_CHECK(cudaMalloc(&reduced_, 3 * segments_.size() * sizeof(float)));
    }
    ~NormMonitor() {
        cudaFree(device_segments_);
        cudaFree(partials_);
        cudaFree(reduced_);
    }
    NormMonitor(const NormMonitor&) = delete;
    NormMonitor& operator=(const NormMonitor&) = delete;

    // master: this rank's shard of the fp32 weights; grads: its shard of the summed gradients,
    // still multiplied by `loss_scale`. Every rank calls it.
    NormReport measure(int64_t step, const float* master, const float* grads, double loss_scale,
                       distributed::DistributedContext& dist, cudaStream_t stream) {
        std::vector<SegmentSums> weights = sums_of(master, 0, dist, stream);
        std::vector<SegmentSums> gradients = sums_of(grads, 1, dist, stream);
        for (SegmentSums& g : gradients) {
            g.abs_sum /= loss_scale;
            g.square_sum /= loss_scale * loss_scale;
            g.abs_max /= loss_scale;
        }
        return make_norm_report(step, segments_, weights, gradients);
    }

  private:
    size_t slot_count() const { return segments_.size() * kStatsBlocksPerSegment; }

    // The partials of array `which` (0 weights, 1 gradients) in the one allocation.
    SegmentStatsPartials partials(int which) const {
        const size_t slots = slot_count();
        char* base = reinterpret_cast<char*>(partials_) + which * slots * (2 * sizeof(double) + sizeof(float));
        double* abs_sums = reinterpret_cast<double*>(base);
        return {abs_sums, abs_sums + slots, reinterpret_cast<float*>(abs_sums + 2 * slots)};
    }

    std::vector<SegmentSums> sums_of(const float* data, int which, distributed::DistributedContext& dist,
                                     cudaStream_t stream) {
        const SegmentStatsPartials device = partials(which);
        segment_stats(device, data, device_segments_, (int)segments_.size(), stream);
        const size_t slots = slot_count();
        std::vector<double> abs_sums(slots), square_sums(slots);
        std::vector<float> abs_maxes(slots);
        CUDA_CHECK(cudaMemcpyAsync(abs_sums.data(), device.abs_sums, slots * sizeof(double), cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaMemcpyAsync(square_sums.data(), device.square_sums, slots * sizeof(double), cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaMemcpyAsync(abs_maxes.data(), device.abs_maxes, slots * sizeof(float), cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        const size_t S = segments_.size();
        std::vector<SegmentSums> sums(S);
        for (size_t s = 0; s < S; ++s)
            for (int b = 0; b < kStatsBlocksPerSegment; ++b) {  // in index order: deterministic
                const size_t slot = s * kStatsBlocksPerSegment + b;
                sums[s].abs_sum += abs_sums[slot];
                sums[s].square_sum += square_sums[slot];
                sums[s].abs_max = std::max<double>(sums[s].abs_max, abs_maxes[slot]);
            }
        if (sharded_ && dist.is_distributed()) sum_over_ranks(sums, dist);
        return sums;
    }

    // Sums added and maxima taken over the ranks' shards (in fp32: enough for a monitor).
    void sum_over_ranks(std::vector<SegmentSums>& sums, distributed::DistributedContext& dist) {
        const size_t S = sums.size();
        std::vector<float> values(3 * S);
        for (size_t s = 0; s < S; ++s) {
            values[s] = (float)sums[s].abs_sum;
            values[S + s] = (float)sums[s].square_sum;
            values[2 * S + s] = (float)sums[s].abs_max;
        }
        CUDA_CHECK(cudaMemcpyAsync(reduced_, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice,
                                   dist.comm_stream));
        dist.all_reduce(reduced_, 2 * S, distributed::ReduceOp::Sum, "norm monitor sums");
        dist.all_reduce(reduced_ + 2 * S, S, distributed::ReduceOp::Max, "norm monitor maxima");
        CUDA_CHECK(cudaMemcpyAsync(values.data(), reduced_, values.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                   dist.comm_stream));
        dist.synchronize();
        for (size_t s = 0; s < S; ++s) sums[s] = {values[s], values[S + s], values[2 * S + s]};
    }

    std::vector<ParamSegment> segments_;
    bool sharded_;
    StatsSegment* device_segments_ = nullptr;
    void* partials_ = nullptr;  // weights' then gradients' SegmentStatsPartials
    float* reduced_ = nullptr;  // (3 * segments) for the all-reduce
};
