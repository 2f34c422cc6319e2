// Checkpoint files: parameter layout, model/state round trips, and every rejection path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/crc32c.h"
#include "host/shard.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

using test_support::error_of;
using test_support::read_bytes;

class CheckpointTest : public ::testing::Test {
  protected:
    std::string path(const std::string& name) const { return scratch_.file(name); }
    test_support::ScratchDir scratch_{"test_checkpoint"};
    const std::string dir_ = scratch_.path.string();
};

ModelShape tiny_shape() {
    ModelShape shape;
    shape.n_layer = 2;
    shape.n_embd = 8;
    shape.n_head = 2;
    shape.max_seq_len = 16;
    shape.vocab_size = 50;
    shape.padded_vocab_size = 64;
    shape.scale_attn_by_inverse_layer_idx = true;
    return shape;
}

ModelShape gpt2_small_shape(int padded_vocab) {
    ModelShape shape;
    shape.n_layer = 12;
    shape.n_embd = 768;
    shape.n_head = 12;
    shape.max_seq_len = 1024;
    shape.vocab_size = 50257;
    shape.padded_vocab_size = padded_vocab;
    return shape;
}

std::vector<float> random_floats(int64_t count, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = normal(rng);
    return values;
}

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
// Layout

TEST(CheckpointLayoutTest, Gpt2SmallParameterCount) {
    // 124,475,904 with the vocabulary padded to 50304 (128), 124,445,184 = the 124.4M of
    // experiments.md with padding to 8 (50264).
    EXPECT_EQ(ParamLayout(gpt2_small_shape(50304), 0.02).total(), 124475904);
    EXPECT_EQ(ParamLayout(gpt2_small_shape(50264), 0.02).total(), 124445184);
}

TEST(CheckpointLayoutTest, OrderShapesAndOffsetsAreContiguous) {
    const ModelShape shape = tiny_shape();
    const ParamLayout layout(shape, 0.02);
    const std::vector<std::string> names = {"wte",       "wpe",         "ln1_w", "ln1_b", "qkv_w",
                                            "qkv_b",     "attn_proj_w", "attn_proj_b", "ln2_w", "ln2_b",
                                            "fc_w",      "fc_b",        "fc_proj_w",   "fc_proj_b", "lnf_w",
                                            "lnf_b"};
    ASSERT_EQ(layout.tensors().size(), names.size());
    int64_t offset = 0;
    for (size_t i = 0; i < names.size(); ++i) {
        const ParamTensor& t = layout.tensors()[i];
        EXPECT_EQ(t.name, names[i]);
        EXPECT_EQ(t.offset, offset) << t.name;
        int64_t numel = 1;
        for (int64_t d : t.shape) numel *= d;
        EXPECT_EQ(t.numel, numel) << t.name;
        EXPECT_EQ(t.per_layer, t.shape.size() >= 2 && t.name != "wte" && t.name != "wpe") << t.name;
        offset += t.numel;
    }
    EXPECT_EQ(layout.total(), offset);
    EXPECT_EQ(layout.get("wte").shape, (std::vector<int64_t>{64, 8}));
    EXPECT_EQ(layout.get("wpe").shape, (std::vector<int64_t>{16, 8}));
    EXPECT_EQ(layout.get("qkv_w").shape, (std::vector<int64_t>{2, 24, 8}));
    EXPECT_EQ(layout.get("fc_proj_w").shape, (std::vector<int64_t>{2, 8, 32}));
    EXPECT_EQ(layout.get("lnf_b").shape, (std::vector<int64_t>{8}));
    const ParamTensor& fc_b = layout.get("fc_b");
    EXPECT_EQ(layout.layer_offset(fc_b, 1), fc_b.offset + 32);
    EXPECT_THROW(layout.layer_offset(fc_b, 2), std::out_of_range);
    EXPECT_THROW(layout.layer_offset(layout.get("wte"), 0), std::invalid_argument);
    EXPECT_THROW(layout.get("lm_head"), std::out_of_range);
}

TEST(CheckpointLayoutTest, OptionalTensors) {
    ModelShape shape = tiny_shape();
    shape.learned_pos_emb = false;
    shape.post_norm = true;
    const ParamLayout layout(shape, 0.02);
    EXPECT_EQ(layout.find("wpe"), nullptr);
    EXPECT_EQ(layout.find("lnf_w"), nullptr);
    EXPECT_EQ(layout.find("lnf_b"), nullptr);
    EXPECT_EQ(layout.tensors().front().name, "wte");
    EXPECT_EQ(layout.tensors()[1].name, "ln1_w");
    EXPECT_EQ(layout.tensors().back().name, "fc_proj_b");
}

TEST(CheckpointLayoutTest, LayerRangesTileTheArrayOnce) {
    // The gradient all-reduce buckets: an element left out would stay unreduced (ranks drift
    // apart silently), one in two buckets would be summed twice.
    ModelShape post_norm = tiny_shape();
    post_norm.post_norm = true;
    post_norm.learned_pos_emb = false;
    ModelShape one_layer = tiny_shape();
    one_layer.n_layer = 1;
    for (const ModelShape& shape : {tiny_shape(), post_norm, one_layer, gpt2_small_shape(50304)}) {
        const ParamLayout layout(shape, 0.02);
        std::vector<ParamRange> all;
        auto claim = [&](const std::vector<ParamRange>& ranges) {
            for (size_t i = 0; i < ranges.size(); ++i) {
                EXPECT_GT(ranges[i].count, 0);
                if (i > 0) {
                    EXPECT_LT(ranges[i - 1].offset + ranges[i - 1].count, ranges[i].offset) << "not merged";
                }
            }
            all.insert(all.end(), ranges.begin(), ranges.end());
        };
        for (int layer = 0; layer < shape.n_layer; ++layer) claim(layout.layer_ranges(layer));
        claim(layout.non_layer_ranges());
        std::sort(all.begin(), all.end(), [](const ParamRange& a, const ParamRange& b) { return a.offset < b.offset; });
        int64_t next = 0;  // sorted, each range must start where the previous one ended
        for (const ParamRange& range : all) {
            EXPECT_EQ(range.offset, next) << "n_layer " << shape.n_layer;
            next = range.offset + range.count;
        }
        EXPECT_EQ(next, layout.total()) << "n_layer " << shape.n_layer;
    }
    const ParamLayout layout(tiny_shape(), 0.02);
    const ParamTensor& fc_b = layout.get("fc_b");
    const std::vector<ParamRange> layer1 = layout.layer_ranges(1);
    EXPECT_EQ(layer1.size(), 12u);  // the 12 per-layer tensors, none adjacent when n_layer > 1
    EXPECT_NE(std::find(layer1.begin(), layer1.end(), ParamRange{fc_b.offset + 32, 32}), layer1.end());
    // wte + wpe are adjacent, and so are lnf_w + lnf_b.
    EXPECT_EQ(layout.non_layer_ranges(),
              (std::vector<ParamRange>{{0, 64 * 8 + 16 * 8}, {layout.get("lnf_w").offset, 16}}));
    EXPECT_EQ(ParamLayout(one_layer, 0.02).layer_ranges(0).size(), 1u);  // one contiguous block
    EXPECT_THROW(layout.layer_ranges(2), std::out_of_range);
}

TEST(CheckpointLayoutTest, WeightDecayAndInit) {
    const ParamLayout layout(tiny_shape(), 0.02);
    const double projection = 0.02 / std::sqrt(4.0);  // 2 * n_layer = 4
    for (const ParamTensor& t : layout.tensors()) {
        const bool linear_weight = t.name == "qkv_w" || t.name == "attn_proj_w" || t.name == "fc_w" ||
                                   t.name == "fc_proj_w";
        EXPECT_EQ(t.weight_decay, linear_weight) << t.name;
        if (t.name == "attn_proj_w" || t.name == "fc_proj_w") {
            EXPECT_EQ(t.init, ParamInit::normal);
            EXPECT_DOUBLE_EQ(t.init_std, projection) << t.name;
        } else if (linear_weight || t.name == "wte" || t.name == "wpe") {
            EXPECT_EQ(t.init, ParamInit::normal);
            EXPECT_DOUBLE_EQ(t.init_std, 0.02) << t.name;
        } else if (t.name.back() == 'w') {
            EXPECT_EQ(t.init, ParamInit::ones) << t.name;  // LayerNorm weights
        } else {
            EXPECT_EQ(t.init, ParamInit::zeros) << t.name;  // biases
        }
    }
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

StateHeader sample_state_header() {
    StateHeader header;
    header.identity.shape = tiny_shape();
    header.identity.rank = 1;
    header.identity.world_size = 2;
    header.identity.zero_stage = 1;
    header.identity.seed = 1111;
    header.step = 42;
    header.adam_step = 40;
    header.rng_state = {1, 2, 3, 0xFFFFFFFFFFFFFFFFull};
    header.loss_scale = 32768.0;
    header.clean_steps = 17;
    header.train_loader.epoch = 3;
    header.train_loader.window_in_epoch = 99;
    header.train_loader.total_windows = 12345;
    header.train_loader.seed = 1111;
    header.train_loader.seq_len = 16;
    header.train_loader.rank = 1;
    header.train_loader.world_size = 2;
    header.train_loader.shuffle = 1;
    return header;
}

struct Buffers {
    std::vector<float> master = random_floats(100, 11), m = random_floats(100, 12), v = random_floats(100, 13);
    std::vector<ConstFloatBuffer> to_write() const {
        return {{"master", master.data(), 100}, {"adam_m", m.data(), 100}, {"adam_v", v.data(), 100}};
    }
};

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

// ---------------------------------------------------------------------------------------------
// Finding checkpoints

void touch(const std::string& file) { std::ofstream(file) << "x"; }

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

// Flips one bit of a file in place.
void flip_bit(const std::string& file, int64_t offset, int bit = 0) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(offset);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ (1 << bit));
    f.seekp(offset);
    f.write(&byte, 1);
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

// ---------------------------------------------------------------------------------------------
// Checksums

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
