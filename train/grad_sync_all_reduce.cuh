// ZeRO-0: every rank keeps every gradient and the whole optimizer state; the gradients are summed
// over ranks with all-reduce. With overlap (the default on several GPUs), the last micro-step's
// backward hands each finished layer to the comm stream, so its all-reduce runs while the layers
// below are computed; the earlier micro-steps only accumulate locally, so each layer is sent once
// per step. Without overlap, one all-reduce of the whole arena follows backward.
#pragma once

#include <vector>

#include "host/format.h"
#include "train/grad_sync.cuh"

template <typename T> class AllReduceGradients final : public GradientSync<T> {
    using Base = GradientSync<T>;

  public:
    AllReduceGradients(DistributedContext& dist, const ParamLayout& layout, const OptimizerShard& shard,
                       bool overlap, StepTimeline& timeline)
        : Base(dist, shard, timeline), arena_(layout, shard.padded_total),
          overlap_(overlap && dist.is_distributed()) {
        if (!overlap_) return;
        // One bucket per layer (its slice of each per-layer tensor) and one for wte, wpe and lnf,
        // which are final only after the embedding backward.
        for (int layer = 0; layer < layout.n_layer(); ++layer)
            layer_buckets_.push_back({Base::slices_of(layout.layer_ranges(layer), arena_.data(), false),
                                      string_format("gradient all-reduce, layer %d", layer)});
        non_layer_bucket_ = {Base::slices_of(layout.non_layer_ranges(), arena_.data(), false),
                             "gradient all-reduce, embeddings and final LayerNorm"};
    }

    static size_t bytes(const OptimizerShard& shard) { return GradientArena::bytes(shard.padded_total); }
    int zero_stage() const override { return 0; }

    const LayerParams<float>& layer_gradients(int layer) const override { return arena_.views().layers[layer]; }
    const NonLayerParams<float>& non_layer_gradients() const override { return arena_.views().non_layer; }
    float* shard_gradients() override { return arena_.data(); }
    float* idle_between_steps() override { return arena_.lend(); }

    bool backward_communicates(bool last_of_step) const override { return overlap_ && last_of_step; }
    void begin_micro_step(bool last_of_step) override { sending_layers_ = backward_communicates(last_of_step); }
    void layer_ready(int layer, cudaStream_t stream) override {
        if (!sending_layers_) return;
        this->timeline_.mark(TimelineMark::LayerHandoff, stream, layer);
        this->all_reduce(layer_buckets_[layer], stream);
        this->timeline_.mark(TimelineMark::LayerReduced, this->dist_.comm_stream, layer);
    }
    void finish_step(cudaStream_t stream) override {
        DistributedContext& dist = this->dist_;
        if (!dist.is_distributed()) return;
        if (overlap_) {
            this->all_reduce(non_layer_bucket_, stream);  // the layers' buckets are in flight already
        } else {
            dist.comm_waits_for(stream);
            dist.all_reduce(arena_.data(), arena_.count(), ReduceOp::Sum, "gradient all-reduce");
        }
        dist.compute_waits_for_comm(stream);
    }

  private:
    void prepare_step(cudaStream_t stream) override { arena_.prepare_step(stream); }
    bool stores_first_micro_step() const override { return true; }
    void written_outside_backward() override { arena_.written_outside_backward(); }

    GradientArena arena_;
    bool overlap_;
    bool sending_layers_ = false;
    std::vector<typename Base::Bucket> layer_buckets_;  // [layer], with overlap
    typename Base::Bucket non_layer_bucket_;
};
