#include <gtest/gtest.h>

#include "host/loss_scaler.h"

TEST(LossScaler, StartsAtTheInitialScaleOnlyWhenDynamic) {
    EXPECT_EQ(LossScaler(65536.0, 2000, true).scale(), 65536.0);
    EXPECT_EQ(LossScaler(65536.0, 2000, false).scale(), 1.0);
}

TEST(LossScaler, OverflowSkipsTheStepAndHalvesTheScale) {
    LossScaler scaler(65536.0, 2000, true);
    EXPECT_TRUE(scaler.update(true));
    EXPECT_FALSE(scaler.update(false));
    EXPECT_EQ(scaler.scale(), 32768.0);
    EXPECT_EQ(scaler.clean_steps(), 0);
}

TEST(LossScaler, DoublesAfterGrowthIntervalCleanSteps) {
    LossScaler scaler(1024.0, 3, true);
    EXPECT_TRUE(scaler.update(true));
    EXPECT_TRUE(scaler.update(true));
    EXPECT_EQ(scaler.scale(), 1024.0);
    EXPECT_TRUE(scaler.update(true));
    EXPECT_EQ(scaler.scale(), 2048.0);
    // An overflow resets the count of clean steps.
    EXPECT_TRUE(scaler.update(true));
    EXPECT_FALSE(scaler.update(false));
    EXPECT_EQ(scaler.scale(), 1024.0);
    EXPECT_TRUE(scaler.update(true));
    EXPECT_TRUE(scaler.update(true));
    EXPECT_EQ(scaler.scale(), 1024.0);
}

TEST(LossScaler, ConstantScaleRejectsOnlyNonFiniteSteps) {
    LossScaler scaler(65536.0, 1, false);
    EXPECT_TRUE(scaler.update(true));
    EXPECT_TRUE(scaler.update(true));
    EXPECT_EQ(scaler.scale(), 1.0);
    EXPECT_FALSE(scaler.update(false));
    EXPECT_EQ(scaler.scale(), 1.0);
}
