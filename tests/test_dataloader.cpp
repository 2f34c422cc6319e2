// Dataloader: windows over a split's whole stream, one shuffled order per epoch, rank slices,
// exact resume, validation mode, bad data.
//
// Token ids encode their position in the split's stream (the shards in name order), so every
// window read can be traced back to exactly one window of the stream.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
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
// Shards of 800, 456 and 1843 tokens: a stream of 3099 tokens, (3099 - 1) / 7 = 442 windows;
// the last 4 tokens are never read. Window 114 ([798, 806)) and window 179 ([1253, 1261))
// cross shard boundaries.
const std::vector<int64_t> kShardTokens = {800, 456, 1843};
constexpr int64_t kStreamTokens = 3099;
constexpr int64_t kTotalWindows = 442;

class DataLoaderTest : public ::testing::Test {
  protected:
    void SetUp() override { write_stream("toy_train", kShardTokens); }

    // Shards <prefix>_00000S.bin whose tokens are their stream positions.
    void write_stream(const std::string& prefix, const std::vector<int64_t>& sizes) const {
        uint32_t position = 0;
        for (size_t s = 0; s < sizes.size(); ++s) {
            std::vector<uint32_t> tokens(static_cast<size_t>(sizes[s]));
            for (uint32_t& token : tokens) token = position++;
            char name[64];
            std::snprintf(name, sizeof(name), "%s_%06zu.bin", prefix.c_str(), s);
            shard::write_shard(path(name), tokens);
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

// A window is identified by its first token (its stream position); checks the window is T+1
// consecutive tokens of the stream starting at a multiple of T.
uint32_t window_id(const int32_t* window) {
    const uint32_t first = static_cast<uint32_t>(window[0]);
    EXPECT_EQ(first % kSeqLen, 0u) << "window not aligned: " << first;
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
    for (int64_t w = 0; w < kTotalWindows; ++w) ids.insert(static_cast<uint32_t>(w * kSeqLen));
    return ids;
}

// Which shard of kShardTokens holds stream position `token`.
int shard_of(uint32_t token) { return token < 800 ? 0 : token < 1256 ? 1 : 2; }

using test_support::error_of;

TEST_F(DataLoaderTest, UnshuffledReadsWindowsInStreamOrder) {
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
    // The last window starts in shard 0 (tokens 798, 799) and ends in shard 1.
    EXPECT_EQ(batch_ids(fives.next_batch()), (std::vector<uint32_t>{770, 777, 784, 791, 798}));
}

TEST_F(DataLoaderTest, WindowsStartEveryTTokensAndShareOneWithTheNext) {
    // The seed's LMDataset over the split's whole stream: window i is tokens [i*T, i*T + T + 1),
    // so its last token (the last target) is the next window's first (its first input), also
    // where a window crosses from one shard into the next.
    DataLoaderOptions o = options(1);
    o.shuffle = false;
    DataLoader loader(o);
    std::vector<int32_t> previous;
    for (int64_t w = 0; w < kTotalWindows; ++w) {
        const std::vector<int32_t> window = loader.next_batch();
        ASSERT_EQ(window.size(), static_cast<size_t>(kWindowTokens));
        EXPECT_EQ(window_id(window.data()), w * kSeqLen);
        if (!previous.empty()) {
            EXPECT_EQ(window.front(), previous.back()) << "window " << w;
        }
        previous = window;
    }
    // 442 windows end at token 3094 (= 442 * 7); tokens 3095..3098 are never read.
    EXPECT_EQ(previous.back(), 3094);
    EXPECT_EQ(kStreamTokens - 1 - previous.back(), (kStreamTokens - 1) % kSeqLen);
    EXPECT_EQ(loader.epoch(), 0);
    EXPECT_EQ(loader.next_batch()[0], 0) << "next: the next epoch's first window";
    // A split of exactly T+1 tokens holds one window; T tokens hold none.
    shard::write_shard(path("exact_val_000000.bin"), std::vector<uint32_t>(kWindowTokens, 3));
    o.pattern = path("exact_val_*.bin");
    EXPECT_EQ(DataLoader(o).total_windows(), 1);
}

TEST_F(DataLoaderTest, WindowsSpanManySmallShardsAndEmptyOnes) {
    // 60 shards of 3 tokens (and two empty ones): each window of 8 tokens spans 3 or 4 shards,
    // more shards than the loader keeps open, in a shuffled order.
    std::vector<int64_t> sizes(60, 3);
    sizes[7] = 0;
    sizes[31] = 0;
    write_stream("small_train", sizes);
    DataLoaderOptions o = options(4);
    o.pattern = path("small_train_*.bin");
    DataLoader loader(o);
    EXPECT_EQ(loader.num_shards(), 60);
    EXPECT_EQ(loader.total_windows(), (58 * 3 - 1) / kSeqLen);
    std::set<uint32_t> seen;
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b)
        for (uint32_t id : batch_ids(loader.next_batch())) EXPECT_TRUE(seen.insert(id).second) << id;
    EXPECT_EQ(static_cast<int64_t>(seen.size()), loader.batches_per_epoch() * 4);
}

TEST_F(DataLoaderTest, OneOrderOverTheWholeSplit) {
    // Not shard by shard: the first batches of an epoch already mix windows of every shard.
    for (uint64_t seed : {1111u, 2u, 3u}) {
        DataLoader loader(options(16, 0, 1, seed));
        std::set<int> shards_in_first_batch;
        for (uint32_t id : batch_ids(loader.next_batch())) shards_in_first_batch.insert(shard_of(id));
        EXPECT_EQ(shards_in_first_batch.size(), 3u) << "seed " << seed;
    }
    // Positions in the order carry no trace of stream positions: the windows of the first half
    // of an epoch are spread over the whole stream.
    DataLoader loader(options(1));
    std::map<int, int> first_half_per_shard;
    for (int64_t i = 0; i < kTotalWindows / 2; ++i) ++first_half_per_shard[shard_of(batch_ids(loader.next_batch())[0])];
    // Shard windows 114, 65, 263 (by start): about half of each, within a loose margin.
    EXPECT_NEAR(first_half_per_shard[0], 57, 15);
    EXPECT_NEAR(first_half_per_shard[1], 33, 12);
    EXPECT_NEAR(first_half_per_shard[2], 131, 20);
}

TEST(WindowPermutationTest, IsABijectionForEverySize) {
    for (int64_t size : {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 442, 1000, 4097, 65537}) {
        for (uint64_t epoch : {0u, 1u, 9u}) {
            const WindowPermutation order(size, 1111, epoch);
            std::vector<bool> hit(static_cast<size_t>(size), false);
            for (int64_t i = 0; i < size; ++i) {
                const int64_t value = order(i);
                ASSERT_GE(value, 0);
                ASSERT_LT(value, size) << "size " << size;
                ASSERT_FALSE(hit[static_cast<size_t>(value)]) << "size " << size << ": " << value << " twice";
                hit[static_cast<size_t>(value)] = true;
            }
        }
    }
    // Large sizes (the Pile's 183M windows and beyond): values stay in range and distinct.
    for (int64_t size : {int64_t{183000001}, int64_t{1} << 40, (int64_t{1} << 40) + 3}) {
        const WindowPermutation order(size, 7, 0);
        std::set<int64_t> values;
        for (int64_t i = 0; i < 2000; ++i) {
            const int64_t value = order(size - 1 - i);
            ASSERT_LT(value, size);
            values.insert(value);
        }
        EXPECT_EQ(values.size(), 2000u);
    }
}

TEST(WindowPermutationTest, EveryValueIsEquallyLikelyFirst) {
    // Over 3000 keys, which of 10 windows comes first: each about 300 times (a chi-square
    // statistic of 9 degrees of freedom; 27.9 is its 0.1% quantile).
    std::vector<int> first(10, 0);
    for (uint64_t seed = 0; seed < 300; ++seed)
        for (uint64_t epoch = 0; epoch < 10; ++epoch) ++first[static_cast<size_t>(WindowPermutation(10, seed, epoch)(0))];
    double chi_square = 0;
    for (int count : first) chi_square += (count - 300.0) * (count - 300.0) / 300.0;
    EXPECT_LT(chi_square, 27.9) << ::testing::PrintToString(first);
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

TEST_F(DataLoaderTest, EachRankReadsItsSliceOfTheOneOrder) {
    // Rank r of R reads positions r, R + r, 2R + r, ... of the order a single process reads.
    DataLoader single(options(1));
    std::vector<uint32_t> order;
    for (int64_t i = 0; i < kTotalWindows; ++i) order.push_back(batch_ids(single.next_batch())[0]);
    const int world = 3;
    for (int r = 0; r < world; ++r) {
        DataLoader rank(options(1, r, world));
        for (int64_t i = 0; i < kTotalWindows / world; ++i)
            ASSERT_EQ(batch_ids(rank.next_batch())[0], order[static_cast<size_t>(i * world + r)]) << "rank " << r;
    }
}

TEST_F(DataLoaderTest, ResumeContinuesExactly) {
    // 221 windows per rank = 44 batches of 5 per epoch. Stopped mid-epoch, at the end of the
    // epoch's last batch, and one batch into the next epoch; then 60 batches, across the next
    // epoch boundary, equal those of a loader that never stopped.
    const int batch = 5;
    for (int stop : {20, 44, 45}) {
        SCOPED_TRACE(stop);
        DataLoader continuous(options(batch, 1, 2));
        DataLoader interrupted(options(batch, 1, 2));
        for (int i = 0; i < stop; ++i) {
            continuous.next_batch();
            interrupted.next_batch();
        }
        const DataLoaderState state = interrupted.state();
        EXPECT_EQ(state.epoch, stop / 45);
        EXPECT_EQ(state.window_in_epoch, stop == 45 ? 5 : stop * batch);
        DataLoader resumed(options(batch, 1, 2));
        resumed.restore(state);
        for (int i = 0; i < 60; ++i) ASSERT_EQ(resumed.next_batch(), continuous.next_batch()) << "batch " << i;
        EXPECT_EQ(resumed.epoch(), continuous.epoch());
    }
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

// Evaluation reads the whole split: over 3 ranks the 442 windows split 148/147/147 (rank r takes
// r, r + 3, ...), and each rank's last batch of 5 is short (148 = 29 x 5 + 3; 147 = 29 x 5 + 2).
TEST_F(DataLoaderTest, KeepRemainderReadsEveryWindowOnceOverAllRanks) {
    std::multiset<uint32_t> read;
    for (int rank = 0; rank < 3; ++rank) {
        DataLoaderOptions o = options(5, rank, 3);
        o.shuffle = false;
        o.keep_remainder = true;
        o.role = "validation";
        DataLoader loader(o);
        EXPECT_EQ(loader.total_windows(), kTotalWindows);
        ASSERT_EQ(loader.batches_per_epoch(), 30) << "rank " << rank;
        for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
            const std::vector<uint32_t> ids = batch_ids(loader.next_batch());
            const size_t expected = i < 29 ? 5 : rank == 0 ? 3 : 2;
            ASSERT_EQ(ids.size(), expected) << "rank " << rank << " batch " << i;
            for (uint32_t id : ids) EXPECT_EQ(id / kSeqLen % 3, static_cast<uint32_t>(rank)) << id;
            read.insert(ids.begin(), ids.end());
        }
        EXPECT_EQ(loader.epoch(), 0);
        EXPECT_EQ(batch_ids(loader.next_batch()).front(), static_cast<uint32_t>(rank * kSeqLen));  // next epoch
        EXPECT_EQ(loader.epoch(), 1);
    }
    EXPECT_EQ(read.size(), static_cast<size_t>(kTotalWindows));
    EXPECT_EQ(std::set<uint32_t>(read.begin(), read.end()), all_window_ids());

    // Fewer windows than ranks: the ranks past the last window have nothing to read.
    DataLoaderOptions o = options(4, 2, 3);
    o.shuffle = false;
    o.keep_remainder = true;
    o.max_tokens = 2 * kSeqLen;
    EXPECT_EQ(DataLoader(o).batches_per_epoch(), 0);
    o.rank = 1;
    EXPECT_EQ(DataLoader(o).batches_per_epoch(), 1);
    o.max_tokens = kSeqLen - 1;
    o.role = "validation";
    const std::string message = error_of([&] { DataLoader loader(o); });
    EXPECT_NE(message.find("too little validation data for one window"), std::string::npos) << message;
    EXPECT_NE(message.find("--val-tokens"), std::string::npos) << message;
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
    EXPECT_NE(message.find("holds 3099 tokens in 3 shard(s) = 442 windows"), std::string::npos) << message;
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
    EXPECT_NE(message.find("holds 5 tokens in 1 shard(s) = 0 windows of seq_len+1 = 8 tokens"), std::string::npos)
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
