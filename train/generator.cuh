// Text generation with a KV cache: each prompt goes through the ordinary forward pass once
// (Gpt2Model::prefill, which fills its keys and values into the cache), then every step runs the
// model over one new token per sequence (Gpt2Model::decode_step), so a token costs one token's
// forward pass, not the window's. The next token is chosen on the host from the last position's
// logits only (host/sampling.h; greedy picks on the GPU, kernels/row_argmax.cuh, the same
// token). `./train_gpt2cu --generate` (train/generate_run.cuh) and the
// trainer's samples (train/sampler.cuh) both generate through this class.
//
// A decode step launches about ten kernels per layer, each over a handful of rows: at small
// batches the GPU finishes them faster than the host submits them. With cuda_graph the step is
// captured once per batch size as a CUDA graph and replayed, one launch per step. The graph
// records a fixed launch shape, so every step runs all B rows (finished sequences too) and the
// attention's split for the cache's whole length (its blocks past a sequence's last key exit at
// once); the eager path launches the same per-sequence arithmetic, so both give the same bits.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/parallel_for.h"
#include "host/sampling.h"
#include "host/tokenizer.h"
#include "kernels/row_argmax.cuh"
#include "model/gpt2.cuh"
#include "model/kv_cache.cuh"
#include "train/cuda_graph.cuh"

struct GenerationSettings {
    SamplingSettings sampling;
    int max_new_tokens = 128;
    bool stop_at_end_of_text = true;  // false: always max_new_tokens per sequence (benchmarks)
    bool cuda_graph = false;          // replay each decode step as a CUDA graph (see above)
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
        CUDA_CHECK(cudaMalloc(&best_tokens_, max_batch * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&best_logits_, max_batch * sizeof(float)));
        CUDA_CHECK(cudaMallocHost(&host_logits_, (size_t)max_batch * Vp * sizeof(T)));
        CUDA_CHECK(cudaMallocHost(&host_inputs_, 2 * max_batch * sizeof(int)));
        CUDA_CHECK(cudaMallocHost(&host_best_tokens_, max_batch * sizeof(int)));
        CUDA_CHECK(cudaMallocHost(&host_best_logits_, max_batch * sizeof(float)));
    }
    ~Generator() {
        cudaFreeHost(host_best_logits_);
        cudaFreeHost(host_best_tokens_);
        cudaFreeHost(host_inputs_);
        cudaFreeHost(host_logits_);
        cudaFree(best_logits_);
        cudaFree(best_tokens_);
        cudaFree(next_logits_);
        cudaFree(positions_);
    }
    Generator(const Generator&) = delete;
    Generator& operator=(const Generator&) = delete;

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
        // Token `step` of every running sequence from its row of next_logits_: greedy
        // from the GPU's argmax, else drawn on the host from the row (which then crosses, as it
        // does where `logits` wants it). The host's rows are independent (each sequence draws
        // from its own generator), so they are spread over host threads, each with its own row
        // buffer: a batch's draws cost what one row's does, and give the same tokens.
        const bool greedy = settings.sampling.temperature == 0.0, rows_to_host = !greedy || logits;
        const int host_workers = rows_to_host ? std::min(B, host_sampling_workers()) : 1;
        std::vector<std::vector<float>> rows(host_workers, std::vector<float>(rows_to_host ? V : 0));
        auto choose = [&](int step) {
            const int Vp = shape.padded_vocab_size;
            if (greedy) {
                row_argmax(best_tokens_, best_logits_, next_logits_, B, V, Vp, stream);
                CUDA_CHECK(cudaMemcpyAsync(host_best_tokens_, best_tokens_, B * sizeof(int), cudaMemcpyDeviceToHost,
                                           stream));
                CUDA_CHECK(cudaMemcpyAsync(host_best_logits_, best_logits_, B * sizeof(float), cudaMemcpyDeviceToHost,
                                           stream));
            }
            if (rows_to_host)
                CUDA_CHECK(cudaMemcpyAsync(host_logits_, next_logits_, (size_t)B * Vp * sizeof(T),
                                           cudaMemcpyDeviceToHost, stream));
            CUDA_CHECK(cudaStreamSynchronize(stream));
            parallel_for(B, host_workers, [&](int b, int worker) {
                Completion& c = completions[b];
                if (c.stopped_at_end_of_text) return;
                std::vector<float>& row = rows[worker];
                if (rows_to_host) {
                    const T* source = host_logits_ + (size_t)b * Vp;
                    for (int v = 0; v < V; ++v) row[v] = to_float(source[v]);
                    if (logits) std::copy(row.begin(), row.end(), logits->begin() + ((size_t)b * N + step) * V);
                }
                c.tokens.push_back(greedy ? greedy_token(b) : sample_token(row.data(), V, settings.sampling, rngs[b]));
                c.stopped_at_end_of_text = settings.stop_at_end_of_text && c.tokens.back() == Gpt2Tokenizer::kEndOfText;
            });
        };

        const auto prefill_start = Clock::now();
        for (int b = 0; b < B; ++b) {
            const int length = (int)prompts[b].size();
            CUDA_CHECK(cudaMemcpyAsync(model_.device_tokens(), prompts[b].data(), length * sizeof(int),
                                       cudaMemcpyHostToDevice, stream));
            model_.prefill(matmul, length, cache_, b, next_logits_ + (size_t)b * shape.padded_vocab_size, stream);
            t.prompt_tokens += length;
        }
        choose(0);
        const auto decode_start = Clock::now();
        t.prefill_ms = std::chrono::duration<double, std::milli>(decode_start - prefill_start).count();

        int* host_tokens = host_inputs_;
        int* host_positions = host_inputs_ + max_batch_;
        for (int step = 1; step < N; ++step) {
            // Every row takes a token each step, those of stopped sequences too (a fixed batch
            // keeps the matmul shapes, and so the running sequences' arithmetic, unchanged).
            int running = 0, max_position = 0;
            for (int b = 0; b < B; ++b) {
                const Completion& c = completions[b];
                host_tokens[b] = c.stopped_at_end_of_text ? Gpt2Tokenizer::kEndOfText : c.tokens.back();
                host_positions[b] = (int)prompts[b].size() + step - 1;
                max_position = std::max(max_position, host_positions[b]);
                running += !c.stopped_at_end_of_text;
            }
            if (running == 0) break;
            CUDA_CHECK(cudaMemcpyAsync(model_.device_tokens(), host_tokens, B * sizeof(int), cudaMemcpyHostToDevice,
                                       stream));
            CUDA_CHECK(cudaMemcpyAsync(positions_, host_positions, B * sizeof(int), cudaMemcpyHostToDevice, stream));
            decode(matmul, B, max_position, settings.cuda_graph, stream);
            choose(step);
            t.decoded_tokens += running;
            ++t.decode_steps;
        }
        t.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - decode_start).count();
        return completions;
    }

  private:
    // Row b's token from the GPU's argmax: sample_token's greedy choice, and its error where the
    // row has no finite logit.
    int greedy_token(int b) const {
        if (host_best_tokens_[b] < 0 || !std::isfinite(host_best_logits_[b]))
            throw std::runtime_error("sampling: the largest logit of sequence " + std::to_string(b) + " is " +
                                     std::to_string(host_best_logits_[b]) + ": the model's output is not finite "
                                     "(diverged or overflowing weights)");
        return host_best_tokens_[b];
    }

    // One decode step of rows 0..B-1, their tokens and positions already on the device. With
    // cuda_graph, a batch size's first step runs eagerly, making every plan the capture must not
    // create (cuBLASLt's descriptors); its second captures the graph, which every later one replays.
    void decode(MatmulContext& matmul, int B, int max_position, bool cuda_graph, cudaStream_t stream) {
        if (cuda_graph && graph_batch_ != B && warmed_batch_ == B) capture(matmul, B, stream);
        if (cuda_graph && graph_batch_ == B) {
            graph_.launch(stream);
            return;
        }
        model_.decode_step(matmul, B, cache_, positions_, max_position, next_logits_, stream);
        warmed_batch_ = B;
    }

    // The decode step of B rows as a graph, for positions up to the cache's last.
    void capture(MatmulContext& matmul, int B, cudaStream_t stream) {
        graph_batch_ = 0;
        graph_.capture(
            [&] { model_.decode_step(matmul, B, cache_, positions_, cache_.max_seq() - 1, next_logits_, stream); },
            stream);
        graph_batch_ = B;
    }

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
    int* best_tokens_ = nullptr;   // (max_batch) device: greedy's tokens, each row's argmax
    float* best_logits_ = nullptr;  // (max_batch) device: their logits
    int* host_inputs_ = nullptr;   // (2, max_batch) pinned: the step's tokens, then positions
    int* host_best_tokens_ = nullptr;   // (max_batch) pinned copies of best_tokens_ and best_logits_
    float* host_best_logits_ = nullptr;
    CudaGraph graph_;       // the decode step of graph_batch_ rows
    int graph_batch_ = 0;   // 0: no graph
    int warmed_batch_ = 0;             // the batch size of the last eager step
};
