// TensorBoard event files (host/tensorboard_writer.h): the masked CRC and the protobuf bytes
// against known answers, and whole files decoded by an independent reader
// (tests/tensorboard_reader.py), the trainer's scalars (host/run_tensorboard.h) among them.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/run_tensorboard.h"
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

// Decoded events of `path` as tag -> (step, value) in file order; fails the test on a bad file.
std::vector<std::tuple<std::string, int64_t, nlohmann::json>> decoded_scalars(const std::string& python,
                                                                              const std::string& path) {
    int status = 0;
    const std::string output = run_reader(python, path, &status);
    EXPECT_EQ(status, 0) << output;
    std::vector<std::tuple<std::string, int64_t, nlohmann::json>> scalars;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
        const nlohmann::json event = nlohmann::json::parse(line);
        if (!event.contains("values")) continue;
        for (const nlohmann::json& value : event["values"])
            scalars.emplace_back(value["tag"], event["step"].get<int64_t>(), value["simple_value"]);
    }
    return scalars;
}

TEST(TensorBoard, TheTrainersScalars) {
    const std::string python = python_for_tests();
    if (python.empty()) GTEST_SKIP() << "no python3 to run tests/tensorboard_reader.py";
    ScratchDir dir("test_tensorboard");
    std::string path;
    {
        RunTensorBoard board(dir.path.string());
        path = board.path();
        TrainStepRecord record;
        record.step = 3;
        record.loss = 2.0;
        record.lr = 1e-3;
        record.grad_norm = 0.5;
        record.ms = 125.0;
        record.tokens_per_s = 1000.0;
        record.mfu = 0.25;
        record.mem_gb = 1.5;
        record.loss_scale = 1024.0;
        record.tokens_seen = 3000;
        board.train(record);
        record.step = 4;
        record.mfu.reset();  // a GPU of unknown peak: no MFU scalar
        record.loss_scale.reset();  // bf16: no loss scale
        board.train(record);
        board.split_loss("val", 4, 1.0);
        board.split_loss("test", 6, 2.0);
        board.hellaswag(4, 0.25, 0.375);
        board.norms(make_norm_report(4, {{"wte", 0, 2}}, {{2.0, 4.0, 1.5}}, {{1.0, 0.25, 0.5}}));
    }
    const auto scalars = decoded_scalars(python, path);
    std::map<std::pair<std::string, int64_t>, nlohmann::json> by_tag_and_step;
    for (const auto& [tag, step, value] : scalars) by_tag_and_step[{tag, step}] = value;
    const auto value = [&](const std::string& tag, int64_t step) {
        const auto found = by_tag_and_step.find({tag, step});
        return found == by_tag_and_step.end() ? nlohmann::json("absent") : found->second;
    };
    EXPECT_EQ(value("train/loss", 3), 2.0);
    EXPECT_EQ(value("train/perplexity", 3), static_cast<double>(static_cast<float>(std::exp(2.0))));
    EXPECT_EQ(value("train/lr", 3), static_cast<double>(1e-3f));
    EXPECT_EQ(value("train/grad_norm", 3), 0.5);
    EXPECT_EQ(value("train/tokens_seen", 3), 3000.0);
    EXPECT_EQ(value("train/loss_scale", 3), 1024.0);
    EXPECT_EQ(value("perf/tokens_per_s", 3), 1000.0);
    EXPECT_EQ(value("perf/step_ms", 3), 125.0);
    EXPECT_EQ(value("perf/mfu", 3), 0.25);
    EXPECT_EQ(value("perf/memory_gb", 3), 1.5);
    EXPECT_EQ(value("perf/mfu", 4), "absent");
    EXPECT_EQ(value("train/loss_scale", 4), "absent");
    EXPECT_EQ(value("val/loss", 4), 1.0);
    EXPECT_EQ(value("val/perplexity", 4), static_cast<double>(static_cast<float>(std::exp(1.0))));
    EXPECT_EQ(value("test/loss", 6), 2.0);
    EXPECT_EQ(value("test/perplexity", 6), static_cast<double>(static_cast<float>(std::exp(2.0))));
    EXPECT_EQ(value("hellaswag/acc", 4), 0.25);
    EXPECT_EQ(value("hellaswag/acc_norm", 4), 0.375);
    EXPECT_EQ(value("norms/weight_l1", 4), 2.0);
    EXPECT_EQ(value("norms/weight_l2", 4), 2.0);
    EXPECT_EQ(value("norms/grad_l2", 4), 0.5);
    EXPECT_EQ(value("norms/wte/weight_max", 4), 1.5);
    EXPECT_EQ(value("norms/wte/grad_mean", 4), 0.5);
    EXPECT_EQ(scalars.size(), 10u + 8u + 2u + 2u + 2u + 4u + 4u);  // nothing else was written
}

}  // namespace
