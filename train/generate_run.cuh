// ./train_gpt2cu -e CHECKPOINT --generate TEXT [--generate TEXT ...] [--prompt-file FILE]: the
// prompts' continuations (one batch, train/generator.cuh's KV cache), printed with the prefill
// time and the decode speed, optionally written as JSON lines (--generate-out) and, for tests,
// with the logits each token came from (--generate-logits-out). --generate-bench B times B
// sequences from <|endoftext|>. One GPU, no training data.
#pragma once

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/format.h"
#include "host/generation.h"
#include "host/tensor_bundle.h"
#include "host/tokenizer.h"
#include "train/generator.cuh"
#include "train/inference_model.cuh"

namespace generate_run_detail {

inline GenerationSettings settings_for(const TrainConfig& config) {
    GenerationSettings settings;
    settings.sampling.temperature = config.temperature;
    settings.sampling.top_k = config.top_k;
    settings.sampling.top_p = config.top_p;
    settings.max_new_tokens = config.max_new_tokens;
    settings.stop_at_end_of_text = config.generate_bench == 0;
    settings.cuda_graph = config.generate_cuda_graph;
    return settings;
}

// Prompt i draws from its own generator, so its completion does not depend on the batch.
inline std::vector<SampleRng> rngs_for(const TrainConfig& config, size_t prompts) {
    std::vector<SampleRng> rngs;
    for (size_t i = 0; i < prompts; ++i) rngs.emplace_back(config.seed + i);
    return rngs;
}

inline Gpt2Tokenizer load_tokenizer(const TrainConfig& config) {
    const std::string dir = config.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : config.vocab_dir;
    try {
        return Gpt2Tokenizer::load(dir);
    } catch (const std::runtime_error& error) {
        throw std::runtime_error(std::string("--generate needs the GPT-2 vocabulary for text prompts: ") + error.what() +
                                 " (--vocab-dir DIR names another, or give token ids with --prompt-format tokens)");
    }
}

// Each prompt's tokens; an empty prompt is <|endoftext|> alone (a sample from scratch).
inline std::vector<std::vector<int>> prompt_tokens(const TrainConfig& config, const std::vector<std::string>& texts,
                                                   const Gpt2Tokenizer* tokenizer) {
    std::vector<std::vector<int>> prompts;
    for (size_t i = 0; i < texts.size(); ++i) {
        std::vector<int> ids;
        if (tokenizer) tokenizer->encode_append(texts[i], ids, Gpt2Tokenizer::Special::kEndOfText);
        else ids = parse_prompt_tokens(texts[i], config.vocab_size, "prompt " + std::to_string(i + 1));
        if (ids.empty()) ids.push_back(Gpt2Tokenizer::kEndOfText);
        prompts.push_back(std::move(ids));
    }
    return prompts;
}

inline std::string ids_text(const std::vector<int>& ids) {
    std::string text;
    for (int id : ids) text += (text.empty() ? "" : " ") + std::to_string(id);
    return text;
}

inline void print_timing(const GenerationTiming& t, size_t prompts) {
    std::printf("prefill: %lld prompt tokens of %zu prompt(s) in %.2f ms (with each first new token); decode: %lld "
                "tokens in %lld steps, %.2f ms per step, %.1f tokens/s\n",
                (long long)t.prompt_tokens, prompts, t.prefill_ms, (long long)t.decoded_tokens,
                (long long)t.decode_steps, t.decode_steps ? t.decode_ms / t.decode_steps : 0.0,
                t.decode_ms > 0 ? t.decoded_tokens / (t.decode_ms / 1e3) : 0.0);
}

// --generate-logits-out: "logits" (prompts, N, vocab) and "tokens" (prompts, N), -1 after a stop.
inline void write_logits(const std::string& path, const std::vector<Completion>& completions, int N, int V,
                         std::vector<float> logits) {
    std::vector<int32_t> tokens((size_t)completions.size() * N, -1);
    for (size_t b = 0; b < completions.size(); ++b)
        std::copy(completions[b].tokens.begin(), completions[b].tokens.end(), tokens.begin() + b * N);
    tensor_bundle::Bundle bundle;
    bundle.add("logits", {(int64_t)completions.size(), N, V}, std::move(logits));
    bundle.add("tokens", {(int64_t)completions.size(), N}, std::move(tokens));
    bundle.save(path);
}

// --generate-bench: a warm-up pass (cuBLASLt plans its shapes), then the timed one.
template <typename T, typename R> int benchmark(const TrainConfig& config) {
    const int B = config.generate_bench, N = config.max_new_tokens;
    const std::vector<std::vector<int>> prompts(B, std::vector<int>{Gpt2Tokenizer::kEndOfText});
    InferenceModel<T, R> inference(config, 1, B);
    Generator<T, R> generator(inference.model(), B, 1 + N);
    GenerationSettings settings = settings_for(config);
    GenerationSettings warmup = settings;
    warmup.max_new_tokens = std::min(N, 4);
    std::vector<SampleRng> rngs = rngs_for(config, B);
    MatmulContext& matmul = *inference.gpu().matmul;
    generator.generate(prompts, warmup, rngs, matmul, inference.gpu().stream);
    GenerationTiming t;
    generator.generate(prompts, settings, rngs, matmul, inference.gpu().stream, &t);
    std::printf("%s, %s, %s: %d sequence(s) x %d new tokens\n",
                config.init_from.empty() ? config.experiment.c_str() : config.init_from.c_str(),
                config.init_from.empty() ? "random weights" : "checkpoint", precision_name<T>(), B, N);
    print_timing(t, prompts.size());
    std::printf("GENERATE_BENCH batch=%d new_tokens=%d prefill_ms=%.3f decode_ms_per_step=%.4f "
                "decode_tokens_per_s=%.1f gpu=\"%s\"\n",
                B, N, t.prefill_ms, t.decode_steps ? t.decode_ms / t.decode_steps : 0.0,
                t.decode_ms > 0 ? t.decoded_tokens / (t.decode_ms / 1e3) : 0.0, inference.gpu().props.name);
    return 0;
}

}  // namespace generate_run_detail

template <typename T, typename R> int run_generation(const TrainConfig& config) {
    namespace detail = generate_run_detail;
    if (config.generate_bench > 0) return detail::benchmark<T, R>(config);
    const std::vector<std::string> texts = collect_prompts(config.generate, config.prompt_file);
    if (texts.empty()) throw std::runtime_error("--prompt-file " + config.prompt_file + " holds no prompt (no non-empty line)");
    std::unique_ptr<Gpt2Tokenizer> tokenizer;
    if (config.prompt_format == PromptFormat::text)
        tokenizer = std::make_unique<Gpt2Tokenizer>(detail::load_tokenizer(config));
    const std::vector<std::vector<int>> prompts = detail::prompt_tokens(config, texts, tokenizer.get());
    check_prompt_lengths(prompts, config.max_new_tokens, config.max_seq_len);
    size_t longest = 0;
    for (const std::vector<int>& prompt : prompts) longest = std::max(longest, prompt.size());
    const int B = (int)prompts.size(), N = config.max_new_tokens, V = config.vocab_size;

    InferenceModel<T, R> inference(config, 1, std::max<int>((int)longest, B));
    Generator<T, R> generator(inference.model(), B, (int)longest + N);
    std::vector<SampleRng> rngs = detail::rngs_for(config, prompts.size());
    GenerationTiming timing;
    std::vector<float> logits;
    const std::vector<Completion> completions =
        generator.generate(prompts, detail::settings_for(config), rngs, *inference.gpu().matmul, inference.gpu().stream,
                           &timing, config.generate_logits_out.empty() ? nullptr : &logits);

    const bool write_lines = !config.generate_out.empty();
    std::ofstream out;
    if (write_lines) {
        out.open(config.generate_out, std::ios::binary | std::ios::trunc);
        if (!out) throw std::runtime_error("--generate-out " + config.generate_out + ": cannot create it");
    }
    for (int b = 0; b < B; ++b) {
        const Completion& c = completions[b];
        std::vector<int> new_text_tokens = c.tokens;
        if (c.stopped_at_end_of_text) new_text_tokens.pop_back();
        std::string text;
        if (tokenizer) text = tokenizer->decode_text(new_text_tokens);
        std::printf("=== %d/%d: %zu prompt tokens, %zu new%s ===\n%s%s%s\n", b + 1, B, prompts[b].size(),
                    c.tokens.size(), c.stopped_at_end_of_text ? ", stopped at <|endoftext|>" : "",
                    tokenizer ? texts[b].c_str() : detail::ids_text(prompts[b]).c_str(), tokenizer ? "" : " | ",
                    tokenizer ? text.c_str() : detail::ids_text(c.tokens).c_str());
        if (write_lines) out << completion_json(b, prompts[b], c.tokens, c.stopped_at_end_of_text, tokenizer ? &text : nullptr)
                     << "\n";
    }
    if (write_lines && !out.flush()) throw std::runtime_error("--generate-out " + config.generate_out + ": write error");
    if (!config.generate_logits_out.empty())
        detail::write_logits(config.generate_logits_out, completions, N, V, std::move(logits));
    detail::print_timing(timing, prompts.size());
    return 0;
}
