// Text samples during training: autoregressive generation from <|endoftext|> on rank 0
// (temperature, top-k). Each token runs one forward pass over a fixed window (batch 1), so one
// set of matmul shapes serves every length; causal attention keeps the padding from leaking
// backwards.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "host/config.h"
#include "host/sampling.h"
#include "host/tokenizer.h"
#include "model/gpt2.cuh"

class TextSampler {
  public:
    explicit TextSampler(const TrainConfig& config) : config_(config), rng_(config.seed) {}

    SampleRng& rng() { return rng_; }  // its state goes into checkpoints

    template <typename T, typename R>
    std::string sample(Gpt2Model<T, R>& model, MatmulContext& matmul, cudaStream_t stream) {
        const int window = std::min(config_.seq_len, (config_.sample_tokens + 1 + 63) / 64 * 64);
        const ModelShape& shape = model.options().shape;
        const int Vp = shape.padded_vocab_size, V = shape.vocab_size;
        std::vector<int32_t> tokens(window, Gpt2Tokenizer::kEndOfText);
        std::vector<T> logits_row(Vp);
        std::vector<float> row(V);
        SamplingSettings settings;
        settings.temperature = config_.temperature;
        settings.top_k = config_.top_k;
        const int count = std::min(config_.sample_tokens, window - 1);
        DropoutSchedule no_dropout;
        no_dropout.training = false;
        for (int position = 0; position < count; ++position) {
            CUDA_CHECK(cudaMemcpyAsync(model.device_tokens(), tokens.data(), sizeof(int32_t) * window,
                                       cudaMemcpyHostToDevice, stream));
            model.forward(matmul, 1, window, no_dropout, false, 0.0f, stream);
            CUDA_CHECK(cudaMemcpyAsync(logits_row.data(), model.logits() + (size_t)position * Vp, sizeof(T) * Vp,
                                       cudaMemcpyDeviceToHost, stream));
            CUDA_CHECK(cudaStreamSynchronize(stream));
            for (int v = 0; v < V; ++v) row[v] = to_float(logits_row[v]);
            tokens[position + 1] = sample_token(row.data(), V, settings, rng_);
        }
        std::vector<int> generated(tokens.begin() + 1, tokens.begin() + 1 + count);
        return tokenizer().decode(generated);
    }

  private:
    const Gpt2Tokenizer& tokenizer() {
        if (!tokenizer_) {
            const std::string dir = config_.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : config_.vocab_dir;
            tokenizer_ = std::make_unique<Gpt2Tokenizer>(Gpt2Tokenizer::load(dir));
        }
        return *tokenizer_;
    }

    const TrainConfig& config_;
    SampleRng rng_;
    std::unique_ptr<Gpt2Tokenizer> tokenizer_;
};
