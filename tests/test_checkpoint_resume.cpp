// Finding checkpoints and choosing the one to resume from (host/checkpoint.h): complete steps
// only, --resume auto / DIR / FILE, and the fallback past damaged checkpoints.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/checkpoint.h"

#include "tests/checkpoint_test_support.h"
#include "tests/test_support.h"

using namespace checkpoint_test;

namespace {

using test_support::error_of;

void touch(const std::string& file) { std::ofstream(file) << "x"; }

// A real checkpoint of tiny_shape() at `step` for `world_size` ranks.
void write_checkpoint(const std::string& dir, int64_t step, int world_size) {
    const std::vector<float> params = random_floats(ParamLayout(tiny_shape(), 0.02).total(), static_cast<unsigned>(step));
    write_model_file(model_file_path(dir, step), tiny_shape(), step, params.data());
    const Buffers buffers;
    for (int rank = 0; rank < world_size; ++rank) {
        StateHeader header = sample_state_header();
        header.identity.rank = rank;
        header.identity.world_size = world_size;
        header.step = step;
        write_state_file(state_file_path(dir, step, rank), header, buffers.to_write());
    }
}

TEST_F(CheckpointTest, LatestCompleteCheckpoint) {
    EXPECT_FALSE(find_latest_checkpoint(path("missing"), 1));
    EXPECT_FALSE(find_latest_checkpoint(dir_, 1));
    touch(model_file_path(dir_, 10));
    touch(state_file_path(dir_, 10, 0));
    touch(state_file_path(dir_, 10, 1));
    touch(model_file_path(dir_, 20));
    touch(state_file_path(dir_, 20, 0));  // rank 1 missing: incomplete
    touch(model_file_path(dir_, 30) + ".tmp");
    touch(path("model_latest.bin"));

    std::optional<CheckpointFiles> latest = find_latest_checkpoint(dir_, 2);
    ASSERT_TRUE(latest);
    EXPECT_EQ(latest->step, 10);
    EXPECT_EQ(latest->model_path, model_file_path(dir_, 10));
    EXPECT_EQ(latest->state_paths, (std::vector<std::string>{state_file_path(dir_, 10, 0), state_file_path(dir_, 10, 1)}));
    latest = find_latest_checkpoint(dir_, 1);
    ASSERT_TRUE(latest);
    EXPECT_EQ(latest->step, 20);
}

TEST_F(CheckpointTest, LocateResumeCheckpoint) {
    EXPECT_FALSE(locate_resume_checkpoint("", dir_, 1));
    EXPECT_FALSE(locate_resume_checkpoint("auto", dir_, 1));  // nothing yet: a fresh start
    EXPECT_THROW(locate_resume_checkpoint(dir_, "", 1), std::runtime_error);
    write_checkpoint(dir_, 100, 1);
    write_checkpoint(dir_, 200, 1);
    EXPECT_EQ(locate_resume_checkpoint("auto", dir_, 1)->step, 200);
    EXPECT_EQ(locate_resume_checkpoint(dir_, "elsewhere", 1)->step, 200);
    const std::optional<CheckpointFiles> chosen = locate_resume_checkpoint(model_file_path(dir_, 100), "", 1);
    ASSERT_TRUE(chosen);
    EXPECT_EQ(chosen->step, 100);
    EXPECT_EQ(chosen->state_paths.at(0), state_file_path(dir_, 100, 0));
    std::string message = error_of([&] { locate_resume_checkpoint(model_file_path(dir_, 100), "", 2); });
    EXPECT_NE(message.find("state_00000100_rank00001.bin is missing"), std::string::npos) << message;
    message = error_of([&] { locate_resume_checkpoint(path("model_00000300.bin"), "", 1); });
    EXPECT_NE(message.find("no such file"), std::string::npos) << message;
    message = error_of([&] { locate_resume_checkpoint(path("weights.pt"), "", 1); });
    EXPECT_NE(message.find("expected 'auto'"), std::string::npos) << message;
}

// --eval-only reads the model file alone: world size 0 asks for no state file, so checkpoints
// of runs on any number of GPUs, and a model file without its state, can all be evaluated.
TEST_F(CheckpointTest, LocateWeightsOnlyForEvaluation) {
    write_checkpoint(dir_, 100, 2);
    write_checkpoint(dir_, 200, 4);
    const std::vector<float> params = random_floats(ParamLayout(tiny_shape(), 0.02).total(), 300);
    write_model_file(model_file_path(dir_, 300), tiny_shape(), 300, params.data());
    EXPECT_EQ(locate_resume_checkpoint("auto", dir_, 1)->step, 200);  // training needs state files: 300 has none
    std::optional<CheckpointFiles> found = locate_resume_checkpoint("auto", dir_, 0);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->step, 300);
    EXPECT_TRUE(found->state_paths.empty());
    found = locate_resume_checkpoint(model_file_path(dir_, 100), "", 0);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->step, 100);
    EXPECT_TRUE(found->state_paths.empty());
    flip_bit(model_file_path(dir_, 300), 4096);  // a damaged newest one: the one before it
    EXPECT_EQ(locate_resume_checkpoint(dir_, "", 0)->step, 200);
}

TEST_F(CheckpointTest, ResumeAutoFallsBackToTheNewestIntactCheckpoint) {
    write_checkpoint(dir_, 100, 2);
    write_checkpoint(dir_, 200, 2);
    write_checkpoint(dir_, 300, 2);
    flip_bit(model_file_path(dir_, 300), 2000);          // step 300: a weight
    flip_bit(state_file_path(dir_, 200, 1), 192 + 150);  // step 200: rank 1's state
    testing::internal::CaptureStderr();
    std::optional<CheckpointFiles> chosen = locate_resume_checkpoint("auto", dir_, 2);
    std::string said = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(chosen);
    EXPECT_EQ(chosen->step, 100);
    EXPECT_NE(said.find("skipping the damaged checkpoint of step 300: " + model_file_path(dir_, 300) +
                        ": the weights fail their checksum"),
              std::string::npos)
        << said;
    EXPECT_NE(said.find("skipping the damaged checkpoint of step 200: " + state_file_path(dir_, 200, 1)), std::string::npos)
        << said;
    EXPECT_NE(said.find("resuming from step 100, the newest intact checkpoint in " + dir_), std::string::npos) << said;
    EXPECT_EQ(locate_resume_checkpoint(dir_, "", 2)->step, 100) << "--resume DIR falls back too";

    // With a verdict per process: rank 0 checks only its own state file, which is intact at
    // step 200; the callback (an all-reduce in the trainer) brings in rank 1's damage.
    std::vector<bool> rank0_verdicts;
    const AllRanksIntact rank1_sees_step_200_damaged = [&](bool rank0_intact) {
        rank0_verdicts.push_back(rank0_intact);
        return rank0_intact && rank0_verdicts.size() != 2;
    };
    testing::internal::CaptureStderr();
    chosen = locate_resume_checkpoint("auto", dir_, 2, 0, rank1_sees_step_200_damaged);
    testing::internal::GetCapturedStderr();
    EXPECT_EQ(chosen->step, 100);
    EXPECT_EQ(rank0_verdicts, (std::vector<bool>{false, true, true}));

    // Checkpoints that are all damaged: an error, not a fresh start over the run.
    flip_bit(model_file_path(dir_, 100), 1024 + 8);
    testing::internal::CaptureStderr();
    const std::string message = error_of([&] { locate_resume_checkpoint("auto", dir_, 2); });
    testing::internal::GetCapturedStderr();
    EXPECT_NE(message.find("--resume auto: no intact checkpoint in " + dir_), std::string::npos) << message;
    EXPECT_NE(message.find("step 100: " + model_file_path(dir_, 100)), std::string::npos) << message;
}

}  // namespace
