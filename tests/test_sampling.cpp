// Next-token sampling (host/sampling.h) on fixed logits: greedy is the argmax, top-k keeps the k
// largest, top-p the smallest set whose mass reaches p (within the top-k set), the temperature
// divides the logits, and draws follow the distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <stdexcept>
#include <vector>

#include "host/sampling.h"

namespace {

// Logits whose softmax (temperature 1) is exactly `probabilities` up to rounding.
std::vector<float> logits_of(const std::vector<double>& probabilities) {
    std::vector<float> logits;
    for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
    return logits;
}

std::map<int, double> as_map(const std::vector<TokenProbability>& distribution) {
    std::map<int, double> m;
    for (const TokenProbability& t : distribution) m[t.token] = t.probability;
    return m;
}

SamplingSettings settings(double temperature, int top_k, double top_p) {
    SamplingSettings s;
    s.temperature = temperature;
    s.top_k = top_k;
    s.top_p = top_p;
    return s;
}

// Token probabilities 0.05, 0.5, 0.15, 0.3 (ids 0..3): most likely first is 1, 3, 2, 0.
const std::vector<float> kFour = logits_of({0.05, 0.5, 0.15, 0.3});

TEST(SamplingTest, GreedyIsTheArgmaxAndDrawsNoRandomNumber) {
    const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.9f, NAN};
    SampleRng rng(7);
    const SampleRng before = rng;
    EXPECT_EQ(sample_token(logits.data(), 5, settings(0.0, 0, 1.0), rng), 1);
    EXPECT_EQ(rng.state, before.state);
    const std::vector<TokenProbability> d = sampling_distribution(logits.data(), 5, settings(0.0, 3, 0.5));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].token, 1);
    EXPECT_EQ(d[0].probability, 1.0);
    // Equal largest logits: the lower id, as torch.argmax.
    const std::vector<float> tied = {1.0f, 3.0f, 3.0f, 2.0f};
    EXPECT_EQ(sample_token(tied.data(), 4, settings(0.0, 0, 1.0), rng), 1);
    // NaN is never the argmax, wherever it sits.
    const std::vector<float> leading_nan = {NAN, -5.0f, -4.0f};
    EXPECT_EQ(sample_token(leading_nan.data(), 3, settings(0.0, 0, 1.0), rng), 2);
}

TEST(SamplingTest, FullDistributionIsTheSoftmaxMostLikelyFirst) {
    const std::vector<TokenProbability> d = sampling_distribution(kFour.data(), 4, settings(1.0, 0, 1.0));
    ASSERT_EQ(d.size(), 4u);
    const std::vector<int> order = {1, 3, 2, 0};
    const std::vector<double> expected = {0.5, 0.3, 0.15, 0.05};
    for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(d[i].token, order[i]);
        EXPECT_NEAR(d[i].probability, expected[i], 1e-7);
    }
}

TEST(SamplingTest, TopKKeepsTheKLargestRenormalized) {
    const std::map<int, double> d = as_map(sampling_distribution(kFour.data(), 4, settings(1.0, 2, 1.0)));
    ASSERT_EQ(d.size(), 2u);
    EXPECT_NEAR(d.at(1), 0.5 / 0.8, 1e-7);
    EXPECT_NEAR(d.at(3), 0.3 / 0.8, 1e-7);
    // k beyond the vocabulary: every token.
    EXPECT_EQ(sampling_distribution(kFour.data(), 4, settings(1.0, 100, 1.0)).size(), 4u);
    // Ties at the k-th place keep the lower id.
    const std::vector<float> tied = {1.0f, 2.0f, 1.0f, 1.0f};
    const std::map<int, double> two = as_map(sampling_distribution(tied.data(), 4, settings(1.0, 2, 1.0)));
    EXPECT_EQ(two.count(1), 1u);
    EXPECT_EQ(two.count(0), 1u);
}

TEST(SamplingTest, TopPKeepsTheSmallestSetWhoseMassReachesP) {
    // Masses in order: 0.5, 0.8, 0.95, 1.0 (p away from the boundaries, which rounding could move).
    const std::vector<std::pair<double, size_t>> cases = {{0.3, 1}, {0.75, 2}, {0.9, 3}, {0.97, 4}, {1.0, 4}};
    for (const auto& [p, size] : cases) {
        const std::vector<TokenProbability> d = sampling_distribution(kFour.data(), 4, settings(1.0, 0, p));
        ASSERT_EQ(d.size(), size) << "top-p " << p;
        double total = 0.0;
        for (const TokenProbability& t : d) total += t.probability;
        EXPECT_NEAR(total, 1.0, 1e-12);
    }
    const std::map<int, double> two = as_map(sampling_distribution(kFour.data(), 4, settings(1.0, 0, 0.75)));
    EXPECT_NEAR(two.at(1), 0.5 / 0.8, 1e-7);
    EXPECT_NEAR(two.at(3), 0.3 / 0.8, 1e-7);
}

TEST(SamplingTest, TopPMeasuresMassWithinTheTopKSet) {
    // Over all four tokens the masses run 0.5, 0.8, 0.95: p = 0.82 needs three. Within the top 3
    // (renormalized: 0.526, 0.316, 0.158) they run 0.526, 0.842: two.
    const std::vector<TokenProbability> d = sampling_distribution(kFour.data(), 4, settings(1.0, 3, 0.82));
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(sampling_distribution(kFour.data(), 4, settings(1.0, 0, 0.82)).size(), 3u);
}

TEST(SamplingTest, TemperatureDividesTheLogits) {
    // Temperature 2: probabilities proportional to sqrt(p).
    const std::map<int, double> hot = as_map(sampling_distribution(kFour.data(), 4, settings(2.0, 0, 1.0)));
    const double norm = std::sqrt(0.05) + std::sqrt(0.5) + std::sqrt(0.15) + std::sqrt(0.3);
    EXPECT_NEAR(hot.at(1), std::sqrt(0.5) / norm, 1e-7);
    EXPECT_NEAR(hot.at(0), std::sqrt(0.05) / norm, 1e-7);
    // A low temperature concentrates the mass on the argmax.
    const std::map<int, double> cold = as_map(sampling_distribution(kFour.data(), 4, settings(0.01, 0, 1.0)));
    EXPECT_GT(cold.at(1), 1.0 - 1e-12);
}

TEST(SamplingTest, DrawsFollowTheDistributionAndTheSeed) {
    const SamplingSettings s = settings(1.0, 3, 1.0);  // 0.5/0.95, 0.3/0.95, 0.15/0.95; token 0 never
    SampleRng rng(1234);
    constexpr int kDraws = 200000;
    std::map<int, int> counts;
    for (int i = 0; i < kDraws; ++i) ++counts[sample_token(kFour.data(), 4, s, rng)];
    EXPECT_EQ(counts.count(0), 0u);
    for (const auto& [token, p] : std::map<int, double>{{1, 0.5 / 0.95}, {3, 0.3 / 0.95}, {2, 0.15 / 0.95}}) {
        const double sigma = std::sqrt(kDraws * p * (1 - p));
        EXPECT_NEAR(counts[token], kDraws * p, 5 * sigma) << "token " << token;
    }
    // The same seed gives the same numbers, and a saved state continues them (a resumed run).
    SampleRng a(99), b(99);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next(), b.next());
    SampleRng resumed;
    resumed.state = a.state;
    for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(kFour.data(), 4, s, a), sample_token(kFour.data(), 4, s, resumed));
    EXPECT_NE(SampleRng(1).next(), SampleRng(2).next());
}

TEST(SamplingTest, BadInputIsAnError) {
    const std::vector<float> nans = {NAN, NAN};
    SampleRng rng(1);
    EXPECT_THROW(sample_token(nans.data(), 2, settings(0.0, 0, 1.0), rng), std::runtime_error);
    EXPECT_THROW(sample_token(nans.data(), 2, settings(1.0, 0, 1.0), rng), std::runtime_error);
    const std::vector<float> infinite = {INFINITY, 0.0f};
    EXPECT_THROW(sample_token(infinite.data(), 2, settings(1.0, 0, 1.0), rng), std::runtime_error);
    EXPECT_THROW(sampling_distribution(kFour.data(), 4, settings(-1.0, 0, 1.0)), std::invalid_argument);
    EXPECT_THROW(sampling_distribution(kFour.data(), 4, settings(1.0, 0, 0.0)), std::invalid_argument);
    EXPECT_THROW(sampling_distribution(kFour.data(), 4, settings(1.0, -1, 1.0)), std::invalid_argument);
    EXPECT_THROW(sampling_distribution(kFour.data(), 0, settings(1.0, 0, 1.0)), std::invalid_argument);
}

}  // namespace
