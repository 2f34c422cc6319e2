// Text samples during training: generation from <|endoftext|> on rank 0 (temperature, top-k,
// top-p), through the same KV-cache path as ./train_gpt2cu --generate (train/generator.cuh),
// batch 1, with the training model's weights. Its random numbers are one SampleRng whose state
// goes into checkpoints, so a resumed run samples the same text.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/sampling.h"
#include "host/tokenizer.h"
#include "model/gpt2.cuh"
#include "train/generator.cuh"

class TextSampler {
  public:
    explicit TextSampler(const TrainConfig& config) : config_(config), rng_(config.seed) {}

    SampleRng& rng() { return rng_; }  // its state goes into checkpoints

    // Up to --sample-tokens tokens (fewer where the model's positions end, or at <|endoftext|>),
    // decoded as UTF-8 text (decode_text). The KV cache is allocated for the sample and freed
    // after it: samples are rare and small, and the training step keeps the memory the rest of
    // the time.
    template <typename T, typename R>
    std::string sample(Gpt2Model<T, R>& model, MatmulContext& matmul, cudaStream_t stream) {
        GenerationSettings settings;
        settings.sampling.temperature = config_.temperature;
        settings.sampling.top_k = config_.top_k;
        settings.sampling.top_p = config_.top_p;
        settings.max_new_tokens = std::min(config_.sample_tokens, config_.max_seq_len - 1);
        Generator<T, R> generator(model, 1, settings.max_new_tokens + 1);
        std::vector<SampleRng> rngs = {rng_};
        const Completion completion =
            generator.generate({{Gpt2Tokenizer::kEndOfText}}, settings, rngs, matmul, stream).front();
        rng_ = rngs.front();
        std::vector<int> text_tokens = completion.tokens;
        if (completion.stopped_at_end_of_text) text_tokens.pop_back();
        return tokenizer().decode_text(text_tokens);
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
