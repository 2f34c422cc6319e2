// Evaluation: the mean loss of the model over every window of a split (validation, or test where
// the dataset has one), up to --val-tokens, dropout off. Each rank reads its share of the windows
// (host/dataloader.h, keep_remainder: rank r takes windows r, r + R, ...; its last batch may be
// short); the per-token losses are summed on each rank, the sums over ranks, and the total is
// divided by the number of target tokens of the whole split, which every rank knows.
#pragma once

#include <cmath>
#include <numeric>
#include <vector>

#include "model/gpt2.cuh"
#include "train/batch_feed.cuh"
#include "train/nccl_context.cuh"

struct SplitLoss {
    double loss = NAN;    // mean over the split's target tokens; NAN when the run has no such split
    int64_t tokens = 0;   // target tokens evaluated, over all ranks
};

template <typename T, typename R>
SplitLoss evaluate_split(Gpt2Model<T, R>& model, BatchFeed& feed, EvalSplit split, MatmulContext& matmul, int B,
                         int seq, distributed::DistributedContext& dist, cudaStream_t stream) {
    if (!feed.has(split)) return {};
    const int64_t batches = feed.rewind(split);
    DropoutSchedule no_dropout;
    no_dropout.training = false;
    double loss_sum = 0.0;
    std::vector<float> losses((size_t)B * seq);
    for (int64_t i = 0; i < batches; ++i) {
        const int windows = feed.next_evaluation_batch(split, model.device_tokens(), model.device_targets(), stream);
        const size_t N = (size_t)windows * seq;
        model.forward(matmul, windows, seq, no_dropout, true, 0.0f, stream);
        CUDA_CHECK(cudaMemcpyAsync(losses.data(), model.losses(), sizeof(float) * N, cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        loss_sum += std::accumulate(losses.begin(), losses.begin() + N, 0.0);
    }
    const double total = dist.all_reduce_host((float)loss_sum, distributed::ReduceOp::Sum, "evaluation loss");
    SplitLoss result;
    result.tokens = feed.windows(split) * seq;
    result.loss = total / (double)result.tokens;
    return result;
}
