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
#include "host/tokenizer.h"
#include "model/gpt2.cuh"

// The sampler's random numbers: xoshiro256** (Blackman & Vigna), whose whole state is four
// words, so it goes into the checkpoint and resumed runs sample the same text.
struct SampleRng {
    std::array<uint64_t, 4> state{};

    SampleRng() = default;
    explicit SampleRng(uint64_t seed) {
        for (uint64_t& word : state) {  // splitmix64 expands the seed
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            word = z ^ (z >> 31);
        }
    }
    uint64_t next() {
        const uint64_t result = rotl(state[1] * 5, 7) * 9;
        const uint64_t t = state[1] << 17;
        state[2] ^= state[0];
        state[3] ^= state[1];
        state[1] ^= state[2];
        state[0] ^= state[3];
        state[2] ^= t;
        state[3] = rotl(state[3], 45);
        return result;
    }
    double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

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
        std::vector<std::pair<float, int>> candidates(V);
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
            for (int v = 0; v < V; ++v) candidates[v] = {to_float(logits_row[v]), v};
            tokens[position + 1] = sample_token(candidates);
        }
        std::vector<int> generated(tokens.begin() + 1, tokens.begin() + 1 + count);
        return tokenizer().decode(generated);
    }

  private:
    int sample_token(std::vector<std::pair<float, int>>& candidates) {
        const int k = config_.top_k > 0 ? std::min<int>(config_.top_k, candidates.size()) : (int)candidates.size();
        std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(),
                          [](const auto& a, const auto& b) { return a.first > b.first; });
        const double temperature = std::max(config_.temperature, 1e-6);
        std::vector<double> weights(k);
        for (int i = 0; i < k; ++i) weights[i] = std::exp((candidates[i].first - candidates[0].first) / temperature);
        const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
        double u = rng_.uniform() * total;
        for (int i = 0; i < k; ++i) {
            u -= weights[i];
            if (u < 0.0) return candidates[i].second;
        }
        return candidates[k - 1].second;
    }

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
