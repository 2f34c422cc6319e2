// LR schedules: exact values at the boundaries of each phase. The expected values are written
// as the closed forms of schedule.h evaluated independently here; EXPECT_DOUBLE_EQ (4 ulps)
// because both sides compute the same few double operations.
#include <gtest/gtest.h>

#include <cmath>

#include "host/schedule.h"

namespace {

const double kPi = std::acos(-1.0);

LrSchedule owt_linear() {  // gpt2s: 4000 warmup steps from 0, linear to 0 at step 400k
    LrSchedule s;
    s.kind = LrScheduleKind::linear;
    s.lr = 6e-4;
    s.warmup_init_lr = 0.0;
    s.warmup_steps = 4000;
    s.decay_end_step = 400000;
    s.min_lr_ratio = 0.0;
    return s;
}

LrSchedule pile_cosine() {  // gpt3s: 8000 warmup steps from 1e-6, cosine to 0.1 lr at 600k
    LrSchedule s;
    s.kind = LrScheduleKind::cosine;
    s.lr = 6e-4;
    s.warmup_init_lr = 1e-6;
    s.warmup_steps = 8000;
    s.decay_end_step = 600000;
    s.min_lr_ratio = 0.1;
    return s;
}

TEST(ScheduleTest, LinearWarmupStartsAtInitAndReachesPeak) {
    const LrSchedule s = owt_linear();
    EXPECT_EQ(s.lr_at(0), 0.0);
    EXPECT_DOUBLE_EQ(s.lr_at(1), 6e-4 / 4000);
    EXPECT_DOUBLE_EQ(s.lr_at(2000), 3e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(3999), 6e-4 * 3999 / 4000);
    EXPECT_DOUBLE_EQ(s.lr_at(4000), 6e-4);
}

TEST(ScheduleTest, LinearDecayReachesZeroAtTheLastStep) {
    const LrSchedule s = owt_linear();
    EXPECT_DOUBLE_EQ(s.lr_at(4001), 6e-4 * 395999.0 / 396000.0);
    EXPECT_DOUBLE_EQ(s.lr_at(202000), 3e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(399999), 6e-4 / 396000.0);
    EXPECT_EQ(s.lr_at(400000), 0.0);
    EXPECT_EQ(s.lr_at(450000), 0.0);
}

TEST(ScheduleTest, LinearDecaysToAFloor) {
    LrSchedule s = owt_linear();
    s.min_lr_ratio = 0.1;
    EXPECT_DOUBLE_EQ(s.lr_at(4000), 6e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(202000), 6e-5 + 5.4e-4 * 0.5);
    EXPECT_DOUBLE_EQ(s.lr_at(400000), 6e-5);
}

TEST(ScheduleTest, CosineWarmupFromInitLr) {
    const LrSchedule s = pile_cosine();
    EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-6);
    EXPECT_DOUBLE_EQ(s.lr_at(4000), 1e-6 + (6e-4 - 1e-6) * 0.5);
    EXPECT_DOUBLE_EQ(s.lr_at(7999), 1e-6 + (6e-4 - 1e-6) * 7999.0 / 8000.0);
}

TEST(ScheduleTest, CosinePhaseIsMeasuredFromStepZeroAsTimm) {
    const LrSchedule s = pile_cosine();
    // At the end of the warmup the cosine is already 8000/600000 of the way (warmup_prefix=False).
    EXPECT_DOUBLE_EQ(s.lr_at(8000), 6e-5 + 5.4e-4 * 0.5 * (1.0 + std::cos(kPi * 8000.0 / 600000.0)));
    EXPECT_LT(s.lr_at(8000), 6e-4);
    EXPECT_GT(s.lr_at(8000), 0.9995 * 6e-4);  // 0.99960 * peak
    EXPECT_DOUBLE_EQ(s.lr_at(300000), 6e-5 + 5.4e-4 * 0.5);  // cos(pi/2) = 0 (to 1e-16)
}

TEST(ScheduleTest, CosineReachesTheFloorAndHolds) {
    const LrSchedule s = pile_cosine();
    EXPECT_DOUBLE_EQ(s.lr_at(599999), 6e-5 + 5.4e-4 * 0.5 * (1.0 + std::cos(kPi * 599999.0 / 600000.0)));
    EXPECT_DOUBLE_EQ(s.lr_at(600000), 6e-5);
    EXPECT_DOUBLE_EQ(s.lr_at(800000), 6e-5);
}

TEST(ScheduleTest, DecayIsMonotonic) {
    for (const LrSchedule& s : {owt_linear(), pile_cosine()}) {
        double previous = s.lr_at(s.warmup_steps);
        for (int64_t step = s.warmup_steps + 1; step <= s.decay_end_step + 10; step += 997) {
            const double lr = s.lr_at(step);
            EXPECT_LE(lr, previous) << lr_schedule_name(s.kind) << " step " << step;
            previous = lr;
        }
    }
}

TEST(ScheduleTest, ConstantAfterWarmup) {
    LrSchedule s = owt_linear();
    s.kind = LrScheduleKind::constant;
    s.warmup_steps = 10;
    EXPECT_DOUBLE_EQ(s.lr_at(5), 3e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(10), 6e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(1000000000), 6e-4);
}

TEST(ScheduleTest, NoWarmupStartsAtPeak) {
    LrSchedule s = owt_linear();
    s.warmup_steps = 0;
    EXPECT_DOUBLE_EQ(s.lr_at(0), 6e-4);
    EXPECT_DOUBLE_EQ(s.lr_at(200000), 3e-4);
    s = pile_cosine();
    s.warmup_steps = 0;
    EXPECT_DOUBLE_EQ(s.lr_at(0), 6e-4);
}

TEST(ScheduleTest, DecayEndingBeforeWarmupEndsGoesStraightToTheFloor) {
    // A preset shortened with --steps below its warmup: no division by zero, no overshoot.
    LrSchedule s = owt_linear();
    s.decay_end_step = 100;
    s.min_lr_ratio = 0.0;
    EXPECT_DOUBLE_EQ(s.lr_at(50), 6e-4 * 50 / 4000);
    EXPECT_EQ(s.lr_at(4000), 0.0);
    s.decay_end_step = 4000;  // decay ends exactly where the warmup does
    EXPECT_EQ(s.lr_at(4000), 0.0);
    EXPECT_TRUE(std::isfinite(s.lr_at(3999)));
}

}  // namespace
