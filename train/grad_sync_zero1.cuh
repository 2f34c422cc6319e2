// ZeRO-1: the master weights and AdamW state are sharded over the ranks; every rank accumulates
// the whole gradient locally, and one reduce-scatter after backward leaves each rank the sum of its
// shard. It stays one collective after backward: a rank's shard is one contiguous range of the
// flat arena, which cuts across the per-layer buckets that could be sent during backward.
#pragma once

#include "train/grad_sync.cuh"

template <typename T> class ReduceScatterGradients final : public ShardedOptimizerSync<T> {
  public:
    ReduceScatterGradients(DistributedContext& dist, const ParamLayout& layout, const OptimizerShard& shard,
                           StepTimeline& timeline)
        : ShardedOptimizerSync<T>(dist, shard, timeline), arena_(layout, shard.padded_total) {}

    static size_t bytes(const OptimizerShard& shard) { return GradientArena::bytes(shard.padded_total); }
    int zero_stage() const override { return 1; }

    const LayerParams<float>& layer_gradients(int layer) const override { return arena_.views().layers[layer]; }
    const NonLayerParams<float>& non_layer_gradients() const override { return arena_.views().non_layer; }
    float* shard_gradients() override { return arena_.data() + this->shard_.begin; }
    float* idle_between_steps() override { return arena_.lend(); }

    void finish_step(cudaStream_t stream) override {
        DistributedContext& dist = this->dist_;
        if (!dist.is_distributed()) return;
        dist.comm_waits_for(stream);
        dist.reduce_scatter(arena_.data(), shard_gradients(), this->shard_.owned(), ReduceOp::Sum,
                            "gradient reduce-scatter");
        dist.compute_waits_for_comm(stream);
    }

  private:
    void prepare_step(cudaStream_t stream) override { arena_.prepare_step(stream); }
    bool stores_first_micro_step() const override { return true; }
    void written_outside_backward() override { arena_.written_outside_backward(); }

    GradientArena arena_;
};
