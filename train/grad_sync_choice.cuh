// The one place that reads the ZeRO stage: which gradient synchronisation a run uses, the
// optimizer shard it gives this rank, and the device memory its gradients take.
#pragma once

#include <memory>

#include "host/config.h"
#include "host/rank_shard.h"
#include "train/grad_sync_all_reduce.cuh"
#include "train/grad_sync_zero1.cuh"
#include "train/grad_sync_zero2.cuh"

// ZeRO-0: all of [0, num_params); ZeRO-1 and 2: this rank's equal share of the padded arrays.
inline OptimizerShard optimizer_shard_for(const TrainConfig& config, const DistributedContext& dist) {
    const int64_t n = config.num_params;
    if (config.zero_stage == 0) return {0, n, (int64_t)distributed::shard_of(n, 0, 1).padded_count};
    const distributed::Shard shard = distributed::shard_of(n, dist.rank, dist.world_size);
    return {(int64_t)shard.begin, (int64_t)shard.end, (int64_t)shard.padded_count};
}

template <typename T>
size_t gradient_bytes(const TrainConfig& config, const ParamLayout& layout, const OptimizerShard& shard) {
    switch (config.zero_stage) {
        case 0: return AllReduceGradients<T>::bytes(shard);
        case 1: return ReduceScatterGradients<T>::bytes(shard);
        default: return ShardedGradients<T>::bytes(layout, shard);
    }
}

template <typename T>
std::unique_ptr<GradientSync<T>> make_gradient_sync(const TrainConfig& config, DistributedContext& dist,
                                                    const ParamLayout& layout, const OptimizerShard& shard,
                                                    StepTimeline& timeline) {
    switch (config.zero_stage) {
        case 0:
            return std::make_unique<AllReduceGradients<T>>(dist, layout, shard, config.overlap_grad_reduce, timeline);
        case 1: return std::make_unique<ReduceScatterGradients<T>>(dist, layout, shard, timeline);
        default: return std::make_unique<ShardedGradients<T>>(dist, layout, shard, timeline);
    }
}
