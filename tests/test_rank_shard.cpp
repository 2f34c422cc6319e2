// host/rank_shard.h: equal, aligned shards that tile a padded flat array, whatever the count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>

#include "host/rank_shard.h"

namespace {

using distributed::Shard;
using distributed::shard_of;

TEST(RankShardTest, KnownLayouts) {
    // 1000 elements over 3 ranks, alignment 128: padded to the next multiple of 3*128 = 384,
    // 1152; shards of 384; rank 2 owns [768, 1152), of which [768, 1000) is real data.
    const Shard a = shard_of(1000, 2, 3, 128);
    EXPECT_EQ(a.padded_count, 1152u);
    EXPECT_EQ(a.shard_count, 384u);
    EXPECT_EQ(a.begin, 768u);
    EXPECT_EQ(a.end, 1152u);
    EXPECT_EQ(a.valid_end, 1000u);
    const Shard exact = shard_of(384, 0, 3, 128);  // an exact multiple: no padding
    EXPECT_EQ(exact.padded_count, 384u);
    EXPECT_EQ(exact.shard_count, 128u);
    EXPECT_EQ(exact.valid_end, 128u);
    const Shard padding_only = shard_of(10, 3, 4, 16);  // rank 3 holds only padding
    EXPECT_EQ(padding_only.padded_count, 64u);
    EXPECT_EQ(padding_only.begin, 48u);
    EXPECT_EQ(padding_only.end, 64u);
    EXPECT_EQ(padding_only.valid_end, 48u);  // an empty valid range starts at its shard
    const Shard empty = shard_of(0, 0, 1, 1);
    EXPECT_EQ(empty.padded_count, 0u);
    EXPECT_EQ(empty.shard_count, 0u);
    EXPECT_EQ(shard_of(1000, 0, 1).padded_count, 1024u);  // default alignment 128
}

TEST(RankShardTest, ShardsTileThePaddedArrayEquallyAndAligned) {
    for (const size_t count : {0ul, 1ul, 127ul, 128ul, 129ul, 1000ul, 12345ul, 124439808ul}) {
        for (int world_size = 1; world_size <= 9; ++world_size) {
            for (const size_t alignment : {1ul, 8ul, 128ul}) {
                SCOPED_TRACE(testing::Message() << "count " << count << ", world " << world_size << ", alignment "
                                                << alignment);
                const size_t granule = world_size * alignment;
                size_t expected_begin = 0, valid_total = 0;
                const Shard first = shard_of(count, 0, world_size, alignment);
                EXPECT_EQ(first.padded_count % granule, 0u);
                EXPECT_GE(first.padded_count, count);
                EXPECT_LT(first.padded_count - count, granule) << "more padding than needed";
                for (int rank = 0; rank < world_size; ++rank) {
                    const Shard shard = shard_of(count, rank, world_size, alignment);
                    EXPECT_EQ(shard.padded_count, first.padded_count);
                    EXPECT_EQ(shard.shard_count * world_size, shard.padded_count);
                    EXPECT_EQ(shard.begin, expected_begin) << "rank " << rank;
                    EXPECT_EQ(shard.end - shard.begin, shard.shard_count);
                    EXPECT_EQ(shard.begin % alignment, 0u);
                    EXPECT_EQ(shard.valid_end, std::clamp(count, shard.begin, shard.end));
                    expected_begin = shard.end;
                    valid_total += shard.valid_end - shard.begin;
                }
                EXPECT_EQ(expected_begin, first.padded_count);
                EXPECT_EQ(valid_total, count) << "every real element is owned exactly once";
            }
        }
    }
}

TEST(RankShardTest, ARankOutsideTheWorldIsAProgrammingError) {
    const auto fails = ::testing::ExitedWithCode(EXIT_FAILURE);
    EXPECT_EXIT(shard_of(100, 2, 2), fails, "requirement failed.*\n.*shard_of: rank 2 of world size 2, alignment 128");
    EXPECT_EXIT(shard_of(100, -1, 2), fails, "shard_of: rank -1 of world size 2");
    EXPECT_EXIT(shard_of(100, 0, 0), fails, "shard_of: rank 0 of world size 0");
    EXPECT_EXIT(shard_of(100, 0, 2, 0), fails, "shard_of: rank 0 of world size 2, alignment 0");
}

}  // namespace
