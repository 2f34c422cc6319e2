// The run log (JSON lines), the console step line, and the MFU they report.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/gpu_specs.h"
#include "host/run_log.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

class RunLogTest : public ::testing::Test {
  protected:

    std::vector<Json> lines() const {
        std::ifstream in(log_path_);
        std::vector<Json> parsed;
        for (std::string line; std::getline(in, line);) parsed.push_back(Json::parse(line));  // throws if invalid
        return parsed;
    }
    test_support::ScratchDir scratch_{"test_run_log"};
    const std::string log_path_ = scratch_.file("log.jsonl");
};

TrainStepRecord sample_record() {
    TrainStepRecord r;
    r.step = 120;
    r.total_steps = 400000;
    r.loss = 3.45678;
    r.lr = 6e-4;
    r.grad_norm = 0.8123;
    r.ms = 310.25;
    r.tokens_per_s = 1690123.4;
    r.mfu = 0.4512;
    r.mem_gb = 15.84;
    r.loss_scale = 65536.0;
    r.tokens_seen = 62914560;
    return r;
}

TEST_F(RunLogTest, EventsAreOneJsonObjectPerLine) {
    {
        RunLog log(log_path_);
        log.train(sample_record());
        log.val(250, 2.5);
        log.sample(500, "Hello \"world\"\n\ttab \\ backslash, caf\xC3\xA9, emoji \xF0\x9F\x98\x80");
        log.checkpoint(1000, "runs/x/model_00001000.bin");
        log.eval(1000, "test", 2.75, 38400, "");
        log.eval(1000, "val", 2.5, 4096, "runs/x/model_00001000.bin");
    }
    const std::vector<Json> events = lines();
    ASSERT_EQ(events.size(), 6u);
    const Json& train = events[0];
    EXPECT_EQ(train["event"], "train");
    EXPECT_EQ(train["step"], 120);
    EXPECT_EQ(train["total"], 400000);
    EXPECT_DOUBLE_EQ(train["loss"].get<double>(), 3.45678);
    EXPECT_DOUBLE_EQ(train["lr"].get<double>(), 6e-4);
    EXPECT_DOUBLE_EQ(train["grad_norm"].get<double>(), 0.8123);
    EXPECT_DOUBLE_EQ(train["ms"].get<double>(), 310.25);
    EXPECT_DOUBLE_EQ(train["tokens_per_s"].get<double>(), 1690123.4);
    EXPECT_DOUBLE_EQ(train["mfu"].get<double>(), 0.4512);
    EXPECT_DOUBLE_EQ(train["mem_gb"].get<double>(), 15.84);
    EXPECT_DOUBLE_EQ(train["loss_scale"].get<double>(), 65536.0);
    EXPECT_DOUBLE_EQ(train["ppl"].get<double>(), std::exp(3.45678));
    EXPECT_EQ(train["tokens"], 62914560);
    EXPECT_TRUE(train["skipped"].is_null());
    EXPECT_EQ(train["skipped_updates"], 0);
    EXPECT_EQ(events[1]["event"], "val");
    EXPECT_DOUBLE_EQ(events[1]["loss"].get<double>(), 2.5);
    EXPECT_DOUBLE_EQ(events[1]["ppl"].get<double>(), std::exp(2.5));
    EXPECT_EQ(events[2]["event"], "sample");
    EXPECT_EQ(events[2]["text"], "Hello \"world\"\n\ttab \\ backslash, caf\xC3\xA9, emoji \xF0\x9F\x98\x80");
    EXPECT_EQ(events[3]["event"], "checkpoint");
    EXPECT_EQ(events[3]["path"], "runs/x/model_00001000.bin");
    EXPECT_EQ(events[4], Json::parse(R"({"event": "eval", "step": 1000, "split": "test", "loss": 2.75,
                                         "ppl": )" + Json(std::exp(2.75)).dump() + R"(, "tokens": 38400,
                                         "checkpoint": null})"));
    EXPECT_EQ(events[5]["split"], "val");
    EXPECT_EQ(events[5]["checkpoint"], "runs/x/model_00001000.bin");
}

TEST_F(RunLogTest, UnknownAndNonFiniteValuesAreNull) {
    {
        RunLog log(log_path_);
        TrainStepRecord r = sample_record();
        r.mfu.reset();
        r.loss_scale.reset();
        r.loss = std::nan("");
        r.grad_norm = INFINITY;
        log.train(r);
        log.val(1, 1000.0);  // ppl overflows to infinity
    }
    const std::vector<Json> events = lines();
    EXPECT_TRUE(events[0]["mfu"].is_null());
    EXPECT_TRUE(events[0]["loss_scale"].is_null());
    EXPECT_TRUE(events[0]["loss"].is_null());
    EXPECT_TRUE(events[0]["grad_norm"].is_null());
    EXPECT_TRUE(events[1]["ppl"].is_null());
}

TEST_F(RunLogTest, InvalidUtf8InSamplesIsReplaced) {
    {
        RunLog log(log_path_);
        log.sample(1, std::string("cut in half: \xE2\x82", 15) + " and a stray \xFF byte");
    }
    const std::vector<Json> events = lines();
    ASSERT_EQ(events.size(), 1u);
    const std::string text = events[0]["text"];
    EXPECT_NE(text.find("cut in half: \xEF\xBF\xBD"), std::string::npos) << text;  // U+FFFD
    EXPECT_NE(text.find("stray \xEF\xBF\xBD byte"), std::string::npos) << text;
}

TEST_F(RunLogTest, ReopeningAppendsAndEachLineIsFlushed) {
    RunLog first(log_path_);
    first.val(1, 3.0);
    EXPECT_EQ(lines().size(), 1u);  // visible before the log is closed
    RunLog second(log_path_);
    second.val(2, 2.0);
    const std::vector<Json> events = lines();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1]["step"], 2);
}

TEST_F(RunLogTest, UnwritableLocationNamesTheFile) {
    const std::string bad = scratch_.file("missing/log.jsonl");
    try {
        RunLog log(bad);
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
}

TEST(RunLogFormatTest, StepLine) {
    EXPECT_EQ(format_step_line(sample_record(), 123999.6),
              "step    120/400000 | loss 3.4568 | ppl 31.71 | lr 6.00e-04 | norm 0.8123 | 310.2 ms | 1,690,123 tok/s | "
              "62.9M tokens | MFU 45.1% | mem 15.8 GB | scale 65536 | ETA 34:26:40");
    TrainStepRecord r = sample_record();
    r.mfu.reset();
    r.loss_scale.reset();
    r.tokens_per_s = 999;
    r.tokens_seen = 950;
    r.skipped = "loss spike";
    EXPECT_EQ(format_step_line(r, std::nullopt),
              "step    120/400000 | loss 3.4568 | ppl 31.71 | lr 6.00e-04 | norm 0.8123 | 310.2 ms | 999 tok/s | "
              "950 tokens | MFU n/a | mem 15.8 GB | ETA n/a | update skipped: loss spike");
}

TEST(RunLogFormatTest, Counts) {
    EXPECT_EQ(format_count(0), "0");
    EXPECT_EQ(format_count(999), "999");
    EXPECT_EQ(format_count(1000), "1.00K");
    EXPECT_EQ(format_count(12345), "12.3K");
    EXPECT_EQ(format_count(62914560), "62.9M");
    EXPECT_EQ(format_count(999.6e6), "1.00B");
    EXPECT_EQ(format_count(150e9), "150B");
    EXPECT_EQ(format_count(2.1e12), "2.10T");
}

TEST(RunLogFormatTest, Durations) {
    EXPECT_EQ(format_duration(0), "0:00:00");
    EXPECT_EQ(format_duration(59.4), "0:00:59");
    EXPECT_EQ(format_duration(3725), "1:02:05");
    EXPECT_EQ(format_duration(360000), "100:00:00");
    EXPECT_EQ(format_duration(-1), "n/a");
    EXPECT_EQ(format_duration(NAN), "n/a");
}

// ---------------------------------------------------------------------------------------------
// MFU

TEST(RunLogMfuTest, PeaksByDeviceName) {
    struct Case {
        const char* name;
        const char* model;
        double tflops;
    };
    const Case cases[] = {
        {"NVIDIA H100 80GB HBM3", "H100 SXM", 989}, {"NVIDIA H100 PCIe", "H100 PCIe", 756},
        {"NVIDIA H100 NVL", "H100 NVL", 835},       {"NVIDIA H200", "H200", 989},
        {"NVIDIA A100-SXM4-80GB", "A100", 312},     {"NVIDIA A100 80GB PCIe", "A100", 312},
        {"NVIDIA A10", "A10", 125},                 {"NVIDIA A10G", "A10G", 125},
        {"NVIDIA L4", "L4", 121},                   {"NVIDIA L40S", "L40S", 362},
        {"NVIDIA GeForce RTX 4090", "RTX 4090", 165.2}, {"NVIDIA GeForce RTX 3090", "RTX 3090", 71},
        {"Tesla V100-SXM2-16GB", "V100", 125},      {"NVIDIA B200", "B200", 2250},
    };
    for (const Case& c : cases) {
        const GpuPeak peak = gpu_peak_for(c.name);
        EXPECT_EQ(peak.model, c.model) << c.name;
        ASSERT_TRUE(peak.dense_tflops) << c.name;
        EXPECT_EQ(*peak.dense_tflops, c.tflops) << c.name;
    }
    for (const char* unknown : {"NVIDIA L40", "NVIDIA GeForce GTX 1080", "AMD Instinct MI300X", ""}) {
        const GpuPeak peak = gpu_peak_for(unknown);
        EXPECT_EQ(peak.model, "unknown") << unknown;
        EXPECT_FALSE(peak.dense_tflops) << unknown;
    }
}

TEST(RunLogMfuTest, FlopsPerTokenAndUtilization) {
    // GPT-2 124M, padded vocab 50304, T 1024: 6 * 124,475,904 + 6 * 12 * 768 * 1024.
    const int64_t flops = flops_per_token(124475904, 12, 768, 1024);
    EXPECT_EQ(flops, 803478528);
    // design.md: llm.c's 532k tok/s on an H100 SXM is reported as 42.9% MFU; this count gives
    // 43.2% (its tokens/s is rounded there).
    const std::optional<double> mfu = model_flops_utilization(532000, static_cast<double>(flops), 989.0);
    ASSERT_TRUE(mfu);
    EXPECT_DOUBLE_EQ(*mfu, 532000.0 * 803478528.0 / 989e12);
    EXPECT_NEAR(*mfu, 0.429, 0.005);
    EXPECT_FALSE(model_flops_utilization(532000, 8e8, std::nullopt));
    EXPECT_FALSE(model_flops_utilization(0, 8e8, 989.0));
    EXPECT_FALSE(model_flops_utilization(-5, 8e8, 989.0));
    EXPECT_FALSE(model_flops_utilization(NAN, 8e8, 989.0));
    EXPECT_FALSE(model_flops_utilization(1000, 8e8, 0.0));
}

}  // namespace
