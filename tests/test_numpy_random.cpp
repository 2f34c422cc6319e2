// host/numpy_random and the Hugging Face holdout rule against numpy itself: the seed's
// OpenWebText validation split is default_rng(2357).permutation(n)[:ceil(0.0005 n)], so every
// piece (SeedSequence, PCG64's 64- and 32-bit draws, the bounded draw on both sides of 2^32, the
// shuffle) must give numpy's numbers exactly. tests/numpy_reference.py asks numpy (run by
// $NUMPY_PYTHON, else /usr/bin/python3); without numpy the test is skipped, saying so.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data_prep/src/holdout.h"
#include "data_prep/src/sha256.h"
#include "host/numpy_random.h"
#include "tests/test_support.h"

using Json = nlohmann::json;

namespace {

constexpr uint64_t kTwo32 = uint64_t{1} << 32;
const std::vector<uint64_t> kSeeds = {0, 1, 42, 2357, kTwo32 - 1, kTwo32, (uint64_t{1} << 40) + 1, ~uint64_t{0}};

// numpy's answer to `request` (see tests/numpy_reference.py), or a null Json when numpy is missing.
Json ask_numpy(const Json& request) {
    const test_support::ScratchDir scratch("test_numpy_random");
    const std::string request_path = scratch.file("request.json"), reply_path = scratch.file("reply.json");
    std::ofstream(request_path) << request.dump();
    const char* python = std::getenv("NUMPY_PYTHON");
    const std::string command = std::string(python && *python ? python : "/usr/bin/python3") +
                                " tests/numpy_reference.py < " + request_path + " > " + reply_path;
    const int status = std::system(command.c_str());
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 127)) return Json();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << " failed (run from the repository root)";
    std::ifstream reply(reply_path);
    return Json::parse(reply);
}

#define ASK_NUMPY_OR_SKIP(reply, request)                                                                    \
    const Json reply = ask_numpy(request);                                                               \
    if (reply.is_null())                                                                                 \
        GTEST_SKIP() << "numpy is not importable by " << (std::getenv("NUMPY_PYTHON") ? "$NUMPY_PYTHON" : \
                                                          "/usr/bin/python3")                           \
                     << ": install python3-numpy to compare with numpy"

std::string sha256_of(const std::vector<int64_t>& values) {
    data_prep::Sha256 hash;  // little-endian int64, as numpy's astype("<i8")
    hash.update(values.data(), values.size() * sizeof(int64_t));
    return hash.hex_digest();
}

TEST(NumpyRandomTest, SeedSequenceAndPcg64DrawsEqualNumpys) {
    Json request = {{"seed_state", Json::array()}, {"raw", Json::array()}, {"uint32", Json::array()}};
    for (uint64_t seed : kSeeds) {
        request["seed_state"].push_back({seed, 8});
        request["raw"].push_back({seed, 5});
        request["uint32"].push_back({seed, 7});  // odd: the last draw leaves a kept half
    }
    ASK_NUMPY_OR_SKIP(numpy, request);
    for (size_t i = 0; i < kSeeds.size(); ++i) {
        SCOPED_TRACE("seed " + std::to_string(kSeeds[i]));
        const numpy_random::SeedSequence sequence(kSeeds[i]);
        EXPECT_EQ(Json(sequence.generate_state(8)), numpy["seed_state"][i]);
        numpy_random::Pcg64 raw(sequence);
        std::vector<uint64_t> draws;
        for (int k = 0; k < 5; ++k) draws.push_back(raw.next_uint64());
        EXPECT_EQ(Json(draws), numpy["raw"][i]);
        numpy_random::Pcg64 narrow(sequence);
        std::vector<uint32_t> halves;
        for (int k = 0; k < 7; ++k) halves.push_back(narrow.next_uint32());
        EXPECT_EQ(Json(halves), numpy["uint32"][i]);
    }
}

TEST(NumpyRandomTest, BoundedDrawsEqualNumpysOnBothSidesOf2To32) {
    // numpy's C random_interval (called through ctypes), in one sequence per seed: maxima below,
    // at and above 2^32 - 1, where it switches from 32-bit draws (with the kept half) to 64-bit
    // draws and back, with the kept half surviving the 64-bit draws in between.
    const std::vector<uint64_t> maxima = {0,         1,          2,          3,         5,          100,
                                          65535,     65536,      (1u << 31) - 1, 1u << 31, kTwo32 - 2, kTwo32 - 1,
                                          kTwo32,    kTwo32 + 1, 3,          (kTwo32 << 1) + 7, 5, uint64_t{1} << 40,
                                          (uint64_t{1} << 52) + 3, (uint64_t{1} << 63) - 1, uint64_t{1} << 63,
                                          ~uint64_t{0} - 1, ~uint64_t{0}, 7, kTwo32 - 1, kTwo32, 8013768};
    Json request = {{"interval", Json::array()}};
    for (uint64_t seed : {uint64_t{2357}, uint64_t{0}, kTwo32 + 5}) request["interval"].push_back({seed, maxima});
    ASK_NUMPY_OR_SKIP(numpy, request);
    size_t i = 0;
    for (uint64_t seed : {uint64_t{2357}, uint64_t{0}, kTwo32 + 5}) {
        numpy_random::Generator generator(seed);
        std::vector<uint64_t> values;
        for (uint64_t max : maxima) {
            values.push_back(generator.random_interval(max));
            EXPECT_LE(values.back(), max);
        }
        EXPECT_EQ(Json(values), numpy["interval"][i++]) << "seed " << seed;
    }
}

TEST(NumpyRandomTest, PermutationEqualsNumpysForManySizesAndSeeds) {
    // Sizes around powers of two (the masks), and OpenWebText's 8,013,769 documents.
    std::vector<std::pair<uint64_t, int64_t>> cases;
    for (uint64_t seed : {uint64_t{0}, uint64_t{2357}, (uint64_t{1} << 40) + 1})
        for (int64_t n : {0, 1, 2, 3, 10, 100, 1000, 65536, 65537, 1000003}) cases.emplace_back(seed, n);
    cases.emplace_back(2357, 8013769);
    cases.emplace_back(1, 8013769);
    Json request = {{"permutation", Json::array()}};
    for (const auto& [seed, n] : cases) request["permutation"].push_back({seed, n});
    ASK_NUMPY_OR_SKIP(numpy, request);
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto& [seed, n] = cases[i];
        const std::vector<int64_t> permutation = numpy_random::Generator(seed).permutation(n);
        const std::vector<int64_t> first(permutation.begin(), permutation.begin() + std::min<int64_t>(n, 8));
        EXPECT_EQ(Json(first), numpy["permutation"][i]["first"]) << "seed " << seed << ", n " << n;
        EXPECT_EQ(sha256_of(permutation), numpy["permutation"][i]["sha256"]) << "seed " << seed << ", n " << n;
    }
}

TEST(NumpyRandomTest, HoldoutIsHuggingFacesTestSplit) {
    // n_test = ceil(fraction * n) in Python's float arithmetic, for counts where the product
    // lands near an integer.
    std::vector<std::pair<int64_t, double>> cases;
    for (double fraction : {0.0005, 0.001, 0.01, 0.02, 0.1, 0.2, 0.3})
        for (int64_t n : {int64_t{1} + (fraction < 0.5), int64_t{10}, int64_t{100}, int64_t{1999}, int64_t{2000},
                          int64_t{2001}, int64_t{6000}, int64_t{8013769}, int64_t{1000000007}})
            cases.emplace_back(n, fraction);
    Json request = {{"test_count", Json::array()}, {"permutation", Json::array({{2357, 8013769}})}};
    for (const auto& [n, fraction] : cases) request["test_count"].push_back({n, fraction});
    ASK_NUMPY_OR_SKIP(numpy, request);
    for (size_t i = 0; i < cases.size(); ++i)
        EXPECT_EQ(data_prep::hugging_face_test_count(cases[i].first, cases[i].second), numpy["test_count"][i])
            << cases[i].first << " x " << cases[i].second;

    // The seed's OpenWebText holdout: 4,007 of 8,013,769 documents, in permutation order.
    const data_prep::Holdout owt(8013769, 0.0005, 2357);
    ASSERT_EQ(owt.validation_documents().size(), 4007u);
    const std::vector<int64_t> first(owt.validation_documents().begin(), owt.validation_documents().begin() + 8);
    EXPECT_EQ(Json(first), numpy["permutation"][0]["first"]);
    for (size_t position = 0; position < owt.validation_documents().size(); ++position)
        ASSERT_EQ(owt.validation_position(owt.validation_documents()[position]), static_cast<int64_t>(position));
}

TEST(HoldoutTest, RejectsWhatTrainTestSplitRejects) {
    EXPECT_THROW(data_prep::hugging_face_test_count(100, 0.0), std::invalid_argument);
    EXPECT_THROW(data_prep::hugging_face_test_count(100, 1.0), std::invalid_argument);
    EXPECT_THROW(data_prep::hugging_face_test_count(1, 0.5), std::invalid_argument) << "no document left to train";
    EXPECT_EQ(data_prep::hugging_face_test_count(2, 0.5), 1);
    EXPECT_EQ(data_prep::Holdout(0, 0.01, 2357).validation_documents().size(), 0u);
    const data_prep::Holdout tiny(100, 0.02, 2357);
    EXPECT_EQ(tiny.validation_documents().size(), 2u);
    int trains = 0;
    for (int64_t d = 0; d < 100; ++d) trains += tiny.validation_position(d) < 0;
    EXPECT_EQ(trains, 98);
}

}  // namespace
