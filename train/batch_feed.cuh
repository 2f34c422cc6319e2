// The batch feed: token windows from the data loaders, through pinned host buffers, into the
// model's input and target tensors on the GPU. Training windows come from the train split; the
// evaluation splits (validation, and test where the dataset has one) are read whole.
#pragma once

#include <algorithm>
#include <memory>
#include <string>

#include "host/config.h"
#include "host/dataloader.h"
#include "host/shard.h"
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

enum class EvalSplit { validation, test };
inline const char* split_name(EvalSplit split) { return split == EvalSplit::validation ? "val" : "test"; }

class BatchFeed {
  public:
    // The loaders read and check every shard header here, so a missing or bad dataset is
    // reported before the slow GPU set-up. No training loader for --eval-only; no validation
    // loader without --val-every (unless --eval-only) or when benchmarking; a test loader where
    // the dataset has a test split and --eval-only or --test-at-end asks for it.
    BatchFeed(const TrainConfig& config, const distributed::DistributedContext& dist)
        : B_(config.device_batch), T_(config.seq_len) {
        const bool benchmark = config.bench_steps > 0;
        if (!config.eval_only)
            train_ = std::make_unique<DataLoader>(loader_options(config, dist, config.train_pattern, "training"));
        if (config.eval_only || (config.val_every > 0 && !benchmark))
            val_ = std::make_unique<DataLoader>(loader_options(config, dist, config.val_pattern, "validation"));
        if ((config.eval_only || (config.test_at_end && !benchmark)) && has_test_split(config))
            test_ = std::make_unique<DataLoader>(loader_options(config, dist, config.test_pattern, "test"));
        for (auto& batch : pinned_) batch = std::make_unique<PinnedBatch>(B_, T_);
    }

    DataLoader& train_loader() { return *train_; }  // its position goes into checkpoints

    bool has(EvalSplit split) const { return evaluation_loader(split) != nullptr; }
    // Batches in one pass over the split on this rank (the last may be short); rewinds it.
    int64_t rewind(EvalSplit split) {
        DataLoader& loader = *evaluation_loader(split);
        loader.reset();
        return loader.batches_per_epoch();
    }
    // Windows of one pass over all ranks (every window of the split, up to --val-tokens).
    int64_t windows(EvalSplit split) const { return evaluation_loader(split)->total_windows(); }

    // The next training batch of micro-step `micro`: its upload to `tokens` and `targets` (B, T)
    // is enqueued on `stream`; returns the host copy of the inputs. The two pinned sets
    // alternate, so the loader fills one while the other's copy may be in flight.
    const int32_t* next_train_batch(int micro, int* tokens, int* targets, cudaStream_t stream) {
        return next(*train_, *pinned_[micro % 2], tokens, targets, stream).inputs;
    }
    // The next batch of an evaluation pass, uploaded alike; returns its windows (<= B).
    int next_evaluation_batch(EvalSplit split, int* tokens, int* targets, cudaStream_t stream) {
        return next(*evaluation_loader(split), *pinned_[0], tokens, targets, stream).windows;
    }

  private:
    // The dataset has a test split when --test-glob names one (matching nothing is then the
    // loader's error) or its directory holds *_test_*.bin shards (The Pile's; OpenWebText's test
    // split is its validation holdout, tiny has none).
    static bool has_test_split(const TrainConfig& config) {
        if (config.test_pattern.empty()) return false;
        if (!config.test_glob.empty()) return true;
        try {
            return !shard::glob_files(config.test_pattern).empty();
        } catch (const std::exception&) {
            return false;
        }
    }

    static DataLoaderOptions loader_options(const TrainConfig& config, const distributed::DistributedContext& dist,
                                            const std::string& pattern, const std::string& role) {
        const bool training = role == "training";
        DataLoaderOptions options;
        options.pattern = pattern;
        options.batch_size = config.device_batch;
        options.seq_len = config.seq_len;
        options.rank = dist.rank;
        options.world_size = dist.world_size;
        options.seed = config.seed;
        options.shuffle = training;
        options.keep_remainder = !training;
        options.max_tokens = training ? 0 : config.val_tokens;
        options.vocab_size = config.vocab_size;
        options.role = role;
        return options;
    }

    const DataLoader* evaluation_loader(EvalSplit split) const {
        return split == EvalSplit::validation ? val_.get() : test_.get();
    }
    DataLoader* evaluation_loader(EvalSplit split) { return split == EvalSplit::validation ? val_.get() : test_.get(); }

    struct Uploaded {
        const int32_t* inputs;  // host copy, (windows, T)
        int windows;
    };
    // Splits the loader's (windows, T+1) rows into inputs [0, T) and targets [1, T+1) and uploads them.
    Uploaded next(DataLoader& loader, PinnedBatch& batch, int* tokens, int* targets, cudaStream_t stream) {
        CUDA_CHECK(cudaEventSynchronize(batch.copied));  // its previous upload is done
        const int windows = loader.next_batch(batch.window);
        for (int b = 0; b < windows; ++b) {
            std::copy_n(batch.window + (size_t)b * (T_ + 1), T_, batch.inputs + (size_t)b * T_);
            std::copy_n(batch.window + (size_t)b * (T_ + 1) + 1, T_, batch.targets + (size_t)b * T_);
        }
        const size_t bytes = sizeof(int32_t) * (size_t)windows * T_;
        CUDA_CHECK(cudaMemcpyAsync(tokens, batch.inputs, bytes, cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(targets, batch.targets, bytes, cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaEventRecord(batch.copied, stream));
        return {batch.inputs, windows};
    }

    int B_, T_;
    std::unique_ptr<DataLoader> train_;
    std::unique_ptr<DataLoader> val_;
    std::unique_ptr<DataLoader> test_;
    std::unique_ptr<PinnedBatch> pinned_[2];
};
