// Sampling from a row of logits (host/sampling.h). The top-k set comes from one pass with a
// k-sized heap (O(V log k): a 50,257-token row takes well under a millisecond for k = 50); only
// top-k = 0 sorts the whole row.

#include "host/sampling.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

SampleRng::SampleRng(uint64_t seed) {
    for (uint64_t& word : state) {  // splitmix64 expands the seed
        seed += 0x9E3779B97F4A7C15ull;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        word = z ^ (z >> 31);
    }
}

uint64_t SampleRng::next() {
    auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
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

namespace {

struct Scored {
    float logit;
    int token;
};

// Whether a ranks before b: the larger logit, then the lower id (a deterministic order for ties).
bool ranks_before(const Scored& a, const Scored& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}

// The k best-ranked tokens (NaN logits left out), best first.
std::vector<Scored> top_tokens(const float* logits, int vocab_size, int k) {
    std::vector<Scored> best;
    if (k >= vocab_size) {
        best.reserve(vocab_size);
        for (int v = 0; v < vocab_size; ++v)
            if (!std::isnan(logits[v])) best.push_back({logits[v], v});
    } else {
        // A heap whose front is the worst token kept so far: a token enters only by ranking before it.
        best.reserve(k);
        for (int v = 0; v < vocab_size; ++v) {
            const Scored s{logits[v], v};
            if (std::isnan(s.logit)) continue;
            if (static_cast<int>(best.size()) < k) {
                best.push_back(s);
                std::push_heap(best.begin(), best.end(), ranks_before);
            } else if (ranks_before(s, best.front())) {
                std::pop_heap(best.begin(), best.end(), ranks_before);
                best.back() = s;
                std::push_heap(best.begin(), best.end(), ranks_before);
            }
        }
    }
    std::sort(best.begin(), best.end(), ranks_before);
    return best;
}

void check_settings(int vocab_size, const SamplingSettings& settings) {
    if (vocab_size < 1) throw std::invalid_argument("sampling: a row of " + std::to_string(vocab_size) + " logits");
    if (!(settings.temperature >= 0.0) || settings.top_k < 0 || !(settings.top_p > 0.0 && settings.top_p <= 1.0))
        throw std::invalid_argument("sampling: temperature " + std::to_string(settings.temperature) + ", top-k " +
                                    std::to_string(settings.top_k) + ", top-p " + std::to_string(settings.top_p) +
                                    " (valid: temperature >= 0, top-k >= 0, top-p in (0, 1])");
}

std::runtime_error no_finite_logit(float largest) {
    return std::runtime_error("sampling: the largest logit is " + std::to_string(largest) +
                              ": the model's output is not finite (diverged or overflowing weights)");
}

int argmax(const float* logits, int vocab_size) {
    int best = -1;
    for (int v = 0; v < vocab_size; ++v)
        if (!std::isnan(logits[v]) && (best < 0 || logits[v] > logits[best])) best = v;
    if (best < 0 || !std::isfinite(logits[best])) throw no_finite_logit(best < 0 ? NAN : logits[best]);
    return best;
}

}  // namespace

std::vector<TokenProbability> sampling_distribution(const float* logits, int vocab_size,
                                                    const SamplingSettings& settings) {
    check_settings(vocab_size, settings);
    if (settings.temperature == 0.0) return {{argmax(logits, vocab_size), 1.0}};
    const int k = settings.top_k > 0 ? std::min(settings.top_k, vocab_size) : vocab_size;
    const std::vector<Scored> candidates = top_tokens(logits, vocab_size, k);
    if (candidates.empty() || !std::isfinite(candidates[0].logit))
        throw no_finite_logit(candidates.empty() ? NAN : candidates[0].logit);
    // Softmax of logit / temperature over the candidates, shifted by the largest for range.
    std::vector<TokenProbability> distribution;
    distribution.reserve(candidates.size());
    double total = 0.0;
    for (const Scored& c : candidates) {
        const double weight = std::exp((static_cast<double>(c.logit) - candidates[0].logit) / settings.temperature);
        distribution.push_back({c.token, weight});
        total += weight;
    }
    size_t kept = distribution.size();
    if (settings.top_p < 1.0) {
        double mass = 0.0;
        for (kept = 0; kept < distribution.size();) {
            mass += distribution[kept++].probability / total;
            if (mass >= settings.top_p) break;
        }
    }
    distribution.resize(kept);
    double kept_total = 0.0;
    for (const TokenProbability& t : distribution) kept_total += t.probability;
    for (TokenProbability& t : distribution) t.probability /= kept_total;
    return distribution;
}

int sample_token(const float* logits, int vocab_size, const SamplingSettings& settings, SampleRng& rng) {
    check_settings(vocab_size, settings);
    if (settings.temperature == 0.0) return argmax(logits, vocab_size);
    const std::vector<TokenProbability> distribution = sampling_distribution(logits, vocab_size, settings);
    double u = rng.uniform();
    for (const TokenProbability& t : distribution) {
        u -= t.probability;
        if (u < 0.0) return t.token;
    }
    return distribution.back().token;  // u within rounding of 1
}
