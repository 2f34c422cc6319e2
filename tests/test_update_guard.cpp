#include "host/update_guard.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

using Verdict = UpdateGuard::Verdict;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(UpdateGuard, SkipsNonFiniteStepsAndStopsAfterTheLimitInARow) {
    UpdateGuard guard({/*nonfinite_limit=*/3, 0.0, 0.0, 8});
    EXPECT_EQ(guard.judge(2.0, 1.0), Verdict::apply);
    EXPECT_EQ(guard.judge(kNan, 1.0), Verdict::skip_nonfinite);
    EXPECT_EQ(guard.judge(2.0, kInf), Verdict::skip_nonfinite);
    EXPECT_EQ(guard.nonfinite_in_a_row(), 2);
    EXPECT_EQ(guard.judge(2.0, 1.0), Verdict::apply);  // a finite step resets the count
    EXPECT_EQ(guard.nonfinite_in_a_row(), 0);
    EXPECT_EQ(guard.judge(kNan, kNan), Verdict::skip_nonfinite);
    EXPECT_EQ(guard.judge(-kInf, 1.0), Verdict::skip_nonfinite);
    EXPECT_EQ(guard.judge(kNan, 1.0), Verdict::stop);
    EXPECT_EQ(guard.skipped(), 5);
}

TEST(UpdateGuard, SpikeDetectionIsOffByDefault) {
    UpdateGuard guard({10, 0.0, 0.0, 4});
    for (int i = 0; i < 8; ++i) EXPECT_EQ(guard.judge(2.0 + 0.01 * (i % 2), 1.0), Verdict::apply);
    EXPECT_EQ(guard.judge(100.0, 1000.0), Verdict::apply);
}

TEST(UpdateGuard, SkipsLossAndNormSpikesOnceTheWindowIsFull) {
    UpdateGuard guard({10, /*loss_z=*/5.0, /*norm_z=*/5.0, /*window=*/4});
    // Before the window is full nothing counts as a spike.
    EXPECT_EQ(guard.judge(2.0, 1.0), Verdict::apply);
    EXPECT_EQ(guard.judge(50.0, 1.0), Verdict::apply);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(guard.judge(2.0 + 0.1 * (i % 2), 1.0 + 0.1 * (i % 2)), Verdict::apply);
    EXPECT_EQ(guard.judge(3.0, 1.05), Verdict::skip_loss_spike);  // far above a window of 2.0 / 2.1
    EXPECT_EQ(guard.judge(2.0, 9.0), Verdict::skip_norm_spike);
    EXPECT_EQ(guard.judge(1.0, 0.5), Verdict::apply);  // spikes downwards are no reason to skip
    EXPECT_EQ(guard.skipped(), 2);
}

TEST(RollingZScore, MatchesTheSampleStandardDeviationOfTheWindow) {
    RollingZScore z(3);
    EXPECT_EQ(z.push(1.0), 0.0);
    EXPECT_EQ(z.push(2.0), 0.0);
    EXPECT_EQ(z.push(3.0), 0.0);
    // window {1, 2, 3}: mean 2, sample std 1
    EXPECT_DOUBLE_EQ(z.push(5.0), 3.0);
    // window {2, 3, 5}: mean 10/3, sample std sqrt(7/3)
    EXPECT_NEAR(z.push(10.0 / 3.0), 0.0, 1e-12);
    // a constant window has no spread: no z-score
    RollingZScore flat(2);
    flat.push(1.0);
    flat.push(1.0);
    EXPECT_EQ(flat.push(100.0), 0.0);
}
