// HellaSwag accuracy on the GPU: host/hellaswag.h's rows (context + ending) through the model's
// forward pass with the per-token losses of the ending tokens, scored as llm.c does (acc by the
// summed loss, acc_norm by the mean). During training (--hellaswag-every) the items are split
// over the ranks and the counts summed; --hellaswag-only evaluates a checkpoint on one GPU.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/format.h"
#include "host/hellaswag.h"
#include "model/gpt2.cuh"
#include "train/inference_model.cuh"
#include "train/nccl_context.cuh"

class HellaSwagEvaluator {
  public:
    // Reads the items (the first --hellaswag-items of them) and keeps this rank's share: items
    // rank, rank + world_size, ...
    HellaSwagEvaluator(const TrainConfig& config, int rank, int world_size) : path_(config.hellaswag_path) {
        std::vector<hellaswag::Item> all = checked_items(config);
        seq_ = hellaswag::Evaluation::seq_of(all);
        std::vector<hellaswag::Item> mine;
        for (size_t i = rank; i < all.size(); i += world_size) mine.push_back(std::move(all[i]));
        evaluation_ = hellaswag::Evaluation(std::move(mine));
    }

    // Positions per row the model must take: the longest context + ending of all ranks' items,
    // less one (the same on every rank, so that all agree whether the model can take them).
    int seq() const { return seq_; }
    const std::string& path() const { return path_; }

    // Every item of this rank, `rows` rows per forward pass (up to the model's device batch) of
    // at most seq() positions; the tallies of all ranks summed.
    template <typename T, typename R>
    hellaswag::Result evaluate(Gpt2Model<T, R>& model, MatmulContext& matmul, int rows, distributed::DistributedContext& dist,
                             cudaStream_t stream) const {
        hellaswag::Evaluation evaluation = evaluation_;  // a fresh tally each time
        const int seq = evaluation.seq();
        std::vector<int32_t> inputs((size_t)rows * seq), targets((size_t)rows * seq);
        std::vector<float> losses((size_t)rows * seq);
        DropoutSchedule no_dropout;
        no_dropout.training = false;
        for (int64_t first = 0; first < evaluation.rows(); first += rows) {
            const int count = (int)std::min<int64_t>(rows, evaluation.rows() - first);
            evaluation.fill(first, count, inputs.data(), targets.data());
            const size_t n = (size_t)count * seq;
            CUDA_CHECK(cudaMemcpyAsync(model.device_tokens(), inputs.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
            CUDA_CHECK(cudaMemcpyAsync(model.device_targets(), targets.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
            model.forward(matmul, count, seq, no_dropout, /*with_targets=*/true, 0.0f, stream);
            CUDA_CHECK(cudaMemcpyAsync(losses.data(), model.losses(), n * sizeof(float), cudaMemcpyDeviceToHost, stream));
            CUDA_CHECK(cudaStreamSynchronize(stream));
            evaluation.add_losses(first, count, losses.data());
        }
        const hellaswag::Tally& tally = evaluation.tally();
        using distributed::ReduceOp;
        // Counts up to 2^24 are exact in the float all-reduce (HellaSwag has 10,042 items).
        const double items = dist.all_reduce_host((float)tally.count(), ReduceOp::Sum, "HellaSwag items");
        const double right = dist.all_reduce_host((float)tally.right_by_sum(), ReduceOp::Sum, "HellaSwag acc");
        const double right_norm = dist.all_reduce_host((float)tally.right_by_mean(), ReduceOp::Sum, "HellaSwag acc_norm");
        hellaswag::Result result;
        result.items = (int64_t)items;
        result.acc = items > 0 ? right / items : 0.0;
        result.acc_norm = items > 0 ? right_norm / items : 0.0;
        return result;
    }

  private:
    // The items to evaluate, checked against the model's vocabulary.
    static std::vector<hellaswag::Item> checked_items(const TrainConfig& config) {
        std::vector<hellaswag::Item> all = hellaswag::read_items(config.hellaswag_path);
        // The rows' padding goes through the embedding too: a smaller vocabulary would read past wte.
        if (hellaswag::Evaluation::kPaddingToken >= config.vocab_size)
            throw std::runtime_error(string_format("%s: HellaSwag pads its rows with token %d (<|endoftext|>); the "
                                                   "model's vocabulary has %d (GPT-2's 50257 needed)",
                                                   config.hellaswag_path.c_str(),
                                                   hellaswag::Evaluation::kPaddingToken, config.vocab_size));
        if (config.hellaswag_items > 0 && (size_t)config.hellaswag_items < all.size()) all.resize(config.hellaswag_items);
        for (const hellaswag::Item& item : all) {
            int32_t largest = *std::max_element(item.context.begin(), item.context.end());
            for (const std::vector<int32_t>& ending : item.endings)
                largest = std::max(largest, *std::max_element(ending.begin(), ending.end()));
            if (largest >= config.vocab_size)
                throw std::runtime_error(string_format("%s: item %d has token %d; the model's vocabulary has %d",
                                                       config.hellaswag_path.c_str(), item.index, largest,
                                                       config.vocab_size));
        }
        return all;
    }

    std::string path_;
    int seq_ = 0;
    hellaswag::Evaluation evaluation_{{}};  // this rank's items
};

// The evaluator of a training run, whose model takes rows of --seq-len positions.
inline HellaSwagEvaluator hellaswag_evaluator(const TrainConfig& config, const distributed::DistributedContext& dist) {
    HellaSwagEvaluator evaluator(config, dist.rank, dist.world_size);
    if (evaluator.seq() > config.seq_len)
        throw std::runtime_error(string_format("--hellaswag-every: %s needs rows of %d positions; this run's --seq-len "
                                               "is %d (raise it, or evaluate a checkpoint with --hellaswag-only)",
                                               evaluator.path().c_str(), evaluator.seq(), config.seq_len));
    return evaluator;
}

// --hellaswag-only: a checkpoint's accuracy, printed (console and a `HELLASWAG acc=...` line).
template <typename T, typename R> int evaluate_hellaswag_only(const TrainConfig& config, distributed::DistributedContext& dist) {
    const HellaSwagEvaluator evaluator(config, 0, 1);
    if (evaluator.seq() > config.max_seq_len)
        throw std::runtime_error(string_format("%s needs %d positions per row; the model %s takes %d",
                                               evaluator.path().c_str(), evaluator.seq(), config.init_from.c_str(),
                                               config.max_seq_len));
    // --device-batch auto: 32 rows (8 items) per pass fill a GPU well enough for an evaluation of
    // this size while their activations stay small beside any model's weights.
    const int rows = config.device_batch == kDeviceBatchAuto ? 32 : config.device_batch;
    InferenceModel<T, R> inference(config, rows, evaluator.seq());
    const hellaswag::Result result =
        evaluator.evaluate(inference.model(), *inference.gpu().matmul, rows, dist, inference.gpu().stream);
    std::printf("HellaSwag of %s over %lld items: acc %.4f, acc_norm %.4f\n", config.init_from.c_str(),
                (long long)result.items, result.acc, result.acc_norm);
    std::printf("HELLASWAG acc=%.6f acc_norm=%.6f items=%lld\n", result.acc, result.acc_norm, (long long)result.items);
    return 0;
}
