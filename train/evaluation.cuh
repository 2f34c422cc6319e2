// Validation: the mean loss over the (capped) validation split, dropout off, over all ranks.
#pragma once

#include <cmath>
#include <numeric>
#include <vector>

#include "model/gpt2.cuh"
#include "train/batch_feed.cuh"
#include "train/nccl_context.cuh"

template <typename T, typename R>
double validation_loss(Gpt2Model<T, R>& model, BatchFeed& feed, MatmulContext& matmul, int B, int seq,
                       distributed::DistributedContext& dist, cudaStream_t stream) {
    if (!feed.has_validation()) return NAN;
    const int N = B * seq;
    const int64_t batches = feed.rewind_validation();
    DropoutSchedule no_dropout;
    no_dropout.training = false;
    double loss_sum = 0.0;
    std::vector<float> losses(N);
    for (int64_t i = 0; i < batches; ++i) {
        feed.next_validation_batch(model.device_tokens(), model.device_targets(), stream);
        model.forward(matmul, B, seq, no_dropout, true, 0.0f, stream);
        CUDA_CHECK(cudaMemcpyAsync(losses.data(), model.losses(), sizeof(float) * N, cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        loss_sum += std::accumulate(losses.begin(), losses.end(), 0.0);
    }
    const double total = dist.all_reduce_host((float)loss_sum, distributed::ReduceOp::Sum, "validation loss");
    return total / ((double)batches * N * dist.world_size);
}
