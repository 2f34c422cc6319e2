// Text generation with a KV cache: each prompt goes through the ordinary forward pass once
// (Gpt2Model::prefill, which fills its keys and values into the cache), then every step runs the
// model over one new token per sequence (Gpt2Model::decode_step), so a token costs one token's
// forward pass, not the window's. The next token is chosen on the host from the last position's
// logits only (host/sampling.h). `./train_gpt2cu --generate` (train/generate_run.cuh) and the
// trainer's samples (train/sampler.cuh) both generate through this class.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "host/sampling.h"
#include "host/tokenizer.h"
#include "model/gpt2.cuh"
#include "model/kv_cache.cuh"

struct GenerationSettings {
    SamplingSettings sampling;
    int max_new_tokens = 128;
    bool stop_at_end_of_text = true;  // false: always max_new_tokens per sequence (benchmarks)
};

struct Completion {
    std::vector<int> tokens;  // the new tokens, ending with <|endoftext|> where it stopped there
    bool stopped_at_end_of_text = false;
};

struct GenerationTiming {
    double prefill_ms = 0.0;     // the prompts' forward passes and the choice of each first token
    double decode_ms = 0.0;      // every further step, the choice of its tokens included
    int64_t prompt_tokens = 0;
    int64_t decode_steps = 0;
    int64_t decoded_tokens = 0;  // tokens those steps produced for sequences still running
};

template <typename T, typename R> class Generator {
  public:
    // Room for max_batch sequences of up to max_seq positions each (prompt + new tokens); the
    // model's activations must hold max_batch tokens and the longest prompt.
    Generator(Gpt2Model<T, R>& model, int max_batch, int max_seq)
        : model_(model), max_batch_(max_batch), cache_(model.options().shape, max_batch, max_seq, sizeof(T)) {
        const int Vp = model.options().shape.padded_vocab_size;
        CUDA_CHECK(cudaMalloc(&positions_, max_batch * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&next_logits_, (size_t)max_batch * Vp * sizeof(T)));
        CUDA_CHECK(cudaMallocHost(&host_logits_, (size_t)max_batch * Vp * sizeof(T)));
        CUDA_CHECK(cudaMallocHost(&host_inputs_, 2 * max_batch * sizeof(int)));
    }
    ~Generator() {
        cudaFreeHost(host_inputs_);
        cudaFreeHost(host_logits_);
        cudaFree(next_logits_);
        cudaFree(positions_);
    }
    Generator(const Generator&) = delete;
    Generator& operator=(const Generator&) = delete;

    // Device memory a generator of this size takes besides the model, before taking it.
    static size_t bytes(const ModelShape& shape, int max_batch, int max_seq) {
        return KvCache::bytes(shape, max_batch, max_seq, sizeof(T)) + (size_t)max_batch * shape.padded_vocab_size * sizeof(T);
    }

    // One completion per prompt (each non-empty, its tokens in the vocabulary, its length plus
    // max_new_tokens at most the cache's max_seq). Prompt i draws its random numbers from rngs[i]
    // alone, so its completion does not depend on the other prompts' sampling. `logits`, if
    // given, receives (prompts, max_new_tokens, vocab_size) floats: the logits each new token was
    // chosen from (zeros after a sequence stopped).
    std::vector<Completion> generate(const std::vector<std::vector<int>>& prompts, const GenerationSettings& settings,
                                     std::vector<SampleRng>& rngs, MatmulContext& matmul, cudaStream_t stream,
                                     GenerationTiming* timing = nullptr, std::vector<float>* logits = nullptr) {
        const ModelShape& shape = model_.options().shape;
        const int B = (int)prompts.size(), V = shape.vocab_size, N = settings.max_new_tokens;
        check(prompts, settings, rngs);
        using Clock = std::chrono::steady_clock;
        GenerationTiming local_timing;
        GenerationTiming& t = timing ? *timing : local_timing;
        t = GenerationTiming{};
        if (logits) logits->assign((size_t)B * N * V, 0.0f);
        std::vector<Completion> completions(B);
        std::vector<float> row(V);
        // Token `step` of every running sequence in rows 0..rows-1 of the logits on the host.
        auto choose = [&](int rows, int step) {
            const int Vp = shape.padded_vocab_size;
            CUDA_CHECK(cudaMemcpyAsync(host_logits_, next_logits_, (size_t)rows * Vp * sizeof(T), cudaMemcpyDeviceToHost,
                                       stream));
            CUDA_CHECK(cudaStreamSynchronize(stream));
            for (int b = 0; b < rows; ++b) {
                Completion& c = completions[b];
                if (c.stopped_at_end_of_text) continue;
                const T* source = host_logits_ + (size_t)b * Vp;
                for (int v = 0; v < V; ++v) row[v] = to_float(source[v]);
                if (logits) std::copy(row.begin(), row.end(), logits->begin() + ((size_t)b * N + step) * V);
                c.tokens.push_back(sample_token(row.data(), V, settings.sampling, rngs[b]));
                c.stopped_at_end_of_text = settings.stop_at_end_of_text && c.tokens.back() == Gpt2Tokenizer::kEndOfText;
            }
        };

        const auto prefill_start = Clock::now();
        for (int b = 0; b < B; ++b) {
            const int length = (int)prompts[b].size();
            CUDA_CHECK(cudaMemcpyAsync(model_.device_tokens(), prompts[b].data(), length * sizeof(int),
                                       cudaMemcpyHostToDevice, stream));
            model_.prefill(matmul, length, cache_, b, next_logits_ + (size_t)b * shape.padded_vocab_size, stream);
            t.prompt_tokens += length;
        }
        choose(B, 0);
        const auto decode_start = Clock::now();
        t.prefill_ms = std::chrono::duration<double, std::milli>(decode_start - prefill_start).count();

        int* host_tokens = host_inputs_;
        int* host_positions = host_inputs_ + max_batch_;
        for (int step = 1; step < N; ++step) {
            // Sequences that stopped still take a token while a later one runs (each row is its
            // cache slot); the batch shrinks to the last running one.
            int rows = 0;
            for (int b = 0; b < B; ++b)
                if (!completions[b].stopped_at_end_of_text) rows = b + 1;
            if (rows == 0) break;
            int max_position = 0;
            for (int b = 0; b < rows; ++b) {
                const Completion& c = completions[b];
                host_tokens[b] = c.stopped_at_end_of_text ? Gpt2Tokenizer::kEndOfText : c.tokens.back();
                host_positions[b] = (int)prompts[b].size() + step - 1;
                max_position = std::max(max_position, host_positions[b]);
                t.decoded_tokens += !c.stopped_at_end_of_text;
            }
            CUDA_CHECK(cudaMemcpyAsync(model_.device_tokens(), host_tokens, rows * sizeof(int), cudaMemcpyHostToDevice,
                                       stream));
            CUDA_CHECK(cudaMemcpyAsync(positions_, host_positions, rows * sizeof(int), cudaMemcpyHostToDevice, stream));
            model_.decode_step(matmul, rows, cache_, positions_, max_position, next_logits_, stream);
            choose(rows, step);
            ++t.decode_steps;
        }
        t.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - decode_start).count();
        return completions;
    }

  private:
    void check(const std::vector<std::vector<int>>& prompts, const GenerationSettings& settings,
               const std::vector<SampleRng>& rngs) const {
        const ModelShape& shape = model_.options().shape;
        REQUIRE(!prompts.empty() && (int)prompts.size() <= max_batch_ && rngs.size() == prompts.size(),
                "generate: %zu prompts (room for %d) and %zu random generators", prompts.size(), max_batch_,
                rngs.size());
        REQUIRE(settings.max_new_tokens >= 1, "generate: %d new tokens", settings.max_new_tokens);
        REQUIRE(!settings.stop_at_end_of_text || Gpt2Tokenizer::kEndOfText < shape.vocab_size,
                "generate: stopping at <|endoftext|> (%d) needs a vocabulary that has it (this one has %d tokens)",
                Gpt2Tokenizer::kEndOfText, shape.vocab_size);
        for (size_t i = 0; i < prompts.size(); ++i) {
            const std::vector<int>& prompt = prompts[i];
            REQUIRE(!prompt.empty() && (int)prompt.size() + settings.max_new_tokens <= cache_.max_seq(),
                    "generate: prompt %zu has %zu tokens; with %d new ones it needs %zu positions, and there are %d",
                    i, prompt.size(), settings.max_new_tokens, prompt.size() + settings.max_new_tokens,
                    cache_.max_seq());
            for (int token : prompt)
                REQUIRE(token >= 0 && token < shape.vocab_size, "generate: prompt %zu has token %d, outside [0, %d)",
                        i, token, shape.vocab_size);
        }
    }

    Gpt2Model<T, R>& model_;
    int max_batch_;
    KvCache cache_;
    int* positions_ = nullptr;     // (max_batch) device: each sequence's position this step
    T* next_logits_ = nullptr;     // (max_batch, Vp) device: the logits of each sequence's next token
    T* host_logits_ = nullptr;     // (max_batch, Vp) pinned
    int* host_inputs_ = nullptr;   // (2, max_batch) pinned: the step's tokens, then positions
};
