// Tensor bundle reader/writer (host/tensor_bundle.h): round trips, and every rejection path
// with a message that names the file and the problem.
#include "host/tensor_bundle.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using tensor_bundle::Bundle;
using tensor_bundle::DType;

std::string temp_path(const std::string& name) {
    return testing::TempDir() + "tensor_bundle_" + std::to_string(::getpid()) + "_" + name;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

// Expects Bundle::load(path) to throw with a message containing the path and `expected`.
void expect_load_error(const std::string& path, const std::string& expected) {
    try {
        Bundle::load(path);
        ADD_FAILURE() << "loading " << path << " should fail with \"" << expected << "\"";
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find(path), std::string::npos) << message;
        EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
}

// A small bundle of every dtype, a scalar and an empty tensor, saved to `path`; returns its bytes.
std::string save_sample(const std::string& path) {
    Bundle bundle;
    bundle.add<float>("logits", {2, 3}, {0.5f, -1.0f, 2.0f, 3.5f, -0.25f, 1e-30f});
    bundle.add<int32_t>("tokens", {1, 4}, {50256, 0, 7, 123});
    bundle.add<double>("loss", {}, {10.8249});
    bundle.add<double>("grad.empty", {0, 5}, {});
    bundle.save(path);
    return read_file(path);
}

// Byte offsets in the sample: header 12 bytes; first tensor "logits": name length at 12, name at
// 16..21, dtype at 22, ndim at 26, dims at 30 and 38, data at 46.
constexpr size_t kFirstDtypeOffset = 22;
constexpr size_t kFirstDimOffset = 30;

TEST(TensorBundle, RoundTripsEveryDtypeScalarsAndEmptyTensors) {
    const std::string path = temp_path("roundtrip.bin");
    save_sample(path);
    const Bundle bundle = Bundle::load(path);
    EXPECT_EQ(bundle.path(), path);
    ASSERT_EQ(bundle.tensors().size(), 4u);
    EXPECT_EQ(bundle.tensors()[0].name, "logits");  // file order is kept
    EXPECT_EQ(bundle.tensors()[3].name, "grad.empty");
    EXPECT_EQ(bundle.get("logits").dtype(), DType::kFloat32);
    EXPECT_EQ(bundle.values<float>("logits", {2, 3}), (std::vector<float>{0.5f, -1.0f, 2.0f, 3.5f, -0.25f, 1e-30f}));
    EXPECT_EQ(bundle.values<int32_t>("tokens", {1, 4}), (std::vector<int32_t>{50256, 0, 7, 123}));
    EXPECT_EQ(bundle.values<double>("loss", {}), std::vector<double>{10.8249});
    EXPECT_TRUE(bundle.values<double>("grad.empty", {0, 5}).empty());
    EXPECT_FALSE(file_exists(path + ".tmp"));
    std::remove(path.c_str());
}

TEST(TensorBundle, SavingALoadedBundleReproducesTheFileExactly) {
    const std::string path = temp_path("resave_a.bin"), copy = temp_path("resave_b.bin");
    const std::string original = save_sample(path);
    Bundle::load(path).save(copy);
    EXPECT_EQ(read_file(copy), original);
    std::remove(path.c_str());
    std::remove(copy.c_str());
}

TEST(TensorBundle, ValuesAsDoubleWidensFloat32AndRejectsInt32) {
    const std::string path = temp_path("widen.bin");
    save_sample(path);
    const Bundle bundle = Bundle::load(path);
    EXPECT_EQ(bundle.values_as_double("logits", {2, 3})[1], -1.0);
    EXPECT_EQ(bundle.values_as_double("loss", {})[0], 10.8249);
    EXPECT_THROW(bundle.values_as_double("tokens", {1, 4}), std::runtime_error);
    std::remove(path.c_str());
}

TEST(TensorBundle, MissingTensorNamesTheFileTheTensorAndWhatIsPresent) {
    const std::string path = temp_path("missing.bin");
    save_sample(path);
    const Bundle bundle = Bundle::load(path);
    EXPECT_FALSE(bundle.contains("grad.wte"));
    try {
        bundle.get("grad.wte");
        ADD_FAILURE() << "get of a missing tensor should throw";
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find(path), std::string::npos) << message;
        EXPECT_NE(message.find("grad.wte"), std::string::npos) << message;
        EXPECT_NE(message.find("logits, tokens, loss"), std::string::npos) << message;
    }
    std::remove(path.c_str());
}

TEST(TensorBundle, ShapeAndDtypeMismatchesSayWhatWasExpected) {
    const std::string path = temp_path("mismatch.bin");
    save_sample(path);
    const Bundle bundle = Bundle::load(path);
    try {
        bundle.values<float>("logits", {3, 2});
        ADD_FAILURE() << "a shape mismatch should throw";
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("has shape (2, 3), expected (3, 2)"), std::string::npos) << message;
    }
    try {
        bundle.values<double>("logits", {2, 3});
        ADD_FAILURE() << "a dtype mismatch should throw";
    } catch (const std::runtime_error& error) {
        EXPECT_NE(std::string(error.what()).find("is float32, expected float64"), std::string::npos) << error.what();
    }
    std::remove(path.c_str());
}

TEST(TensorBundle, RejectsAMissingFile) {
    expect_load_error(temp_path("does_not_exist.bin"), "cannot open tensor bundle");
}

TEST(TensorBundle, RejectsAWrongMagicAndAnUnknownVersion) {
    const std::string path = temp_path("magic.bin");
    std::string bytes = save_sample(path);
    bytes[0] ^= 0x55;
    write_file(path, bytes);
    expect_load_error(path, "not a tensor bundle");
    bytes[0] ^= 0x55;
    bytes[4] = 2;
    write_file(path, bytes);
    expect_load_error(path, "unsupported version 2");
    std::remove(path.c_str());
}

TEST(TensorBundle, RejectsTruncationAnywhereAndTrailingBytes) {
    const std::string path = temp_path("truncated.bin");
    const std::string bytes = save_sample(path);
    // Every proper prefix is truncated somewhere: header, name, shape or data.
    for (size_t length = 0; length < bytes.size(); ++length) {
        write_file(path, bytes.substr(0, length));
        expect_load_error(path, "truncated");
    }
    write_file(path, bytes + "x");
    expect_load_error(path, "1 unexpected bytes after the last of 4 tensors");
    std::remove(path.c_str());
}

TEST(TensorBundle, RejectsAnUnknownDtypeANegativeDimensionAndAHugeShape) {
    const std::string path = temp_path("corrupt.bin");
    const std::string bytes = save_sample(path);
    std::string corrupt = bytes;
    corrupt[kFirstDtypeOffset] = 7;
    write_file(path, corrupt);
    expect_load_error(path, "unknown dtype code 7");

    corrupt = bytes;
    const int64_t negative = -3;
    corrupt.replace(kFirstDimOffset, 8, reinterpret_cast<const char*>(&negative), 8);
    write_file(path, corrupt);
    expect_load_error(path, "negative dimension");

    corrupt = bytes;  // 2^62 elements: must be reported, not multiplied out or allocated
    const int64_t huge = int64_t{1} << 62;
    corrupt.replace(kFirstDimOffset, 8, reinterpret_cast<const char*>(&huge), 8);
    write_file(path, corrupt);
    expect_load_error(path, "truncated: tensor \"logits\"");
    std::remove(path.c_str());
}

TEST(TensorBundle, RejectsDuplicateNamesOnLoadAndOnAdd) {
    const std::string path = temp_path("duplicate.bin");
    std::string bytes = save_sample(path);
    bytes.replace(bytes.find("tokens"), 6, "logits");
    write_file(path, bytes);
    expect_load_error(path, "tensor \"logits\" appears twice");
    std::remove(path.c_str());

    Bundle bundle;
    bundle.add<float>("x", {1}, {1.0f});
    EXPECT_THROW(bundle.add<float>("x", {1}, {2.0f}), std::invalid_argument);
}

TEST(TensorBundle, AddRejectsValuesThatDoNotFillTheShapeAndBadNames) {
    Bundle bundle;
    EXPECT_THROW(bundle.add<float>("x", {2, 2}, {1.0f, 2.0f, 3.0f}), std::invalid_argument);
    EXPECT_THROW(bundle.add<float>("", {1}, {1.0f}), std::invalid_argument);
    EXPECT_THROW(bundle.add<float>(std::string("a\0b", 3), {1}, {1.0f}), std::invalid_argument);
    EXPECT_THROW(bundle.add<int32_t>("y", {-1}, {}), std::invalid_argument);
    EXPECT_TRUE(bundle.tensors().empty());
}

TEST(TensorBundle, SaveIntoAMissingDirectoryNamesThePath) {
    const std::string path = temp_path("no_such_dir") + "/ref.bin";
    Bundle bundle;
    bundle.add<float>("x", {1}, {1.0f});
    try {
        bundle.save(path);
        ADD_FAILURE() << "saving into a missing directory should throw";
    } catch (const std::runtime_error& error) {
        EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    }
}

// A reference state written by dev/reference/gpt2_reference.py (tests/reference_cpu.sh sets
// TENSOR_BUNDLE_REFERENCE to its ref.bin): every tensor has the shape its "config" implies and
// finite values, and re-saving gives the identical file at TENSOR_BUNDLE_REFERENCE_COPY (the
// script compares the bytes, which proves every field was parsed as Python wrote it).
TEST(TensorBundle, ReadsAReferenceStateWrittenByPython) {
    const char* path = std::getenv("TENSOR_BUNDLE_REFERENCE");
    const char* copy = std::getenv("TENSOR_BUNDLE_REFERENCE_COPY");
    if (!path || !copy) GTEST_SKIP() << "TENSOR_BUNDLE_REFERENCE(_COPY) not set; tests/reference_cpu.sh sets them";
    const Bundle bundle = Bundle::load(path);
    const std::vector<int32_t>& config = bundle.values<int32_t>("config", {11});
    const int64_t B = config[0], T = config[1], L = config[2], C = config[3], Vp = config[5], steps = config[10];
    const bool learned_positions = config[6] & 1, post_norm = config[6] & 2;
    constexpr int64_t kVocab = 50257;

    EXPECT_EQ(bundle.values<double>("optimizer", {6}).size(), 6u);
    for (int32_t token : bundle.values<int32_t>("tokens", {B, T + 1})) {
        EXPECT_TRUE(token >= 0 && token < kVocab) << token;
    }
    std::vector<std::pair<std::string, std::vector<int64_t>>> floats = {
        {"logits", {B, T, kVocab}},      {"grad.wte", {Vp, C}},           {"grad.ln1_w", {L, C}},
        {"grad.ln1_b", {L, C}},          {"grad.qkv_w", {L, 3 * C, C}},   {"grad.qkv_b", {L, 3 * C}},
        {"grad.attn_proj_w", {L, C, C}}, {"grad.attn_proj_b", {L, C}},    {"grad.ln2_w", {L, C}},
        {"grad.ln2_b", {L, C}},          {"grad.fc_w", {L, 4 * C, C}},    {"grad.fc_b", {L, 4 * C}},
        {"grad.fc_proj_w", {L, C, 4 * C}}, {"grad.fc_proj_b", {L, C}}};
    size_t expected_count = 3 + floats.size() + 3;  // config, optimizer, tokens; ...; loss, losses, grad_norm
    if (learned_positions) {
        EXPECT_EQ(bundle.get("grad.wpe").shape.at(1), C);
        ++expected_count;
    }
    if (!post_norm) {
        floats.push_back({"grad.lnf_w", {C}});
        floats.push_back({"grad.lnf_b", {C}});
        expected_count += 2;
    }
    for (const auto& [name, shape] : floats) {
        for (float value : bundle.values<float>(name, shape)) ASSERT_TRUE(std::isfinite(value)) << name;
    }
    const std::vector<std::pair<std::string, int64_t>> doubles = {{"loss", 1}, {"losses", steps}, {"grad_norm", steps}};
    for (const auto& [name, count] : doubles) {
        for (double value : bundle.values<double>(name, {count})) ASSERT_TRUE(std::isfinite(value)) << name;
    }
    EXPECT_EQ(bundle.tensors().size(), expected_count);
    bundle.save(copy);
}

}  // namespace
