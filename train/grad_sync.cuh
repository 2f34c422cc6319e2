// Gradient synchronisation: where backward's gradients live, how they are summed over the ranks,
// and how the updated weights reach every rank. One implementation per strategy:
//   ZeRO-0  AllReduceGradients      (grad_sync_all_reduce.cuh): every rank keeps every gradient
//           and every optimizer state; each layer's all-reduce overlaps the rest of backward
//   ZeRO-1  ReduceScatterGradients  (grad_sync_zero1.cuh): the optimizer state is sharded; the
//           gradients are reduce-scattered after backward, the weights all-gathered after AdamW
//   ZeRO-2  ShardedGradients        (grad_sync_zero2.cuh): the accumulated gradients are sharded
//           too; each layer goes to the ranks that own it while the layers below are computed
// grad_sync_choice.cuh picks one from the configuration; nothing else knows which it is.
//
// A step, as the trainer drives it:
//   begin_step()                      starts a step: its first micro-step's backward stores the
//                                     gradients (gradient_write) where the storage allows it;
//                                     otherwise they are cleared here, and every backward adds
//   per micro-step: begin_micro_step(last), forward, backward (calls the GradientSink hooks,
//                   model/gradient_sink.h), end_micro_step()
//   finish_step()                     this rank's shard_gradients() hold the sum over ranks, and
//                                     the compute stream waits for it
//   norm_squared()                    the squared global gradient norm over all ranks
//   (AdamW on the shard), parameters_updated()   the other ranks' shards of the weights arrive
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/adamw.cuh"
#include "model/gradient_sink.h"
#include "model/parameters.cuh"
#include "train/nccl_context.cuh"
#include "train/step_timeline_events.cuh"

using distributed::DistributedContext;
using distributed::ReduceOp;

template <typename T> class GradientSync : public GradientSink {
  public:
    GradientSync(DistributedContext& dist, const OptimizerShard& shard, StepTimeline& timeline)
        : dist_(dist), shard_(shard), timeline_(timeline) {
        CUDA_CHECK(cudaMallocHost(&norm_host_, sizeof(float)));
        CUDA_CHECK(cudaMalloc(&norm_device_, sizeof(float)));
        CUDA_CHECK(cudaMalloc(&norm_scratch_, sizeof(float) * global_norm_squared_scratch_floats()));
    }
    ~GradientSync() override {
        cudaFreeHost(norm_host_);
        cudaFree(norm_device_);
        cudaFree(norm_scratch_);
    }
    GradientSync(const GradientSync&) = delete;
    GradientSync& operator=(const GradientSync&) = delete;

    virtual int zero_stage() const = 0;  // recorded in checkpoints: a run resumes with its strategy
    const OptimizerShard& shard() const { return shard_; }
    // The gradients of [shard.begin, shard.end), summed over ranks once finish_step() returned.
    virtual float* shard_gradients() = 0;

    void begin_step(cudaStream_t stream) {
        first_micro_step_ = true;
        prepare_step(stream);
    }
    // Storing skips both the clearing (a pass over every gradient) and the reads of what it
    // cleared (the weight gradients' GEMMs run with beta 0).
    GradWrite gradient_write() const override {
        return first_micro_step_ && stores_first_micro_step() ? GradWrite::store : GradWrite::add;
    }
    // Whether the backward pass of a micro-step (the last of its step or not) hands gradients to
    // the comm stream while it runs (collectives, cross-stream events), which a CUDA graph of the
    // micro-step does not capture: train/step_graph.cuh runs such a micro-step eagerly.
    virtual bool backward_communicates(bool /*last_of_step*/) const { return false; }
    virtual void begin_micro_step(bool /*last_of_step*/) {}
    void end_micro_step(cudaStream_t stream) {
        micro_step_done(stream);
        first_micro_step_ = false;
    }
    virtual void finish_step(cudaStream_t stream) = 0;
    // Blocks until the norm is known (the step's loss and the fp16 overflow check need it).
    double norm_squared(cudaStream_t stream) {
        global_norm_squared(norm_device_, shard_gradients(), shard_.owned(), norm_scratch_, stream);
        CUDA_CHECK(cudaMemcpyAsync(norm_host_, norm_device_, sizeof(float), cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        return sum_over_ranks(*norm_host_);
    }
    // AdamW has updated this rank's shard of `params` (padded_total).
    virtual void parameters_updated(T* /*params*/, cudaStream_t /*stream*/) {}
    // For a checkpoint: every rank's master shard into `full` (padded_total floats), all ranks.
    virtual void gather_master(float* full, const float* master, cudaStream_t stream) {
        CUDA_CHECK(cudaMemcpyAsync(full + shard_.begin, master, shard_.owned() * sizeof(float),
                                   cudaMemcpyDeviceToDevice, stream));
    }
    // Device memory of padded_total floats that holds nothing between steps, or nullptr.
    virtual float* idle_between_steps() { return nullptr; }
    // --inject-nan-step: a NaN in this rank's first gradient after the reduction, as an overflow
    // leaves one. (Where no backward writes that element, the next step clears it.)
    void inject_nan(cudaStream_t stream) {
        CUDA_CHECK(cudaMemsetAsync(shard_gradients(), 0xFF, sizeof(float), stream));
        written_outside_backward();
    }

  protected:
    // begin_step's part of each strategy; whether a step's first micro-step stores its gradients
    // (false: prepare_step cleared them); end_micro_step's part.
    virtual void prepare_step(cudaStream_t stream) = 0;
    virtual bool stores_first_micro_step() const { return false; }
    virtual void micro_step_done(cudaStream_t /*stream*/) {}
    virtual void written_outside_backward() {}
    virtual double sum_over_ranks(float local_norm_squared) { return local_norm_squared; }

    // A contiguous piece of a bucket: `count` gradients of flat offset `offset` (ParamLayout
    // order), stored at `data`; `owner`: the rank whose optimizer shard holds it (ZeRO-2).
    struct Slice {
        float* data;
        int64_t offset;
        int64_t count;
        int owner;
    };
    // What one collective group sends: a layer's gradients, or the embeddings' and final LN's.
    struct Bucket {
        std::vector<Slice> slices;
        std::string what;  // names it in NCCL error and timeout messages
    };
    // `ranges` of the flat layout stored one after another from `base` (packed), or at their
    // arena offsets from `base` (not packed).
    static std::vector<Slice> slices_of(const std::vector<ParamRange>& ranges, float* base, bool packed) {
        std::vector<Slice> out;
        int64_t next = 0;
        for (const ParamRange& range : ranges) {
            out.push_back({base + (packed ? next : range.offset), range.offset, range.count, -1});
            next += range.count;
        }
        return out;
    }

    // Sums one bucket over ranks in place on the comm stream, after the work enqueued on `stream`
    // so far: one NCCL group, so its slices go out as one launch.
    void all_reduce(const Bucket& bucket, cudaStream_t stream) {
        dist_.comm_waits_for(stream);
        dist_.group_begin();
        for (const Slice& slice : bucket.slices)
            dist_.all_reduce(slice.data, (size_t)slice.count, ReduceOp::Sum, bucket.what.c_str());
        dist_.group_end(bucket.what.c_str());
    }

    DistributedContext& dist_;
    OptimizerShard shard_;
    StepTimeline& timeline_;

  private:
    float* norm_host_ = nullptr;
    float* norm_device_ = nullptr;
    float* norm_scratch_ = nullptr;
    bool first_micro_step_ = false;  // from begin_step() to the first end_micro_step()
};

// ZeRO-1 and ZeRO-2: each rank updates its shard of the weights, so the norm is a sum of the
// shards' and the weights are gathered afterwards.
template <typename T> class ShardedOptimizerSync : public GradientSync<T> {
  public:
    using GradientSync<T>::GradientSync;
    void parameters_updated(T* params, cudaStream_t stream) override {
        gather_shards(params, "parameter all-gather", stream);
    }
    void gather_master(float* full, const float* master, cudaStream_t stream) override {
        GradientSync<T>::gather_master(full, master, stream);
        gather_shards(full, "checkpoint weights all-gather", stream);
    }

  protected:
    double sum_over_ranks(float local_norm_squared) override {
        return this->dist_.all_reduce_host(local_norm_squared, ReduceOp::Sum, "gradient norm");
    }

  private:
    // Every rank's shard of `array` (padded_total) from the rank that holds it, in place.
    template <typename X> void gather_shards(X* array, const char* what, cudaStream_t stream) {
        DistributedContext& dist = this->dist_;
        if (!dist.is_distributed()) return;
        const OptimizerShard& shard = this->shard_;
        dist.comm_waits_for(stream);
        dist.all_gather(array + shard.begin, array, shard.owned(), what);
        dist.compute_waits_for_comm(stream);
    }
};

// The whole gradient arena (padded_total floats in ParamLayout order), accumulated over the
// micro-steps of a step: ZeRO-0's and ZeRO-1's storage. A step's first micro-step stores every
// gradient that backward writes; the rest (the padding, wpe's rows past the sequence length)
// stays zero, unless something else wrote the arena (lent out between steps, an injected NaN),
// which the next step then clears.
class GradientArena {
  public:
    GradientArena(const ParamLayout& layout, int64_t padded_total) : count_(padded_total) {
        CUDA_CHECK(cudaMalloc(&data_, bytes(padded_total)));
        CUDA_CHECK(cudaMemset(data_, 0, bytes(padded_total)));
        views_ = ArenaViews<float>(data_, layout);
    }
    ~GradientArena() { cudaFree(data_); }
    GradientArena(const GradientArena&) = delete;
    GradientArena& operator=(const GradientArena&) = delete;

    static size_t bytes(int64_t padded_total) { return padded_total * sizeof(float); }
    float* data() { return data_; }
    int64_t count() const { return count_; }
    const ArenaViews<float>& views() const { return views_; }
    // As scratch until the next step (GradientSync::idle_between_steps).
    float* lend() {
        written_outside_backward();
        return data_;
    }
    void written_outside_backward() { needs_clearing_ = true; }
    // Before a step whose first micro-step stores the gradients.
    void prepare_step(cudaStream_t stream) {
        if (needs_clearing_) CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(count_), stream));
        needs_clearing_ = false;
    }

  private:
    float* data_ = nullptr;
    int64_t count_ = 0;
    ArenaViews<float> views_;
    bool needs_clearing_ = false;
};
