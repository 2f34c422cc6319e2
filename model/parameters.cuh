// The model's parameters and their optimizer state: the 16-bit compute copy of every weight, and
// this rank's shard of the fp32 master weights and AdamW moments, each a flat arena in
// ParamLayout order (checkpoints are one write; a ZeRO shard is a range of offsets).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/adamw.cuh"
#include "kernels/common.cuh"
#include "kernels/random_init.cuh"
#include "model/param_views.cuh"

// The range of the flat parameter arrays whose master weights and AdamW state this rank owns
// (ZeRO-1 and 2), within arrays padded to `padded_total` so that equal shards tile them
// (host/rank_shard.h shard_of). Without sharding: [0, num_params) of padded_total.
struct OptimizerShard {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t padded_total = 0;
    int64_t owned() const { return end - begin; }
};

// AdamW's hyperparameters for one update; grad_scale = clip factor / loss scale.
struct AdamWSettings {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
};

template <typename T> class ModelParameters {
  public:
    ModelParameters(const ParamLayout& layout, const OptimizerShard& shard) : layout_(layout), shard_(shard) {
        REQUIRE(shard_.padded_total >= layout_.total() && shard_.begin <= shard_.end &&
                    shard_.end <= shard_.padded_total,
                "optimizer shard [%lld, %lld) of %lld does not fit %lld parameters", (long long)shard_.begin,
                (long long)shard_.end, (long long)shard_.padded_total, (long long)layout_.total());
        const int64_t owned = shard_.owned();
        CUDA_CHECK(cudaMalloc(&params_, shard_.padded_total * sizeof(T)));
        CUDA_CHECK(cudaMalloc(&master_, owned * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&adam_m_, owned * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&adam_v_, owned * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&adamw_step_values_, sizeof(AdamWStep)));
        CUDA_CHECK(cudaMemset(params_, 0, shard_.padded_total * sizeof(T)));
        CUDA_CHECK(cudaMemset(master_, 0, owned * sizeof(float)));
        CUDA_CHECK(cudaMemset(adam_m_, 0, owned * sizeof(float)));
        CUDA_CHECK(cudaMemset(adam_v_, 0, owned * sizeof(float)));
        views_ = ArenaViews<T>(params_, layout_);
    }
    ~ModelParameters() {
        cudaFree(params_);
        cudaFree(master_);
        cudaFree(adam_m_);
        cudaFree(adam_v_);
        cudaFree(adamw_step_values_);
    }
    ModelParameters(const ModelParameters&) = delete;
    ModelParameters& operator=(const ModelParameters&) = delete;

    // Device memory for a shard, before allocating it: compute copy, master weights, two moments.
    static size_t bytes(const OptimizerShard& shard) {
        return shard.padded_total * sizeof(T) + 3 * shard.owned() * sizeof(float);
    }

    const OptimizerShard& shard() const { return shard_; }
    int64_t count() const { return layout_.total(); }
    const ArenaViews<T>& views() const { return views_; }
    T* compute_copy() { return params_; }  // (padded_total)
    float* master() { return master_; }    // (owned), this rank's shard
    float* adam_m() { return adam_m_; }
    float* adam_v() { return adam_v_; }

    // Fresh fp32 weights for every tensor by its init rule (ParamLayout), drawn on the GPU from
    // `seed` (identical on every rank), into `full` (count()).
    void initialize(float* full, uint64_t seed, cudaStream_t stream) const {
        int64_t tensor_index = 0;
        for (const ParamTensor& tensor : layout_.tensors()) {
            float* out = full + tensor.offset;
            switch (tensor.init) {
                case ParamInit::normal:
                    fill_normal(out, tensor.numel, (float)tensor.init_std, seed, tensor_index, stream);
                    break;
                case ParamInit::zeros: fill_constant(out, tensor.numel, 0.0f, stream); break;
                case ParamInit::ones: fill_constant(out, tensor.numel, 1.0f, stream); break;
            }
            ++tensor_index;
        }
    }
    // Full fp32 weights (count(), on the device) -> the compute copy and this rank's master shard.
    void load(const float* full, cudaStream_t stream) {
        copy_master_to_params(params_, full, count(), stream);
        const int64_t valid_end = std::min(shard_.end, count());
        if (valid_end > shard_.begin)
            CUDA_CHECK(cudaMemcpyAsync(master_, full + shard_.begin, (valid_end - shard_.begin) * sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream));
    }

    // AdamW over this rank's shard, tensor by tensor (weight decay is per tensor); shard_grads
    // holds the reduced gradients of [shard.begin, shard.end). Updates the shard of the compute
    // copy; with ZeRO the caller gathers the rest from the other ranks. adam_step is 1-based.
    void adamw_step(const float* shard_grads, const AdamWSettings& s, int adam_step, cudaStream_t stream) {
        set_adamw_step(s, adam_step, stream);
        apply_adamw(shard_grads, stream);
    }
    // adamw_step() in two parts: the step's values into device memory, then the update, whose
    // launches are the same every step, so that a CUDA graph can replay them (train/step_graph.cuh).
    void set_adamw_step(const AdamWSettings& s, int adam_step, cudaStream_t stream) {
        store_on_device(adamw_step_values_,
                        adamw_step_values(s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.grad_scale, adam_step),
                        stream);
    }
    void apply_adamw(const float* shard_grads, cudaStream_t stream) {
        for (const ParamTensor& tensor : layout_.tensors()) {
            const int64_t begin = std::max(tensor.offset, shard_.begin);
            const int64_t end = std::min(tensor.offset + tensor.numel, shard_.end);
            if (begin >= end) continue;
            const int64_t local = begin - shard_.begin;
            adamw_update<T>(params_ + begin, master_ + local, shard_grads + local, adam_m_ + local, adam_v_ + local,
                            static_cast<size_t>(end - begin), adamw_step_values_, tensor.weight_decay, stream);
        }
    }

  private:
    const ParamLayout& layout_;
    OptimizerShard shard_;
    T* params_ = nullptr;
    float* master_ = nullptr;
    float* adam_m_ = nullptr;
    float* adam_v_ = nullptr;
    AdamWStep* adamw_step_values_ = nullptr;  // (1): what set_adamw_step() stored, read by apply_adamw()
    ArenaViews<T> views_;
};
