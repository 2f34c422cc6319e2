// A model for forward passes only, with the weights of -e CHECKPOINT (or, for a preset, fresh
// ones from --seed: the generation benchmark): what the runs without training (--logits-out,
// --hellaswag-only, --generate) compute with. No gradients, no data loaders, no ranks.
#pragma once

#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "host/rank_shard.h"
#include "model/gpt2.cuh"
#include "train/gpu_context.cuh"
#include "train/matmul_tuning.cuh"
#include "train/model_options.cuh"

template <typename T, typename R> class InferenceModel {
  public:
    // Room for passes of up to max_batch x max_seq tokens.
    InferenceModel(const TrainConfig& config, int max_batch, int max_seq)
        : gpu_(config.matmul_engine),
          model_(model_options_for(config), config.base_init_std, max_batch, max_seq, whole_model(config)) {
        ModelParameters<T>& params = model_.parameters();
        float* staging = nullptr;
        CUDA_CHECK(cudaMalloc(&staging, params.count() * sizeof(float)));
        std::vector<float> weights;
        if (config.init_from.empty()) {
            params.initialize(staging, config.seed, gpu_.stream);
        } else {
            weights.resize(params.count());
            read_model_params(config.init_from, model_.options().shape, weights.data(), 0, params.count());
            // On the stream that loads them: a cudaMemcpy from pageable memory may return before its
            // DMA lands, and the non-blocking stream would not wait for it.
            CUDA_CHECK(cudaMemcpyAsync(staging, weights.data(), weights.size() * sizeof(float), cudaMemcpyHostToDevice,
                                       gpu_.stream));
        }
        params.load(staging, gpu_.stream);
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
        CUDA_CHECK(cudaFree(staging));
        // The GEMM algorithms of the run that wrote the checkpoint, where its record lies beside it.
        RunMatmulTuning::replay_beside(*gpu_.matmul, config.init_from, /*print=*/true);
    }

    Gpt2Model<T, R>& model() { return model_; }
    GpuContext& gpu() { return gpu_; }

    // Forward over the (B, T) tokens already in model().device_tokens(), without dropout; with
    // targets in model().device_targets(), the per-token losses land in model().losses().
    void forward(int B, int seq, bool with_targets) {
        DropoutSchedule no_dropout;
        no_dropout.training = false;
        model_.forward(*gpu_.matmul, B, seq, no_dropout, with_targets, 0.0f, gpu_.stream);
    }

  private:
    // The parameters keep a master shard: the whole model's, as on one GPU (ModelParameters has
    // no compute-copy-only form; the optimizer moments stay zero and unused).
    static OptimizerShard whole_model(const TrainConfig& config) {
        const int64_t n = config.num_params;
        return {0, n, (int64_t)distributed::shard_of(n, 0, 1).padded_count};
    }

    GpuContext gpu_;
    Gpt2Model<T, R> model_;
};
