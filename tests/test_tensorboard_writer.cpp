// TensorBoard event files (host/tensorboard_writer.h): the masked CRC and the protobuf bytes
// against known answers, and whole files decoded by an independent reader
// (tests/tensorboard_reader.py).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "host/tensorboard_writer.h"
#include "tests/test_support.h"

namespace {

using test_support::read_bytes;
using test_support::ScratchDir;

std::string hex(const std::string& bytes) {
    std::string out;
    char digits[4];
    for (unsigned char c : bytes) {
        std::snprintf(digits, sizeof(digits), "%02x", c);
        out += digits;
    }
    return out;
}

TEST(TensorBoard, MaskedCrc32cKnownAnswer) {
    // The mask on the CRC-32C check value (RFC 3720's polynomial on "123456789"; host/crc32c.h's
    // own known answers are in test_crc32c.cpp).
    const uint32_t crc = 0xE3069283u;
    EXPECT_EQ(tensorboard::masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
}

TEST(TensorBoard, EventBytesByHand) {
    // wall_time 1.0: key 0x09, double 1.0 little-endian; step 300: key 0x10, varint ac 02;
    // summary: key 0x2a, length 13: value (0x0a, 11): tag "loss" (0a 04 6c6f7373), simple_value 2.5 (15 00002040).
    EXPECT_EQ(hex(tensorboard::scalar_event(1.0, 300, "loss", 2.5f)),
              "09000000000000f03f"
              "10ac02"
              "2a0d0a0b0a046c6f73731500002040");
    EXPECT_EQ(hex(tensorboard::file_version_event(0.0)), "0900000000000000001a0d627261696e2e4576656e743a32");
    const std::string framed = tensorboard::record("abc");
    ASSERT_EQ(framed.size(), 8u + 4 + 3 + 4);
    EXPECT_EQ(hex(framed.substr(0, 8)), "0300000000000000");
    EXPECT_EQ(framed.substr(12, 3), "abc");
}

std::string python_for_tests() {
    for (const char* candidate : {"/usr/bin/python3", "python3"})
        if (std::system((std::string(candidate) + " -c 'import json, struct' >/dev/null 2>&1").c_str()) == 0)
            return candidate;
    return "";
}

std::string run_reader(const std::string& python, const std::string& path, int* status) {
    const std::string command = python + " tests/tensorboard_reader.py '" + path + "' 2>&1";
    std::FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
    *status = pclose(pipe);
    return output;
}

TEST(TensorBoard, FileDecodedByAnIndependentReader) {
    const std::string python = python_for_tests();
    if (python.empty()) GTEST_SKIP() << "no python3 to run tests/tensorboard_reader.py";
    ScratchDir dir("test_tensorboard");
    std::string path;
    const double before = std::floor(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    {
        TensorBoardWriter writer(dir.file("run"));
        path = writer.path();
        writer.scalar("train/loss", 1, 10.875);
        writer.scalar("train/lr", 1, 6e-4);
        writer.scalar("val/loss", 250, 3.25);
        writer.scalar("train/loss", -1, std::nan(""));
        writer.flush();
        TensorBoardWriter second(dir.file("run"));  // same second: a file of its own
        EXPECT_NE(second.path(), path);
    }
    EXPECT_EQ(std::filesystem::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u);
    int status = 0;
    const std::string output = run_reader(python, path, &status);
    ASSERT_EQ(status, 0) << output;
    std::vector<nlohmann::json> events;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) events.push_back(nlohmann::json::parse(line));
    ASSERT_EQ(events.size(), 5u) << output;
    EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
    EXPECT_GE(events[0]["wall_time"].get<double>(), before);
    EXPECT_EQ(events[1]["step"], 1);
    EXPECT_EQ(events[1]["values"][0]["tag"], "train/loss");
    EXPECT_EQ(events[1]["values"][0]["simple_value"], 10.875);
    EXPECT_EQ(events[2]["values"][0]["simple_value"].get<double>(), static_cast<double>(6e-4f));
    EXPECT_EQ(events[3]["step"], 250);
    EXPECT_EQ(events[3]["values"][0]["tag"], "val/loss");
    EXPECT_EQ(events[4]["step"], -1);
    EXPECT_EQ(events[4]["values"][0]["simple_value"], "nan");

    // The reader is strict: one flipped data byte is a CRC mismatch.
    std::vector<char> bytes = read_bytes(path);
    bytes[bytes.size() - 6] ^= 1;
    const std::string corrupt = dir.file("corrupt.tfevents");
    std::FILE* out = std::fopen(corrupt.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), out);
    std::fclose(out);
    EXPECT_NE(run_reader(python, corrupt, &status).find("CRC mismatch"), std::string::npos);
    EXPECT_NE(status, 0);
}

}  // namespace
