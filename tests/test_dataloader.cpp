// Dataloader: windows, shuffling, rank sharding, exact resume, validation mode, bad data.
//
// Shards hold token ids that encode their own position (shard s, token i -> s*20000 + i), so
// every window read can be traced back to exactly one (shard, window) of the data.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "host/dataloader.h"
#include "host/shard.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

constexpr int kSeqLen = 7;  // windows of 8 tokens, one every 7
constexpr int kWindowTokens = kSeqLen + 1;
constexpr uint32_t kShardStride = 20000;
// (n - 1) / 7 = 114, 65 and 263 windows; the last shard has a 1-token tail that is never read.
const std::vector<int64_t> kShardTokens = {800, 456, 1843};
constexpr int64_t kTotalWindows = 442;

class DataLoaderTest : public ::testing::Test {
  protected:
    void SetUp() override {
        for (size_t s = 0; s < kShardTokens.size(); ++s) {
            std::vector<uint32_t> tokens(static_cast<size_t>(kShardTokens[s]));
            for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(s * kShardStride + i);
            shard::write_shard(path("toy_train_00000" + std::to_string(s) + ".bin"), tokens);
        }
    }
    std::string path(const std::string& name) const { return scratch_.file(name); }

    DataLoaderOptions options(int batch, int rank = 0, int world = 1, uint64_t seed = 1111) const {
        DataLoaderOptions o;
        o.pattern = path("toy_train_*.bin");
        o.batch_size = batch;
        o.seq_len = kSeqLen;
        o.rank = rank;
        o.world_size = world;
        o.seed = seed;
        o.vocab_size = 65536;
        return o;
    }
    test_support::ScratchDir scratch_{"test_dataloader"};
};

// A window is identified by its first token; checks the window is T+1 consecutive tokens of
// one shard starting at a multiple of T.
uint32_t window_id(const int32_t* window) {
    const uint32_t first = static_cast<uint32_t>(window[0]);
    EXPECT_EQ((first % kShardStride) % kSeqLen, 0u) << "window not aligned: " << first;
    for (int i = 1; i < kWindowTokens; ++i) EXPECT_EQ(static_cast<uint32_t>(window[i]), first + i);
    return first;
}

std::vector<uint32_t> batch_ids(const std::vector<int32_t>& batch) {
    std::vector<uint32_t> ids;
    for (size_t b = 0; b * kWindowTokens < batch.size(); ++b) ids.push_back(window_id(batch.data() + b * kWindowTokens));
    return ids;
}

std::set<uint32_t> all_window_ids() {
    std::set<uint32_t> ids;
    for (size_t s = 0; s < kShardTokens.size(); ++s)
        for (int64_t w = 0; w < (kShardTokens[s] - 1) / kSeqLen; ++w)
            ids.insert(static_cast<uint32_t>(s * kShardStride + w * kSeqLen));
    return ids;
}

using test_support::error_of;

TEST_F(DataLoaderTest, UnshuffledReadsWindowsInFileOrder) {
    DataLoaderOptions o = options(4);
    o.shuffle = false;
    DataLoader loader(o);
    EXPECT_EQ(loader.num_shards(), 3);
    EXPECT_EQ(loader.total_windows(), kTotalWindows);
    EXPECT_EQ(loader.batches_per_epoch(), kTotalWindows / 4);
    const std::vector<int32_t> first = loader.next_batch();
    ASSERT_EQ(first.size(), 4u * kWindowTokens);
    for (int b = 0; b < 4; ++b)  // window b: tokens [7b, 7b + 8), inputs and targets
        for (int i = 0; i < kWindowTokens; ++i) EXPECT_EQ(first[static_cast<size_t>(b * kWindowTokens + i)], 7 * b + i);
    for (int b = 1; b < 110; ++b) loader.next_batch();
    // 442 windows make 110 batches of 4; the 2 left over are skipped, not mixed into the next epoch.
    EXPECT_EQ(loader.epoch(), 0);
    EXPECT_EQ(batch_ids(loader.next_batch()), (std::vector<uint32_t>{0, 7, 14, 21}));
    EXPECT_EQ(loader.epoch(), 1);

    o.batch_size = 5;
    DataLoader fives(o);
    for (int b = 0; b < 22; ++b) fives.next_batch();
    EXPECT_EQ(batch_ids(fives.next_batch()), (std::vector<uint32_t>{770, 777, 784, 791, 20000}));  // spans two shards
}

TEST_F(DataLoaderTest, WindowsStartEveryTTokensAndShareOneWithTheNext) {
    // The seed's LMDataset: window i is tokens [i*T, i*T + T + 1) of the stream, so its last
    // token (the last target) is the next window's first (its first input).
    DataLoaderOptions o = options(1);
    o.shuffle = false;
    DataLoader loader(o);
    std::vector<int32_t> previous;
    for (int64_t w = 0; w < (kShardTokens[0] - 1) / kSeqLen; ++w) {
        const std::vector<int32_t> window = loader.next_batch();
        ASSERT_EQ(window.size(), static_cast<size_t>(kWindowTokens));
        EXPECT_EQ(window[0], w * kSeqLen);
        if (!previous.empty()) {
            EXPECT_EQ(window.front(), previous.back()) << "window " << w;
        }
        previous = window;
    }
    // Shard 0 holds 800 tokens: 114 windows end at token 798 (= 114 * 7); token 799 is never read.
    EXPECT_EQ(previous.back(), 798);
    EXPECT_EQ(loader.next_batch()[0], static_cast<int32_t>(kShardStride)) << "next: shard 1's first window";
    // A shard of exactly T+1 tokens holds one window; T tokens hold none.
    shard::write_shard(path("exact_val_000000.bin"), std::vector<uint32_t>(kWindowTokens, 3));
    o.pattern = path("exact_val_*.bin");
    EXPECT_EQ(DataLoader(o).total_windows(), 1);
}

TEST_F(DataLoaderTest, ShuffledEpochVisitsEveryWindowOnce) {
    DataLoader loader(options(1));
    std::multiset<uint32_t> seen;
    for (int64_t i = 0; i < kTotalWindows; ++i) seen.insert(batch_ids(loader.next_batch())[0]);
    EXPECT_EQ(std::set<uint32_t>(seen.begin(), seen.end()), all_window_ids());
    EXPECT_EQ(seen.size(), static_cast<size_t>(kTotalWindows));
    EXPECT_EQ(loader.epoch(), 0);
    loader.next_batch();
    EXPECT_EQ(loader.epoch(), 1);
}

TEST_F(DataLoaderTest, ShuffleIsDeterministicAndDiffersByEpochAndSeed) {
    auto epoch_order = [&](uint64_t seed, int epoch) {
        DataLoader loader(options(1, 0, 1, seed));
        for (int64_t i = 0; i < epoch * kTotalWindows; ++i) loader.next_batch();
        std::vector<uint32_t> order;
        for (int64_t i = 0; i < kTotalWindows; ++i) order.push_back(batch_ids(loader.next_batch())[0]);
        return order;
    };
    const std::vector<uint32_t> a = epoch_order(1111, 0);
    EXPECT_EQ(a, epoch_order(1111, 0));
    EXPECT_NE(a, epoch_order(1111, 1));
    EXPECT_NE(a, epoch_order(42, 0));
    std::vector<uint32_t> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_NE(a, sorted);  // actually shuffled
}

TEST_F(DataLoaderTest, RanksReadDisjointWindows) {
    for (int world : {3, 5}) {
        const int batch = 4;
        std::vector<std::unique_ptr<DataLoader>> loaders;
        for (int r = 0; r < world; ++r) loaders.push_back(std::make_unique<DataLoader>(options(batch, r, world)));
        const int64_t per_rank = kTotalWindows / world;
        std::set<uint32_t> epoch_union;
        const int64_t batches_per_epoch = per_rank / batch;
        EXPECT_EQ(loaders[0]->batches_per_epoch(), batches_per_epoch);
        // Batch by batch over 2.5 epochs: at every step the ranks' windows are distinct, and
        // within the first epoch no window goes to two ranks.
        for (int64_t step = 0; step < 5 * batches_per_epoch / 2; ++step) {
            std::set<uint32_t> this_step;
            for (int r = 0; r < world; ++r) {
                for (uint32_t id : batch_ids(loaders[static_cast<size_t>(r)]->next_batch())) {
                    EXPECT_TRUE(this_step.insert(id).second) << "world " << world << " step " << step;
                    if (step < batches_per_epoch) {
                        EXPECT_TRUE(epoch_union.insert(id).second);
                    }
                }
            }
        }
        EXPECT_EQ(epoch_union.size(), static_cast<size_t>(per_rank / batch * batch * world));
    }
}

TEST_F(DataLoaderTest, ResumeContinuesExactly) {
    const int batch = 5;
    DataLoader continuous(options(batch, 1, 2));
    DataLoader interrupted(options(batch, 1, 2));
    for (int i = 0; i < 45; ++i) {  // past the first epoch (221 windows per rank = 44.2 batches)
        continuous.next_batch();
        interrupted.next_batch();
    }
    const DataLoaderState state = interrupted.state();
    EXPECT_EQ(state.epoch, 1);
    DataLoader resumed(options(batch, 1, 2));
    resumed.restore(state);
    for (int i = 0; i < 60; ++i) ASSERT_EQ(resumed.next_batch(), continuous.next_batch()) << "batch " << i;
}

TEST_F(DataLoaderTest, RestoreChecksTheSetupButAllowsAnotherBatchSize) {
    DataLoader saved(options(4, 0, 2));
    for (int i = 0; i < 3; ++i) saved.next_batch();
    const DataLoaderState state = saved.state();

    DataLoader smaller_batch(options(2, 0, 2));
    smaller_batch.restore(state);
    DataLoader reference(options(1, 0, 2));
    for (int i = 0; i < 12; ++i) reference.next_batch();
    std::vector<int32_t> expected = reference.next_batch();
    const std::vector<int32_t> second = reference.next_batch();
    expected.insert(expected.end(), second.begin(), second.end());
    EXPECT_EQ(smaller_batch.next_batch(), expected);

    DataLoader other_world(options(4, 0, 3));
    std::string message = error_of([&] { other_world.restore(state); });
    EXPECT_NE(message.find("world size 2 when saved, 3 now"), std::string::npos) << message;
    DataLoader other_seed(options(4, 0, 2, 7));
    message = error_of([&] { other_seed.restore(state); });
    EXPECT_NE(message.find("seed"), std::string::npos) << message;
    DataLoaderOptions longer = options(4, 0, 2);
    longer.seq_len = 15;
    DataLoader other_len(longer);
    message = error_of([&] { other_len.restore(state); });
    EXPECT_NE(message.find("seq_len 7 when saved, 15 now"), std::string::npos) << message;
}

TEST_F(DataLoaderTest, RestoreRejectsAnotherDataOrderFormat) {
    DataLoader saved(options(4));
    saved.next_batch();
    DataLoaderState state = saved.state();
    EXPECT_EQ(state.format, kDataLoaderStateFormat);
    state.format = 0;  // what a checkpoint written before the format was versioned holds
    DataLoader resumed(options(4));
    const std::string message = error_of([&] { resumed.restore(state); });
    EXPECT_NE(message.find("data-order format 0 of an older train_gpt2cu, this one reads format " +
                           std::to_string(kDataLoaderStateFormat)),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("start a new run"), std::string::npos) << message;
}

TEST_F(DataLoaderTest, ValidationModeCapsAndRepeats) {
    DataLoaderOptions o = options(3, 1, 2);
    o.shuffle = false;
    o.max_tokens = 100 * kSeqLen;  // 100 windows over 2 ranks: 50 each, 16 batches of 3
    o.role = "validation";
    DataLoader loader(o);
    EXPECT_EQ(loader.total_windows(), 100);
    EXPECT_EQ(loader.batches_per_epoch(), 16);
    std::vector<std::vector<int32_t>> pass;
    for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) pass.push_back(loader.next_batch());
    EXPECT_EQ(batch_ids(pass[0]), (std::vector<uint32_t>{7, 21, 35}));  // rank 1: odd windows
    loader.reset();
    for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) EXPECT_EQ(loader.next_batch(), pass[static_cast<size_t>(i)]);
}

TEST_F(DataLoaderTest, ReadsUint32Shards) {
    std::vector<uint32_t> tokens(3 * kWindowTokens);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = 70000 + static_cast<uint32_t>(i);
    shard::write_shard(path("wide_val_000000.bin"), tokens, shard::kVersionUint32);
    DataLoaderOptions o = options(3);
    o.pattern = path("wide_val_*.bin");
    o.shuffle = false;
    o.vocab_size = 100000;
    DataLoader loader(o);
    const std::vector<int32_t> batch = loader.next_batch();  // (24 - 1) / 7 = 3 windows
    for (size_t b = 0; b < 3; ++b)
        for (size_t i = 0; i < kWindowTokens; ++i)
            EXPECT_EQ(batch[b * kWindowTokens + i], static_cast<int32_t>(tokens[b * kSeqLen + i]));
}

TEST_F(DataLoaderTest, ClearErrors) {
    DataLoaderOptions o = options(4);
    o.pattern = path("nothing_*.bin");
    std::string message = error_of([&] { DataLoader loader(o); });
    EXPECT_NE(message.find("nothing_*.bin"), std::string::npos) << message;
    EXPECT_NE(message.find("./data_prep/prepare tiny"), std::string::npos) << message;

    o = options(250);  // 442 windows, 221 per rank over 2 ranks
    o.world_size = 2;
    message = error_of([&] { DataLoader loader(o); });
    EXPECT_NE(message.find("too little training data for one batch"), std::string::npos) << message;
    EXPECT_NE(message.find("221 window(s) per rank"), std::string::npos) << message;
    EXPECT_NE(message.find("--device-batch"), std::string::npos) << message;

    o = options(4);
    o.role = "validation";
    o.max_tokens = 3 * kSeqLen;
    message = error_of([&] { DataLoader loader(o); });
    EXPECT_NE(message.find("--val-tokens"), std::string::npos) << message;

    shard::write_shard(path("short_train_000000.bin"), std::vector<uint32_t>(5, 1));
    o = options(1);
    o.pattern = path("short_train_*.bin");
    message = error_of([&] { DataLoader loader(o); });
    EXPECT_NE(message.find(path("short_train_000000.bin") + " has 5 tokens, fewer than one window"), std::string::npos)
        << message;

    shard::write_shard(path("big_train_000000.bin"), std::vector<uint32_t>(2 * kWindowTokens, 50257));
    o = options(1);
    o.pattern = path("big_train_*.bin");
    o.vocab_size = 50257;
    DataLoader loader(o);
    message = error_of([&] { loader.next_batch(); });
    EXPECT_NE(message.find(path("big_train_000000.bin") + " holds token id 50257"), std::string::npos) << message;
}

}  // namespace
