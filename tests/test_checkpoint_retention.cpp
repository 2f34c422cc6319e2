// Checkpoint retention as the seed's two checkpoint callbacks (the newest, the 3 best by
// validation loss, progress checkpoints for good), never the one resumed from; the run
// directory's checkpoints and logged validation losses; the size of a checkpoint and the disk
// space check.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "host/checkpoint_retention.h"
#include "host/config.h"
#include "tests/test_support.h"

namespace {

using test_support::error_of;

std::vector<CheckpointRecord> every_thousand(const std::vector<double>& losses) {
    std::vector<CheckpointRecord> records;
    for (size_t i = 0; i < losses.size(); ++i) {
        CheckpointRecord record;
        record.step = static_cast<int64_t>(i + 1) * 1000;
        if (!std::isnan(losses[i])) record.val_loss = losses[i];
        records.push_back(record);
    }
    return records;
}

TEST(CheckpointRetentionTest, KeepsTheNewestTheBestAndTheProgressCheckpoints) {
    // Steps 1000..10000; the best losses are at 4000, 6000 and 7000; progress every 5000.
    const auto records = every_thousand({3.9, 3.5, 3.3, 3.0, 3.2, 2.9, 2.95, 3.05, 3.1, 3.2});
    const RetentionPolicy policy{3, 5000};
    EXPECT_EQ(checkpoints_to_delete(records, policy, std::nullopt),
              (std::vector<int64_t>{1000, 2000, 3000, 8000, 9000}));
    // The checkpoint resumed from stays, whatever its loss.
    EXPECT_EQ(checkpoints_to_delete(records, policy, 2000), (std::vector<int64_t>{1000, 3000, 8000, 9000}));
    // Without progress checkpoints 5000 goes too; with keep_best 0 only the newest stays.
    EXPECT_EQ(checkpoints_to_delete(records, {3, 0}, std::nullopt),
              (std::vector<int64_t>{1000, 2000, 3000, 5000, 8000, 9000}));
    EXPECT_EQ(checkpoints_to_delete(records, {0, 0}, std::nullopt),
              (std::vector<int64_t>{1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000}));
    // "all" deletes nothing.
    EXPECT_TRUE(checkpoints_to_delete(records, {kKeepAllCheckpoints, 5000}, std::nullopt).empty());
    EXPECT_TRUE(checkpoints_to_delete({}, policy, std::nullopt).empty());
}

TEST(CheckpointRetentionTest, TiesKeepTheEarlierAndUnscoredCheckpointsAreNeverBest) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // 2000 and 4000 tie at 3.0; 1000 and 5000 have no loss; 6000 is the newest, the end of a run
    // at a step that is no multiple of 1000 (the final checkpoint).
    std::vector<CheckpointRecord> records = every_thousand({nan, 3.0, 3.1, 3.0, nan, 2.0});
    records.back().step = 5500;
    records[2].val_loss = std::numeric_limits<double>::infinity();
    EXPECT_EQ(checkpoints_to_delete(records, {1, 0}, std::nullopt), (std::vector<int64_t>{1000, 2000, 3000, 4000, 5000}))
        << "the best (2.0) is the newest too";
    records.back().val_loss.reset();
    EXPECT_EQ(checkpoints_to_delete(records, {1, 0}, std::nullopt), (std::vector<int64_t>{1000, 3000, 4000, 5000}))
        << "of the tie at 3.0, the earlier step stays; infinity and no loss never count";
}

TEST(CheckpointRetentionTest, ReadsTheRunDirectory) {
    const test_support::ScratchDir scratch("test_checkpoint_retention");
    const std::string dir = scratch.path.string();
    ModelShape shape;
    shape.n_layer = 1;
    shape.n_embd = 64;
    shape.n_head = 1;
    shape.max_seq_len = 8;
    shape.vocab_size = 16;
    shape.padded_vocab_size = 16;
    const int64_t params = ParamLayout(shape, 0.02).total();
    const std::vector<float> weights(static_cast<size_t>(params), 0.0f);
    for (int64_t step : {1000, 2000, 3000}) {
        write_model_file(model_file_path(dir, step), shape, step, weights.data());
        for (int rank = 0; rank < 2; ++rank) {
            StateHeader header;
            header.identity.shape = shape;
            header.identity.rank = rank;
            header.identity.world_size = 2;
            header.step = step;
            if (step == 2000 && rank == 1) continue;  // an interrupted checkpoint: not complete
            write_state_file(state_file_path(dir, step, rank), header, {{"master", weights.data(), 5}});
        }
    }
    {
        std::ofstream log(dir + "/log.jsonl");
        log << R"({"event":"train","step":1000,"loss":3.5})" << "\n"
            << R"({"event":"val","step":1000,"loss":3.25,"ppl":25.8})" << "\n"
            << R"({"event":"val","step":3000,"loss":null,"ppl":null})" << "\n"
            << R"({"event":"val","step":1000,"loss":3.0,"ppl":20.1})" << "\n"  // a resumed run's later line wins
            << R"({"event":"val","step":30)";                                    // cut short by a crash
    }
    const std::vector<CheckpointRecord> records = list_checkpoints(dir, 2);
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].step, 1000);
    EXPECT_EQ(records[0].val_loss, 3.0);
    EXPECT_EQ(records[1].step, 3000);
    EXPECT_FALSE(records[1].val_loss.has_value()) << "a null (non-finite) loss is no loss";

    delete_checkpoint(dir, 1000, 2);
    EXPECT_FALSE(std::filesystem::exists(model_file_path(dir, 1000)));
    EXPECT_FALSE(std::filesystem::exists(state_file_path(dir, 1000, 1)));
    EXPECT_EQ(list_checkpoints(dir, 2).size(), 1u);
    delete_checkpoint(dir, 2000, 2);  // half there: what exists goes
    EXPECT_FALSE(std::filesystem::exists(model_file_path(dir, 2000)));

    std::ofstream(dir + "/log.jsonl") << "not json\n{\"event\":\"val\",\"step\":1,\"loss\":1}\n";
    EXPECT_NE(error_of([&] { logged_validation_losses(dir + "/log.jsonl"); }).find("log.jsonl:1 is not a JSON line"),
              std::string::npos);
    EXPECT_TRUE(logged_validation_losses(dir + "/missing.jsonl").empty());
}

TEST(CheckpointRetentionTest, SizeAndDiskSpace) {
    // gpt2s: 124,475,904 parameters (padded vocabulary) in fp32, then per rank three buffers.
    const TrainConfig gpt2s = parse_args({"-e", "gpt2s"}, ParseContext{"", 0}).config;
    const int64_t n = gpt2s.num_params;
    EXPECT_EQ(checkpoint_bytes(gpt2s.model_shape(), n, 1), 1024 + 4 * n + state_file_bytes({n, n, n}));
    EXPECT_EQ(checkpoint_bytes(gpt2s.model_shape(), n / 8, 8), 1024 + 4 * n + 8 * state_file_bytes({n / 8, n / 8, n / 8}));
    EXPECT_GT(state_file_bytes({n, n, n}), 12 * n);

    const test_support::ScratchDir scratch("test_checkpoint_retention");
    const std::string dir = scratch.path.string();
    const int64_t free_bytes = free_disk_bytes(dir);
    EXPECT_GT(free_bytes, 0);
    EXPECT_NO_THROW(check_disk_space(dir, 1));
    const std::string message = error_of([&] { check_disk_space(dir, free_bytes + (int64_t{1} << 40)); });
    EXPECT_NE(message.find("the next checkpoint needs "), std::string::npos) << message;
    EXPECT_NE(message.find(" in " + dir + " but only "), std::string::npos) << message;
    EXPECT_NE(message.find("--keep-best-checkpoints"), std::string::npos) << message;
    EXPECT_EQ(disk_space_problem(dir, 1500000000, 1000000000),
              "the next checkpoint needs 1.50 GB in " + dir + " but only 1.00 GB are free: free some space, give "
              "another --out-dir, or keep fewer checkpoints (--keep-best-checkpoints, --keep-checkpoint-every, "
              "--checkpoint-every)");
    EXPECT_NE(error_of([&] { free_disk_bytes(dir + "/no/such/dir"); }).find("cannot read the free space of"),
              std::string::npos);
}

TEST(CheckpointRetentionTest, PresetsKeepCheckpointsAsTheSeed) {
    // model_checkpoint: every 1000 steps, save_top_k 3 on val/loss; model_checkpoint_progress:
    // every 50000 steps, 12500 for gpt3xl-flash and the 2.7B runs built on it.
    const auto config = [](const std::string& name) { return parse_args({"-e", name}, ParseContext{"", 0}).config; };
    for (const char* name : {"gpt2s", "gpt2xl", "gpt3s-rotary-30B", "gpt3l-8k"}) {
        const TrainConfig c = config(name);
        EXPECT_EQ(c.checkpoint_every, 1000) << name;
        EXPECT_EQ(c.checkpoint_retention().keep_best, 3) << name;
        EXPECT_EQ(c.checkpoint_retention().keep_every, 50000) << name;
    }
    for (const char* name : {"gpt3xl", "gpt3xl-rotary-60B", "gpt3-2.7B", "gpt3-2.7B-hdim128-rotary-8k"}) {
        EXPECT_EQ(config(name).checkpoint_every, 1000) << name;
        EXPECT_EQ(config(name).keep_checkpoint_every, 12500) << name;
    }
    EXPECT_EQ(config("d12").keep_best_checkpoints, kKeepAllCheckpoints) << "dN deletes nothing";
    const TrainConfig flags =
        parse_args({"-e", "gpt2s", "--keep-best-checkpoints", "all", "--keep-checkpoint-every", "0"}, ParseContext{"", 0})
            .config;
    EXPECT_EQ(flags.checkpoint_retention().keep_best, kKeepAllCheckpoints);
    EXPECT_EQ(flags.checkpoint_retention().keep_every, 0);
    EXPECT_EQ(parse_args({"-e", "d12", "--keep-best-checkpoints", "5"}, ParseContext{"", 0}).config.keep_best_checkpoints,
              5);
}

}  // namespace
