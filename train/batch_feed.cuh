// The batch feed: token windows from the data loaders, through pinned host buffers, into the
// model's input and target tensors on the GPU.
#pragma once

#include <algorithm>
#include <memory>
#include <string>

#include "host/config.h"
#include "host/dataloader.h"
#include "kernels/common.cuh"
#include "train/nccl_context.cuh"

// Host buffers one micro-step's tokens pass through on their way to the GPU.
struct PinnedBatch {
    int32_t* window = nullptr;   // (B, T+1) straight from the loader
    int32_t* inputs = nullptr;   // (B, T)
    int32_t* targets = nullptr;  // (B, T)
    cudaEvent_t copied = nullptr;

    PinnedBatch(int B, int T) {
        CUDA_CHECK(cudaMallocHost(&window, sizeof(int32_t) * B * (T + 1)));
        CUDA_CHECK(cudaMallocHost(&inputs, sizeof(int32_t) * B * T));
        CUDA_CHECK(cudaMallocHost(&targets, sizeof(int32_t) * B * T));
        CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
    }
    ~PinnedBatch() {
        cudaFreeHost(window);
        cudaFreeHost(inputs);
        cudaFreeHost(targets);
        cudaEventDestroy(copied);
    }
    PinnedBatch(const PinnedBatch&) = delete;
    PinnedBatch& operator=(const PinnedBatch&) = delete;
};

class BatchFeed {
  public:
    // The loaders read and check every shard header here, so a missing or bad dataset is
    // reported before the slow GPU set-up. No validation loader without --val-every or when
    // benchmarking.
    BatchFeed(const TrainConfig& config, const distributed::DistributedContext& dist)
        : B_(config.device_batch), T_(config.seq_len) {
        train_ = std::make_unique<DataLoader>(loader_options(config, dist, config.train_pattern, true));
        if (config.val_every > 0 && config.bench_steps == 0)
            val_ = std::make_unique<DataLoader>(loader_options(config, dist, config.val_pattern, false));
        for (auto& batch : pinned_) batch = std::make_unique<PinnedBatch>(B_, T_);
    }

    DataLoader& train_loader() { return *train_; }  // its position goes into checkpoints
    bool has_validation() const { return val_ != nullptr; }
    // Batches in one pass over the (capped) validation split; rewinds it.
    int64_t rewind_validation() {
        val_->reset();
        return val_->batches_per_epoch();
    }

    // The next training (or validation) batch of micro-step `micro`: its upload to `tokens` and
    // `targets` (B, T) is enqueued on `stream`; returns the host copy of the inputs. The two
    // pinned sets alternate, so the loader fills one while the other's copy may be in flight.
    const int32_t* next_train_batch(int micro, int* tokens, int* targets, cudaStream_t stream) {
        return next(*train_, *pinned_[micro % 2], tokens, targets, stream);
    }
    const int32_t* next_validation_batch(int* tokens, int* targets, cudaStream_t stream) {
        return next(*val_, *pinned_[0], tokens, targets, stream);
    }

  private:
    static DataLoaderOptions loader_options(const TrainConfig& config, const distributed::DistributedContext& dist,
                                            const std::string& pattern, bool training) {
        DataLoaderOptions options;
        options.pattern = pattern;
        options.batch_size = config.device_batch;
        options.seq_len = config.seq_len;
        options.rank = dist.rank;
        options.world_size = dist.world_size;
        options.seed = config.seed;
        options.shuffle = training;
        options.max_tokens = training ? 0 : config.val_tokens;
        options.vocab_size = config.vocab_size;
        options.role = training ? "training" : "validation";
        return options;
    }

    // Splits the (B, T+1) windows into inputs [0, T) and targets [1, T+1) and uploads them.
    const int32_t* next(DataLoader& loader, PinnedBatch& batch, int* tokens, int* targets, cudaStream_t stream) {
        CUDA_CHECK(cudaEventSynchronize(batch.copied));  // its previous upload is done
        loader.next_batch(batch.window);
        for (int b = 0; b < B_; ++b) {
            std::copy_n(batch.window + (size_t)b * (T_ + 1), T_, batch.inputs + (size_t)b * T_);
            std::copy_n(batch.window + (size_t)b * (T_ + 1) + 1, T_, batch.targets + (size_t)b * T_);
        }
        CUDA_CHECK(cudaMemcpyAsync(tokens, batch.inputs, sizeof(int32_t) * B_ * T_, cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(targets, batch.targets, sizeof(int32_t) * B_ * T_, cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaEventRecord(batch.copied, stream));
        return batch.inputs;
    }

    int B_, T_;
    std::unique_ptr<DataLoader> train_;
    std::unique_ptr<DataLoader> val_;
    std::unique_ptr<PinnedBatch> pinned_[2];
};
