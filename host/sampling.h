// Choosing the next token from one row of logits, on the host: greedy (temperature 0), or one
// draw from softmax(logits / temperature) restricted to the top-k tokens and then to the nucleus
// (top-p), the order in which transformers' generate applies its warpers. Pure C++, so the CPU
// tests hold it against hand-computed distributions.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

// The sampler's random numbers: xoshiro256** (Blackman & Vigna), whose whole state is four
// words, so it goes into the checkpoint and resumed runs sample the same text.
struct SampleRng {
    std::array<uint64_t, 4> state{};

    SampleRng() = default;
    explicit SampleRng(uint64_t seed);
    uint64_t next();
    double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

struct SamplingSettings {
    double temperature = 1.0;  // 0: greedy, the most likely token
    int top_k = 0;             // only the k most likely tokens can be drawn; 0: every token
    double top_p = 1.0;        // in (0, 1]: then only the smallest set of most likely tokens whose mass >= top_p
};

struct TokenProbability {
    int token;
    double probability;
};

// The tokens one draw can give and their probabilities (summing to 1), most likely first; of
// equal logits the lower token id ranks first. Greedy: the argmax alone. The top-p mass is
// measured within the top-k set (transformers' order). NaN logits are never chosen; throws
// std::runtime_error if no logit is a number.
std::vector<TokenProbability> sampling_distribution(const float* logits, int vocab_size,
                                                    const SamplingSettings& settings);

// One token: the argmax for temperature 0 (no random number drawn), else one uniform draw from
// `rng` over sampling_distribution's tokens in their order.
int sample_token(const float* logits, int vocab_size, const SamplingSettings& settings, SampleRng& rng);
