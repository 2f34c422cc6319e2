// --device-batch auto (host/device_batch.h): the largest divisor of the per-GPU sequences of a
// step that fits the memory budget.
#include <gtest/gtest.h>

#include <vector>

#include "host/device_batch.h"

namespace {

constexpr size_t kGB = 1000000000;

// 10 GB of state and 1 GB per sequence.
size_t linear_bytes(int batch) { return 10 * kGB + static_cast<size_t>(batch) * kGB; }

TEST(DeviceBatchTest, LargestPowerOfTwoDivisorThatFits) {
    // 512 sequences per GPU, 80 GB: 70 sequences would fit, the largest divisor of 512 below is 64.
    const DeviceBatchChoice choice = choose_device_batch(512, 80 * kGB, linear_bytes, 65536);
    EXPECT_TRUE(choice.fits);
    EXPECT_EQ(choice.batch, 64);
    EXPECT_NE(choice.reason.find("device batch 64 (auto)"), std::string::npos) << choice.reason;
    EXPECT_NE(choice.reason.find("74.0 GB of the 80.0 GB available"), std::string::npos) << choice.reason;
    EXPECT_NE(choice.reason.find("128 would need 138.0 GB"), std::string::npos) << choice.reason;
    EXPECT_NE(choice.reason.find("gradient accumulation 8"), std::string::npos) << choice.reason;
}

TEST(DeviceBatchTest, NeverMoreThanTheSequencesOfAStep) {
    const DeviceBatchChoice choice = choose_device_batch(32, 1000 * kGB, linear_bytes, 65536);
    EXPECT_EQ(choice.batch, 32);
    EXPECT_NE(choice.reason.find("gradient accumulation 1"), std::string::npos) << choice.reason;
    EXPECT_EQ(choose_device_batch(32, 1000 * kGB, linear_bytes, 8).batch, 8);  // the flag's range
}

TEST(DeviceBatchTest, OtherDivisorsWhenTheSequencesAreNotAPowerOfTwo) {
    // 48 sequences (e.g. 3 GPUs sharing 144): 40 would fit, divisors 48, 24, 16, ...: 24.
    EXPECT_EQ(choose_device_batch(48, 50 * kGB, linear_bytes, 65536).batch, 24);
    // 37 is prime: 1 or 37.
    EXPECT_EQ(choose_device_batch(37, 40 * kGB, linear_bytes, 65536).batch, 1);
    EXPECT_EQ(choose_device_batch(37, 47 * kGB, linear_bytes, 65536).batch, 37);
}

TEST(DeviceBatchTest, EveryCandidateIsADivisorAndTheChoiceIsTheLargestThatFits) {
    for (int64_t sequences : {1, 2, 6, 12, 64, 100, 256, 360, 1000}) {
        for (size_t budget_gb : {10, 11, 12, 17, 40, 73, 300, 2000}) {
            std::vector<int> tried;
            const auto bytes = [&](int b) {
                tried.push_back(b);
                return linear_bytes(b);
            };
            const DeviceBatchChoice choice = choose_device_batch(sequences, budget_gb * kGB, bytes, 65536);
            for (int b : tried) EXPECT_EQ(sequences % b, 0) << sequences << " " << b;
            int best = 0;
            for (int b = 1; b <= sequences; ++b)
                if (sequences % b == 0 && linear_bytes(b) <= budget_gb * kGB) best = b;
            EXPECT_EQ(choice.fits, best > 0) << sequences << " " << budget_gb;
            EXPECT_EQ(choice.batch, best > 0 ? best : 1) << sequences << " " << budget_gb;
        }
    }
}

TEST(DeviceBatchTest, NothingFitsSaysSo) {
    const DeviceBatchChoice choice = choose_device_batch(64, 10 * kGB, linear_bytes, 65536);
    EXPECT_FALSE(choice.fits);
    EXPECT_EQ(choice.batch, 1);
    EXPECT_NE(choice.reason.find("not even 1 sequence fits the 10.0 GB available; 1 would need 11.0 GB"),
              std::string::npos)
        << choice.reason;
}

}  // namespace
