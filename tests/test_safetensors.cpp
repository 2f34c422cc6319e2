// The safetensors writer and strict reader (host/safetensors.h): the bytes the writer lays out,
// the round trip of every float dtype conversion, and one rejection per validation rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "host/safetensors.h"
#include "tests/test_support.h"

namespace {

using test_support::error_of;
using test_support::read_bytes;
using test_support::ScratchDir;

// A file of exactly `header` (as the JSON text) followed by `data_bytes` zero bytes.
std::string write_raw(const ScratchDir& dir, const std::string& name, const std::string& header, size_t data_bytes,
                      uint64_t header_length_override = 0) {
    const std::string path = dir.file(name);
    std::ofstream out(path, std::ios::binary);
    const uint64_t length = header_length_override ? header_length_override : header.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << header << std::string(data_bytes, '\0');
    return path;
}

safetensors::TensorToWrite float_tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
    return {name, safetensors::DType::F32, std::move(shape),
            [values](void* dst) { std::memcpy(dst, values.data(), values.size() * sizeof(float)); }};
}

TEST(Safetensors, WriterLaysOutPaddedHeaderThenTensorsInOrder) {
    ScratchDir dir("test_safetensors");
    const std::string path = dir.file("a.safetensors");
    safetensors::write_file(path, {{"format", "pt"}},
                            {float_tensor("w", {2, 3}, {1, 2, 3, 4, 5, 6}), float_tensor("b", {2}, {-1, 0.5f})});
    const std::vector<char> bytes = read_bytes(path);
    uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), 8);
    EXPECT_EQ((8 + header_length) % 8, 0u);
    const std::string header(bytes.data() + 8, header_length);
    const std::string json = header.substr(0, header.find_last_not_of(' ') + 1);
    EXPECT_EQ(json,
              "{\"__metadata__\":{\"format\":\"pt\"},"
              "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}");
    ASSERT_EQ(bytes.size(), 8 + header_length + 32);
    float values[8];
    std::memcpy(values, bytes.data() + 8 + header_length, sizeof(values));
    EXPECT_EQ(values[0], 1.0f);
    EXPECT_EQ(values[5], 6.0f);
    EXPECT_EQ(values[6], -1.0f);
    EXPECT_EQ(values[7], 0.5f);

    const safetensors::Reader reader(path);
    EXPECT_EQ(reader.metadata().at("format"), "pt");
    ASSERT_EQ(reader.tensors().size(), 2u);
    const safetensors::TensorInfo& b = reader.get("b");
    EXPECT_EQ(b.shape, std::vector<int64_t>({2}));
    float read_back[2];
    reader.read_as_float32(b, read_back);
    EXPECT_EQ(read_back[0], -1.0f);
    EXPECT_EQ(read_back[1], 0.5f);
    EXPECT_NE(error_of([&] { reader.get("missing"); }).find("has no tensor \"missing\""), std::string::npos);
}

TEST(Safetensors, HalfAndBfloat16WidenExactly) {
    ScratchDir dir("test_safetensors");
    // F16: 1.0, -2.0, the smallest subnormal 2^-24, 65504 (max), +inf; BF16: 1.0, -3.0 (0xC040), 1e-40-ish subnormal.
    const std::vector<uint16_t> halves = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00};
    const std::vector<uint16_t> bfloats = {0x3F80, 0xC040, 0x0001};
    auto raw = [](const std::vector<uint16_t>& values) {
        return [values](void* dst) { std::memcpy(dst, values.data(), values.size() * 2); };
    };
    const std::string path = dir.file("h.safetensors");
    safetensors::write_file(path, {}, {{"h", safetensors::DType::F16, {5}, raw(halves)},
                                       {"bf", safetensors::DType::BF16, {3}, raw(bfloats)},
                                       {"i", safetensors::DType::I64, {1}, [](void* dst) { std::memset(dst, 0, 8); }}});
    const safetensors::Reader reader(path);
    float h[5], bf[3];
    reader.read_as_float32(reader.get("h"), h);
    reader.read_as_float32(reader.get("bf"), bf);
    EXPECT_EQ(h[0], 1.0f);
    EXPECT_EQ(h[1], -2.0f);
    EXPECT_EQ(h[2], std::ldexp(1.0f, -24));
    EXPECT_EQ(h[3], 65504.0f);
    EXPECT_TRUE(std::isinf(h[4]));
    EXPECT_EQ(bf[0], 1.0f);
    EXPECT_EQ(bf[1], -3.0f);
    uint32_t bits;
    std::memcpy(&bits, &bf[2], 4);
    EXPECT_EQ(bits, 0x00010000u);
    float i;
    EXPECT_NE(error_of([&] { reader.read_as_float32(reader.get("i"), &i); }).find("is I64; expected a floating-point"),
              std::string::npos);
}

TEST(Safetensors, ReaderRejectsMalformedFilesNamingThem) {
    ScratchDir dir("test_safetensors");
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    struct Case {
        std::string header;
        size_t data_bytes;
        uint64_t length_override;
        std::string expected;
    };
    const std::vector<Case> cases = {
        {ok, 8, 0, ""},
        {ok, 8, 200'000'000, "exceeds the format's limit"},
        {ok, 8, 1000, "exceeds the file"},
        {"[1,2]", 0, 0, "does not start with '{'"},
        {"{\"t\":", 0, 0, "is not valid JSON"},
        {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
         8, 0, "has the key \"t\" twice"},
        {R"({"t":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", 8, 0, "unknown dtype \"F17\""},
        {R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, 0, "is not a non-negative integer"},
        {R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, 0, "is not a non-negative integer"},
        {R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, 0, "F32 [3] needs 12"},
        {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, 0, "end before they begin"},
        {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8, 0, "unknown field \"x\""},
        {R"({"t":{"dtype":"F32","shape":[2]}})", 8, 0, "lacks \"data_offsets\""},
        {R"({"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, 0,
         "__metadata__[\"a\"] is not a string"},
        {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
         8, 0, "(overlapping tensors)"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
         12, 0, "(a gap)"},
        {ok, 12, 0, "(trailing bytes)"},
        {ok, 4, 0, "(the file is truncated)"},
    };
    for (size_t i = 0; i < cases.size(); i++) {
        const Case& c = cases[i];
        const std::string path = write_raw(dir, "case" + std::to_string(i) + ".safetensors", c.header, c.data_bytes,
                                           c.length_override);
        const std::string error = error_of([&] { safetensors::Reader reader(path); });
        if (c.expected.empty()) {
            EXPECT_EQ(error, "(no error)") << "case " << i;
            continue;
        }
        EXPECT_NE(error.find(c.expected), std::string::npos) << "case " << i << ": " << error;
        EXPECT_NE(error.find(path), std::string::npos) << "case " << i << " does not name the file: " << error;
    }
    const std::string tiny = dir.file("tiny.safetensors");
    std::ofstream(tiny) << "abc";
    EXPECT_NE(error_of([&] { safetensors::Reader reader(tiny); }).find("less than the 8-byte header length"),
              std::string::npos);
}

TEST(Safetensors, WriterRejectsBadNames) {
    ScratchDir dir("test_safetensors");
    const std::string path = dir.file("bad.safetensors");
    EXPECT_NE(error_of([&] { safetensors::write_file(path, {}, {float_tensor("a", {1}, {1}), float_tensor("a", {1}, {1})}); })
                  .find("given twice"),
              std::string::npos);
    EXPECT_NE(error_of([&] { safetensors::write_file(path, {}, {float_tensor("__metadata__", {1}, {1})}); }).find("reserved"),
              std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
