// ZeRO-2: the accumulated gradients are sharded too. Each rank keeps only the gradients of its
// optimizer shard; backward writes each layer's gradients into one of a few rotating layer-sized
// buffers (and wte, wpe, lnf into one buffer of their own), and every micro-step each buffer is
// reduced straight to the ranks that own its pieces, which add them to their shard, while the
// layers below are computed.
#pragma once

#include <algorithm>
#include <vector>

#include "host/format.h"
#include "host/rank_shard.h"
#include "train/grad_sync.cuh"

template <typename T> class ShardedGradients final : public ShardedOptimizerSync<T> {
    using Base = GradientSync<T>;

  public:
    // Layer l's buffer is first written during layer l + 1's backward (pre-norm: fc_proj_b's
    // gradient comes from the next LN1's backward), and its reduction is enqueued halfway through
    // layer l - 1 (layer_ready). Reusing the buffer for layer l - K, which starts during layer
    // l - K + 1, must wait for an event recorded after that reduction, so it must be enqueued
    // later: K >= 3. Four buffers leave two layers of backward to hide each reduction.
    static constexpr int kLayerBuffers = 4;
    static_assert(kLayerBuffers >= 3, "a layer's buffer is reused before its reduction is enqueued");

    ShardedGradients(DistributedContext& dist, const ParamLayout& layout, const OptimizerShard& shard,
                     StepTimeline& timeline)
        : ShardedOptimizerSync<T>(dist, shard, timeline), layout_(layout), sizes_(layout, shard) {
        CUDA_CHECK(cudaMalloc(&storage_, sizes_.total_floats() * sizeof(float)));
        CUDA_CHECK(cudaMemset(storage_, 0, sizes_.total_floats() * sizeof(float)));
        shard_grads_ = storage_;                                   // [shard accumulator |
        non_layer_buffer_ = shard_grads_ + sizes_.shard_floats;   //  wte, wpe, lnf |
        layer_buffers_ = non_layer_buffer_ + sizes_.non_layer_floats;  //  kLayerBuffers x one layer]
        for (cudaEvent_t& event : buffer_free_) CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));

        non_layer_views_ = NonLayerParams<float>::at(
            layout, [&](const ParamTensor& t) { return non_layer_buffer_ + offset_in_buffer(t); });
        for (int layer = 0; layer < layout.n_layer(); ++layer) {
            layer_views_.push_back(LayerParams<float>::at(layout, layer, [&](const ParamTensor& t, int l) {
                return layer_buffer(l) + offset_in_buffer(t);
            }));
            layer_buckets_.push_back(
                owned_pieces(layout.layer_ranges(layer), layer_buffer(layer), string_format("gradient reduce, layer %d", layer)));
        }
        non_layer_bucket_ = owned_pieces(layout.non_layer_ranges(), non_layer_buffer_,
                                         "gradient reduce, embeddings and final LayerNorm");
    }
    ~ShardedGradients() override {
        cudaFree(storage_);
        for (cudaEvent_t event : buffer_free_)
            if (event) cudaEventDestroy(event);
    }

    static size_t bytes(const ParamLayout& layout, const OptimizerShard& shard) {
        return Sizes(layout, shard).total_floats() * sizeof(float);
    }
    int zero_stage() const override { return 2; }

    const LayerParams<float>& layer_gradients(int layer) const override { return layer_views_[layer]; }
    const NonLayerParams<float>& non_layer_gradients() const override { return non_layer_views_; }
    float* shard_gradients() override { return shard_grads_; }

    // Before backward's first write of a buffer: wait until its previous contents were reduced,
    // then clear it (backward accumulates).
    void before_layer_writes(int layer, cudaStream_t stream) override {
        CUDA_CHECK(cudaStreamWaitEvent(stream, buffer_free_[layer % kLayerBuffers], 0));
        CUDA_CHECK(cudaMemsetAsync(layer_buffer(layer), 0, sizes_.layer_floats * sizeof(float), stream));
    }
    void before_non_layer_writes(cudaStream_t stream) override {
        CUDA_CHECK(cudaStreamWaitEvent(stream, buffer_free_[kLayerBuffers], 0));
        CUDA_CHECK(cudaMemsetAsync(non_layer_buffer_, 0, sizes_.non_layer_floats * sizeof(float), stream));
    }
    void layer_ready(int layer, cudaStream_t stream) override {
        this->timeline_.mark(TimelineMark::LayerHandoff, stream, layer);
        reduce_to_owners(layer_buckets_[layer], stream);
        CUDA_CHECK(cudaEventRecord(buffer_free_[layer % kLayerBuffers], this->dist_.comm_stream));
        this->timeline_.mark(TimelineMark::LayerReduced, this->dist_.comm_stream, layer);
    }

    bool backward_communicates(bool /*last_of_step*/) const override { return true; }
    void finish_step(cudaStream_t stream) override { this->dist_.compute_waits_for_comm(stream); }

  private:
    // Every micro-step adds into buffers cleared before its writes (above); the shard's sums
    // start from zero each step.
    void prepare_step(cudaStream_t stream) override {
        CUDA_CHECK(cudaMemsetAsync(shard_grads_, 0, sizes_.shard_floats * sizeof(float), stream));
    }
    void micro_step_done(cudaStream_t stream) override {
        reduce_to_owners(non_layer_bucket_, stream);
        CUDA_CHECK(cudaEventRecord(buffer_free_[kLayerBuffers], this->dist_.comm_stream));
    }

    // Floats of each part of the storage.
    struct Sizes {
        int64_t shard_floats = 0;      // the accumulated gradients of this rank's shard
        int64_t non_layer_floats = 0;  // wte, wpe, lnf of one micro-step
        int64_t layer_floats = 0;      // one layer's tensors, per buffer
        Sizes(const ParamLayout& layout, const OptimizerShard& shard) : shard_floats(shard.owned()) {
            for (const ParamRange& range : layout.non_layer_ranges()) non_layer_floats += range.count;
            for (const ParamRange& range : layout.layer_ranges(0)) layer_floats += range.count;
        }
        int64_t total_floats() const { return shard_floats + non_layer_floats + kLayerBuffers * layer_floats; }
    };

    float* layer_buffer(int layer) const { return layer_buffers_ + (layer % kLayerBuffers) * sizes_.layer_floats; }

    // Where tensor t (its layer slice, if per-layer) starts inside a buffer: buffers hold their
    // tensors packed in ParamLayout order, as layer_ranges()/non_layer_ranges() list them.
    int64_t offset_in_buffer(const ParamTensor& t) const {
        int64_t offset = 0;
        for (const ParamTensor& other : layout_.tensors()) {
            if (&other == &t) return offset;
            if (other.per_layer == t.per_layer) offset += t.per_layer ? other.numel / layout_.n_layer() : other.numel;
        }
        REQUIRE(false, "offset_in_buffer: %s is not in this layout", t.name.c_str());
        return 0;
    }

    // The ranges packed in `buffer`, cut at the ranks' shard boundaries: each piece is summed
    // onto the rank that owns it (a range that crosses a boundary goes to two).
    typename Base::Bucket owned_pieces(const std::vector<ParamRange>& ranges, float* buffer, std::string what) const {
        typename Base::Bucket bucket{{}, std::move(what)};
        const int64_t num_params = layout_.total();
        for (const typename Base::Slice& slice : Base::slices_of(ranges, buffer, true))
            for (int rank = 0; rank < this->dist_.world_size; ++rank) {
                const distributed::Shard owned = distributed::shard_of(num_params, rank, this->dist_.world_size);
                const int64_t begin = std::max(slice.offset, (int64_t)owned.begin);
                const int64_t end = std::min(slice.offset + slice.count, (int64_t)owned.end);
                if (begin < end) bucket.slices.push_back({slice.data + (begin - slice.offset), begin, end - begin, rank});
            }
        return bucket;
    }

    // Each piece onto its owner, who adds it to its accumulated shard; on the comm stream, after
    // the work enqueued on `stream` so far.
    void reduce_to_owners(const typename Base::Bucket& bucket, cudaStream_t stream) {
        DistributedContext& dist = this->dist_;
        dist.comm_waits_for(stream);
        dist.group_begin();
        for (const typename Base::Slice& piece : bucket.slices)
            dist.reduce(piece.data, piece.data, (size_t)piece.count, piece.owner, ReduceOp::Sum, bucket.what.c_str());
        dist.group_end(bucket.what.c_str());
        for (const typename Base::Slice& piece : bucket.slices)
            if (piece.owner == dist.rank)
                accumulate(shard_grads_ + (piece.offset - this->shard_.begin), piece.data, (size_t)piece.count,
                           dist.comm_stream);
    }

    const ParamLayout& layout_;
    Sizes sizes_;
    float* storage_ = nullptr;
    float* shard_grads_ = nullptr;
    float* non_layer_buffer_ = nullptr;
    float* layer_buffers_ = nullptr;
    // buffer_free_[i] is recorded once buffer i (the non-layer buffer: i = kLayerBuffers) has
    // been reduced.
    cudaEvent_t buffer_free_[kLayerBuffers + 1] = {};
    NonLayerParams<float> non_layer_views_;
    std::vector<LayerParams<float>> layer_views_;
    std::vector<typename Base::Bucket> layer_buckets_;
    typename Base::Bucket non_layer_bucket_;
};
