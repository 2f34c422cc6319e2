// host/rendezvous.h: rank 0 publishes a payload in a file, atomically; the other ranks wait for a
// whole file, check it, or give up after the timeout; every misuse ends with a message.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "host/rendezvous.h"
#include "tests/test_support.h"

namespace {

using namespace distributed;
using test_support::ScratchDir;

std::vector<char> bytes_of(const std::string& text) { return std::vector<char>(text.begin(), text.end()); }

// A rendezvous file's bytes as rank 0 writes them: magic, world size, payload size, payload.
std::vector<char> rendezvous_file(int32_t world_size, int32_t payload_size, const std::string& payload) {
    std::vector<char> bytes = bytes_of("GPTRDZV1");
    const int32_t sizes[2] = {world_size, payload_size};
    bytes.insert(bytes.end(), reinterpret_cast<const char*>(sizes), reinterpret_cast<const char*>(sizes) + sizeof sizes);
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return bytes;
}

void write_file(const std::string& path, const std::vector<char>& bytes) {
    FILE* file = std::fopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr) << path;
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), file), bytes.size());
    ASSERT_EQ(std::fclose(file), 0);
}

class RendezvousTest : public ::testing::Test {
  protected:
    ScratchDir scratch_{"test_rendezvous"};
    const std::string path_ = scratch_.file("nccl_id");
};

TEST_F(RendezvousTest, TheFlagWinsOverTheEnvironment) {
    test_support::ScopedEnvironment env({"GPT_RENDEZVOUS"});
    EXPECT_EQ(rendezvous_path_from(""), "");
    EXPECT_EQ(rendezvous_path_from("/from/flag"), "/from/flag");
    env.set("GPT_RENDEZVOUS", "/from/env");
    EXPECT_EQ(rendezvous_path_from(""), "/from/env");
    EXPECT_EQ(rendezvous_path_from("/from/flag"), "/from/flag");
}

TEST_F(RendezvousTest, RanksStartedBeforeRankZeroWaitAndAllGetItsPayload) {
    std::vector<char> received[3];
    std::thread readers[2];
    for (int rank = 1; rank <= 2; ++rank)
        readers[rank - 1] = std::thread([&, rank] { received[rank] = rendezvous_broadcast(path_, rank, 3, {}, 20.0); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the readers are polling by now
    const std::vector<char> payload = bytes_of("an id of 18 bytes!");
    received[0] = rendezvous_broadcast(path_, 0, 3, payload, 20.0);
    for (std::thread& reader : readers) reader.join();
    for (const std::vector<char>& got : received) EXPECT_EQ(got, payload);

    // The file holds exactly the documented layout, and rank 0's temporary file is gone (renamed).
    EXPECT_EQ(test_support::read_bytes(path_), rendezvous_file(3, 18, "an id of 18 bytes!"));
    for (const auto& entry : std::filesystem::directory_iterator(scratch_.path))
        EXPECT_EQ(entry.path(), path_) << "left behind: " << entry.path();
}

TEST_F(RendezvousTest, AReaderTakesOnlyAWholeFile) {
    // A file whose header announces more payload than it holds (as a writer without the rename
    // would leave it midway) is not the answer: the reader keeps polling until it is whole.
    write_file(path_, rendezvous_file(2, 6, "abc"));
    std::vector<char> received;
    std::thread reader([&] { received = rendezvous_broadcast(path_, 1, 2, {}, 20.0); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const std::string whole = path_ + ".whole";
    write_file(whole, rendezvous_file(2, 6, "abcdef"));
    ASSERT_EQ(std::rename(whole.c_str(), path_.c_str()), 0);
    reader.join();
    EXPECT_EQ(received, bytes_of("abcdef"));
}

TEST_F(RendezvousTest, AnEmptyPayloadTravelsToo) {
    EXPECT_TRUE(rendezvous_broadcast(path_, 0, 2, {}, 5.0).empty());
    EXPECT_TRUE(rendezvous_broadcast(path_, 1, 2, {}, 5.0).empty());
}

TEST_F(RendezvousTest, RankZeroRefusesAFileLeftFromAnEarlierRun) {
    write_file(path_, rendezvous_file(2, 3, "old"));
    EXPECT_EXIT(rendezvous_broadcast(path_, 0, 2, bytes_of("new"), 5.0), ::testing::ExitedWithCode(EXIT_FAILURE),
                "rank 0: rendezvous file .*nccl_id already exists \\(left over from an earlier run\\?\\): delete it");
}

TEST_F(RendezvousTest, RankZeroSaysWhenItCannotWriteTheFile) {
    EXPECT_EXIT(rendezvous_broadcast(scratch_.file("no/such/directory/id"), 0, 2, bytes_of("id"), 5.0),
                ::testing::ExitedWithCode(EXIT_FAILURE), "rank 0: cannot create rendezvous file .*: No such file");
}

TEST_F(RendezvousTest, AFileThatIsNotARendezvousFileIsRejected) {
    write_file(path_, bytes_of("something else entirely"));
    EXPECT_EXIT(rendezvous_broadcast(path_, 1, 2, {}, 5.0), ::testing::ExitedWithCode(EXIT_FAILURE),
                "rank 1: .*nccl_id is not a rendezvous file written by this program");
}

TEST_F(RendezvousTest, AWorldSizeOtherThanRankZerosIsRejected) {
    write_file(path_, rendezvous_file(3, 2, "id"));
    EXPECT_EXIT(rendezvous_broadcast(path_, 1, 2, {}, 5.0), ::testing::ExitedWithCode(EXIT_FAILURE),
                "written by a run of 3 processes, but this one has WORLD_SIZE=2");
}

TEST_F(RendezvousTest, AReaderGivesUpAfterTheTimeoutAndSaysWhatToCheck) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EXIT(rendezvous_broadcast(path_, 1, 2, {}, 1.0), ::testing::ExitedWithCode(EXIT_FAILURE),
                "rank 1: rank 0 did not publish the rendezvous file .*nccl_id within 1 s: check that rank 0 started");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GE(seconds, 1.0) << "gave up before the timeout";
    EXPECT_LT(seconds, 10.0);
}

}  // namespace
