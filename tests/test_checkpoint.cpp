// Checkpoint files (host/checkpoint.h): model and state file round trips and every rejection
// path. Damage and checksums: test_checkpoint_checksums.cpp; resuming: test_checkpoint_resume.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/crc32c.h"
#include "host/shard.h"

#include "tests/checkpoint_test_support.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace checkpoint_test;

namespace {

using test_support::error_of;
using test_support::read_bytes;

void truncate_by(const std::string& path, uintmax_t bytes) { fs::resize_file(path, fs::file_size(path) - bytes); }

// Makes a model file's header checksum ([14]) match its header again after an edit.
void rewrite_model_header_checksum(const std::string& file) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    int32_t header[256];
    f.read(reinterpret_cast<char*>(header), sizeof(header));
    const uint32_t checksum = model_header_checksum(header);
    f.seekp(14 * 4);
    f.write(reinterpret_cast<const char*>(&checksum), 4);
}

// ---------------------------------------------------------------------------------------------
// Model file

TEST_F(CheckpointTest, ModelFileRoundTripIsBitExact) {
    ModelShape shape = tiny_shape();
    shape.learned_pos_emb = false;
    shape.rotary_dim = 2;
    shape.rotary_base = 500000;
    shape.rotary_interleaved = true;
    shape.fp32_residual = true;
    const int64_t total = ParamLayout(shape, 0.02).total();
    const std::vector<float> params = random_floats(total, 1);
    const std::string file = model_file_path(dir_, 1234);
    EXPECT_EQ(fs::path(file).filename(), "model_00001234.bin");
    write_model_file(file, shape, 1234, params.data());
    EXPECT_FALSE(fs::exists(file + ".tmp"));
    EXPECT_EQ(fs::file_size(file), 1024 + 4 * static_cast<uintmax_t>(total));

    const ModelFileHeader header = read_model_header(file);
    EXPECT_TRUE(header.shape == shape);
    EXPECT_EQ(header.step, 1234);
    std::vector<float> back(static_cast<size_t>(total), -1.0f);
    read_model_params(file, shape, back.data(), 0, total);
    EXPECT_EQ(std::memcmp(back.data(), params.data(), params.size() * sizeof(float)), 0);

    std::vector<float> slice(10);
    read_model_params(file, shape, slice.data(), 37, 10);
    EXPECT_EQ(std::memcmp(slice.data(), params.data() + 37, 10 * sizeof(float)), 0);
    EXPECT_THROW(read_model_params(file, shape, slice.data(), total - 5, 10), std::out_of_range);
}

TEST_F(CheckpointTest, HeaderLayoutIsAsDocumented) {
    ModelShape shape = tiny_shape();
    shape.post_norm = true;
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 2);
    const std::string file = path("m.bin");
    write_model_file(file, shape, 77, params.data());
    const std::vector<char> bytes = read_bytes(file);
    int32_t header[256];
    std::memcpy(header, bytes.data(), sizeof(header));
    EXPECT_EQ(header[0], 20261127);
    EXPECT_EQ(header[1], 2);
    EXPECT_EQ(header[2], 2);
    EXPECT_EQ(header[3], 8);
    EXPECT_EQ(header[4], 2);
    EXPECT_EQ(header[5], 16);
    EXPECT_EQ(header[6], 50);
    EXPECT_EQ(header[7], 64);
    EXPECT_EQ(header[8], 1 | 2 | 8);  // learned_pos_emb, post_norm, scale_attn_by_inverse_layer_idx
    EXPECT_EQ(header[9], 0);
    EXPECT_EQ(header[10], 10000);
    EXPECT_EQ(header[11], 0);
    EXPECT_EQ(header[12], 77);
    EXPECT_EQ(static_cast<uint32_t>(header[13]), crc32c_extend(0, bytes.data() + 1024, bytes.size() - 1024));
    const uint32_t header_checksum = static_cast<uint32_t>(header[14]);
    header[14] = 0;
    EXPECT_EQ(header_checksum, crc32c_extend(0, header, sizeof(header)));
    for (int i = 15; i < 256; ++i) EXPECT_EQ(header[i], 0) << i;
    float first;
    std::memcpy(&first, bytes.data() + 1024, 4);
    EXPECT_EQ(first, params[0]);
}

TEST_F(CheckpointTest, StreamingWriterMatchesOneShotWriter) {
    const ModelShape shape = tiny_shape();
    const int64_t total = ParamLayout(shape, 0.02).total();
    const std::vector<float> params = random_floats(total, 3);
    write_model_file(path("a.bin"), shape, 5, params.data());
    ModelFileWriter writer(path("b.bin"), shape, 5);
    for (int64_t offset = 0; offset < total; offset += 100)
        writer.write(params.data() + offset, std::min<int64_t>(100, total - offset));
    writer.commit();
    EXPECT_EQ(read_bytes(path("a.bin")), read_bytes(path("b.bin")));
}

TEST_F(CheckpointTest, UnfinishedWriterLeavesNothing) {
    const ModelShape shape = tiny_shape();
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 4);
    {
        ModelFileWriter writer(path("m.bin"), shape, 1);
        writer.write(params.data(), 10);
        EXPECT_THROW(writer.commit(), std::logic_error);  // too few floats
    }
    EXPECT_FALSE(fs::exists(path("m.bin")));
    EXPECT_FALSE(fs::exists(path("m.bin.tmp")));
    ModelFileWriter writer(path("m2.bin"), shape, 1);
    EXPECT_THROW(writer.write(params.data(), static_cast<int64_t>(params.size()) + 1), std::logic_error);
}

TEST_F(CheckpointTest, WriteToMissingDirectoryNamesTheFile) {
    const ModelShape shape = tiny_shape();
    const std::vector<float> params(ParamLayout(shape, 0.02).total());
    const std::string file = path("no/such/dir/model.bin");
    const std::string message = error_of([&] { write_model_file(file, shape, 1, params.data()); });
    EXPECT_NE(message.find(file), std::string::npos) << message;
}

TEST_F(CheckpointTest, TruncatedModelFileIsRejected) {
    const ModelShape shape = tiny_shape();
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 5);
    const std::string file = path("m.bin");
    write_model_file(file, shape, 1, params.data());
    truncate_by(file, 4);
    std::string message = error_of([&] { read_model_header(file); });
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    EXPECT_NE(message.find(file), std::string::npos) << message;
    fs::resize_file(file, 100);  // inside the header
    message = error_of([&] { read_model_header(file); });
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    fs::resize_file(file, 0);
    message = error_of([&] { read_model_header(file); });
    EXPECT_NE(message.find("empty"), std::string::npos) << message;
}

TEST_F(CheckpointTest, WrongFilesSayWhatTheyAre) {
    const std::string shard_path = path("tiny_train_000000.bin");
    shard::write_shard(shard_path, std::vector<uint32_t>(100, 7));
    std::string message = error_of([&] { read_model_header(shard_path); });
    EXPECT_NE(message.find("is not a model checkpoint"), std::string::npos) << message;
    EXPECT_NE(message.find("token shard"), std::string::npos) << message;
    EXPECT_NE(message.find("train_gpt2cu"), std::string::npos) << message;

    const std::string text_path = path("notes.txt");
    std::ofstream(text_path) << "hello world, this is not a checkpoint at all";
    message = error_of([&] { read_model_header(text_path); });
    EXPECT_NE(message.find("is not a model checkpoint: magic 1819043176, expected 20261127"), std::string::npos) << message;

    const std::string missing = path("missing.bin");
    message = error_of([&] { read_model_header(missing); });
    EXPECT_NE(message.find(missing), std::string::npos) << message;
}

TEST_F(CheckpointTest, WrongVersionOrDtypeIsRejected) {
    const ModelShape shape = tiny_shape();
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 6);
    const std::string file = path("m.bin");
    for (int field : {1, 11}) {
        write_model_file(file, shape, 1, params.data());
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(field * 4);
        const int32_t bad = 7;
        f.write(reinterpret_cast<const char*>(&bad), 4);
        f.close();
        rewrite_model_header_checksum(file);  // a well-formed file of an unsupported kind, not damage
        const std::string message = error_of([&] { read_model_header(file); });
        EXPECT_NE(message.find(field == 1 ? "version 7" : "dtype 7"), std::string::npos) << message;
    }
}

// Found by fuzz/model_file_fuzzer: a version-1 header with n_layer 167772159 and n_embd
// 33554436 (fuzz/regressions/model_file_fuzzer/) overflowed int64 in the parameter count
// (undefined behaviour) before the size check could reject it. With or without a header checksum
// (version 2 / version 1), a shape beyond the limits (host/model_limits.h) is a corrupt header,
// named by its field.
TEST_F(CheckpointTest, HugeShapesAreACorruptHeaderNotAnOverflow) {
    const std::string found = "fuzz/regressions/model_file_fuzzer/huge_shape_overflows_param_count";
    ASSERT_TRUE(fs::exists(found)) << found << " (run the tests from the repository root)";
    EXPECT_EQ(error_of([&] { read_model_header(found); }),
              found + " has a corrupt model header: n_layer 167772159 is out of range [1, 1024]");

    const ModelShape shape = tiny_shape();
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 9);
    const std::string file = path("m.bin");
    struct HugeField {
        int index;  // in the header
        const char* name;
        int32_t value;
    };
    for (int version : {1, 2}) {
        for (const HugeField& huge : {HugeField{3, "n_embd", 167772159}, HugeField{2, "n_layer", 1 << 30},
                                      HugeField{5, "max_seq_len", INT32_MAX}, HugeField{7, "padded_vocab_size", INT32_MAX}}) {
            SCOPED_TRACE(std::to_string(version) + " " + huge.name);
            write_model_file(file, shape, 1, params.data());
            std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(4);
            f.write(reinterpret_cast<const char*>(&version), 4);
            f.seekp(huge.index * 4);
            f.write(reinterpret_cast<const char*>(&huge.value), 4);
            f.close();
            if (version == 2) rewrite_model_header_checksum(file);
            const std::string message = error_of([&] { read_model_header(file); });
            EXPECT_NE(message.find(file + " has a corrupt model header: " + huge.name + " " + std::to_string(huge.value) +
                                   " is out of range ["),
                      std::string::npos)
                << message;
        }
    }
}

TEST_F(CheckpointTest, ShapeMismatchNamesFieldAndFlag) {
    const ModelShape shape = tiny_shape();
    const std::vector<float> params = random_floats(ParamLayout(shape, 0.02).total(), 7);
    const std::string file = path("m.bin");
    write_model_file(file, shape, 1, params.data());
    std::vector<float> dst(params.size());
    ModelShape other = shape;
    other.n_layer = 3;
    std::string message = error_of([&] { read_model_params(file, other, dst.data(), 0, 1); });
    EXPECT_EQ(message, "checkpoint " + file + " has n_layer 2 but this run has 3 (--n-layer)");
    other = shape;
    other.post_norm = true;
    message = error_of([&] { read_model_params(file, other, dst.data(), 0, 1); });
    EXPECT_NE(message.find("post_norm off but this run has it on (--post-norm 1)"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// State file

TEST_F(CheckpointTest, StateFileRoundTrip) {
    const StateHeader header = sample_state_header();
    const Buffers buffers;
    const std::string file = state_file_path(dir_, 42, 1);
    EXPECT_EQ(fs::path(file).filename(), "state_00000042_rank00001.bin");
    write_state_file(file, header, buffers.to_write());
    EXPECT_FALSE(fs::exists(file + ".tmp"));

    std::vector<float> master(100), m(100), v(100);
    const StateHeader back = read_state_file(
        file, header.identity, {{"master", master.data(), 100}, {"adam_m", m.data(), 100}, {"adam_v", v.data(), 100}});
    EXPECT_TRUE(back.identity.shape == header.identity.shape);
    EXPECT_EQ(back.step, 42);
    EXPECT_EQ(back.adam_step, 40);
    EXPECT_EQ(back.rng_state, header.rng_state);
    EXPECT_EQ(back.loss_scale, 32768.0);
    EXPECT_EQ(back.clean_steps, 17);
    EXPECT_EQ(std::memcmp(&back.train_loader, &header.train_loader, sizeof(DataLoaderState)), 0);
    EXPECT_EQ(master, buffers.master);
    EXPECT_EQ(m, buffers.m);
    EXPECT_EQ(v, buffers.v);
}

TEST_F(CheckpointTest, StateFileRejections) {
    const StateHeader header = sample_state_header();
    const Buffers buffers;
    const std::string file = path("state.bin");
    write_state_file(file, header, buffers.to_write());
    std::vector<float> a(100), b(100), c(100);
    const std::vector<FloatBuffer> targets = {{"master", a.data(), 100}, {"adam_m", b.data(), 100}, {"adam_v", c.data(), 100}};
    auto read_with = [&](RunIdentity identity, std::vector<FloatBuffer> expected) {
        return error_of([&] { read_state_file(file, identity, expected); });
    };

    RunIdentity identity = header.identity;
    identity.world_size = 4;
    EXPECT_NE(read_with(identity, targets).find("run of 2 process(es), this run has 4"), std::string::npos);
    identity = header.identity;
    identity.seed = 7;
    EXPECT_NE(read_with(identity, targets).find("--seed 1111 but this run has --seed 7"), std::string::npos);
    identity = header.identity;
    identity.zero_stage = 2;
    EXPECT_NE(read_with(identity, targets).find("--zero-stage 1"), std::string::npos);
    identity = header.identity;
    identity.shape.n_embd = 16;
    identity.shape.n_head = 2;
    EXPECT_NE(read_with(identity, targets).find("has n_embd 8 but this run has 16 (--n-embd)"), std::string::npos);
    EXPECT_NE(read_with(header.identity, {targets[0], targets[1]}).find("holds 3 optimizer buffers"),
              std::string::npos);
    EXPECT_NE(read_with(header.identity, {targets[0], {"adam_m", b.data(), 50}, targets[2]})
                  .find("holds 100 floats of 'adam_m', this run needs 50"),
              std::string::npos);
    EXPECT_NE(read_with(header.identity, {targets[0], targets[2], targets[1]}).find("holds buffer 'adam_m'"),
              std::string::npos);

    truncate_by(file, 1);
    const std::string message = read_with(header.identity, targets);
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    EXPECT_NE(message.find(file), std::string::npos) << message;

    const std::vector<float> params = random_floats(ParamLayout(tiny_shape(), 0.02).total(), 8);
    write_model_file(path("model.bin"), tiny_shape(), 1, params.data());
    const std::string wrong = error_of([&] { read_state_file(path("model.bin"), header.identity, targets); });
    EXPECT_NE(wrong.find("is not an optimizer state file (it is a model file"), std::string::npos) << wrong;
}

}  // namespace
