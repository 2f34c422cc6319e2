// Checkpoint checksums (host/checkpoint.h): a damaged model or state file is an error naming the
// file and the part, and version-1 files without checksums are still read.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "host/checkpoint.h"

#include "tests/checkpoint_test_support.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace checkpoint_test;

namespace {

using test_support::error_of;
using test_support::read_bytes;

TEST_F(CheckpointTest, ModelFileDamageIsAnErrorNamingFileAndPart) {
    const ModelShape shape = tiny_shape();
    const int64_t total = ParamLayout(shape, 0.02).total();
    const std::vector<float> params = random_floats(total, 21);
    const std::string file = path("model_00000010.bin");
    std::vector<float> back(static_cast<size_t>(total));
    const auto expect_damage = [&](int64_t offset, const char* part) {
        SCOPED_TRACE(offset);
        write_model_file(file, shape, 10, params.data());
        verify_model_file(file);
        flip_bit(file, offset, 3);
        const std::string message = error_of([&] { read_model_params(file, shape, back.data(), 0, total); });
        EXPECT_NE(message.find(file + ": the " + std::string(part) + " fail their checksum"), std::string::npos)
            << message;
        EXPECT_EQ(error_of([&] { verify_model_file(file); }), message);
    };
    expect_damage(1024 + 4 * (total / 2), "weights");
    expect_damage(fs::file_size(file) - 1, "weights");
    expect_damage(3 * 4, "header's 1024 bytes");    // n_embd
    expect_damage(12 * 4, "header's 1024 bytes");   // step
    expect_damage(13 * 4, "header's 1024 bytes");   // the weights' checksum itself
    expect_damage(200 * 4, "header's 1024 bytes");  // the unused tail
    // A slice is checked too: the checksum covers all weights.
    write_model_file(file, shape, 10, params.data());
    flip_bit(file, 1024 + 4 * (total - 1));
    EXPECT_NE(error_of([&] { read_model_params(file, shape, back.data(), 0, 5); }).find("weights fail their checksum"),
              std::string::npos);
    // Only a header check is needed to read the header (e.g. -e FILE --print-config).
    EXPECT_EQ(read_model_header(file).step, 10);
}

TEST_F(CheckpointTest, StateFileDamageIsAnErrorNamingFileAndPart) {
    const StateHeader header = sample_state_header();
    const Buffers buffers;
    const std::string file = path("state.bin");
    std::vector<float> a(100), b(100), c(100);
    const std::vector<FloatBuffer> targets = {{"master", a.data(), 100}, {"adam_m", b.data(), 100}, {"adam_v", c.data(), 100}};
    const auto expect_damage = [&](int64_t offset, const char* part) {
        SCOPED_TRACE(offset);
        write_state_file(file, header, buffers.to_write());
        verify_state_file(file);
        flip_bit(file, offset, 6);
        const std::string message = error_of([&] { read_state_file(file, header.identity, targets); });
        EXPECT_NE(message.find(file + ": the " + std::string(part) + " fail their checksum"), std::string::npos)
            << message;
        EXPECT_EQ(error_of([&] { verify_state_file(file); }), message);
    };
    const int64_t values = 192 + 3 * 40;
    expect_damage(values + 4 * 150, "optimizer buffers");  // adam_m
    expect_damage(values + 4 * 299, "optimizer buffers");  // the last value
    expect_damage(64, "header's bytes");                   // the seed: not "written with --seed ..."
    expect_damage(192 + 40 + 2, "header's bytes");         // a buffer's name
    expect_damage(192 + 40 + 32, "header's bytes");        // a buffer's length
}

TEST_F(CheckpointTest, Version1FilesWithoutChecksumsAreStillRead) {
    const ModelShape shape = tiny_shape();
    const int64_t total = ParamLayout(shape, 0.02).total();
    const std::vector<float> params = random_floats(total, 22);
    const std::string model = path("model_v1.bin");
    write_model_file(model, shape, 3, params.data());
    std::vector<char> bytes = read_bytes(model);
    const int32_t v1_header[3] = {1, 0, 0};  // version 1 had zeros where the checksums are
    std::memcpy(bytes.data() + 4, &v1_header[0], 4);
    std::memcpy(bytes.data() + 13 * 4, &v1_header[1], 8);
    std::ofstream(model, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::vector<float> back(static_cast<size_t>(total));
    read_model_params(model, shape, back.data(), 0, total);
    EXPECT_EQ(back, params);
    verify_model_file(model);

    const StateHeader header = sample_state_header();
    const Buffers buffers;
    const std::string state = path("state_v1.bin");
    write_state_file(state, header, buffers.to_write());
    bytes = read_bytes(state);
    std::memcpy(bytes.data() + 4, &v1_header[0], 4);
    std::memcpy(bytes.data() + 56, &v1_header[1], 4);   // header checksum
    std::memcpy(bytes.data() + 188, &v1_header[1], 4);  // data checksum
    std::ofstream(state, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::vector<float> a(100), b(100), c(100);
    EXPECT_EQ(read_state_file(state, header.identity, {{"master", a.data(), 100}, {"adam_m", b.data(), 100}, {"adam_v", c.data(), 100}})
                  .step,
              42);
    EXPECT_EQ(c, buffers.v);
    verify_state_file(state);
}

}  // namespace
