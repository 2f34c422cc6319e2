// The norm monitor's host side (host/param_norms.h): the segments it names, the report it makes
// from per-segment sums, and the log.jsonl line of that report.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "host/param_norms.h"
#include "host/run_log.h"
#include "tests/test_support.h"

namespace {

ModelShape small_shape() {
    ModelShape shape;
    shape.n_layer = 3;
    shape.n_embd = 16;
    shape.n_head = 2;
    shape.max_seq_len = 8;
    shape.vocab_size = 50;
    shape.padded_vocab_size = 64;
    return shape;
}

TEST(ParamNorms, SegmentsAreEveryTensorPerLayerAndTileTheLayout) {
    const ParamLayout layout(small_shape(), 0.02);
    const std::vector<ParamSegment> segments = param_segments(layout);
    // wte, wpe, 12 per-layer tensors x 3 layers, lnf_w, lnf_b.
    ASSERT_EQ(segments.size(), 2u + 12u * 3u + 2u);
    EXPECT_EQ(segments[0].name, "wte");
    EXPECT_EQ(segments[0].count, 64 * 16);
    EXPECT_EQ(segments[2].name, "layers.0.ln1_w");
    EXPECT_EQ(segments[3].name, "layers.1.ln1_w");
    EXPECT_EQ(segments[3].offset, layout.layer_offset(layout.get("ln1_w"), 1));
    EXPECT_EQ(segments.back().name, "lnf_b");
    std::vector<int> covered(static_cast<size_t>(layout.total()), 0);
    std::set<std::string> names;
    for (const ParamSegment& segment : segments) {
        names.insert(segment.name);
        for (int64_t i = segment.offset; i < segment.offset + segment.count; ++i) covered[static_cast<size_t>(i)]++;
    }
    EXPECT_EQ(names.size(), segments.size());
    for (size_t i = 0; i < covered.size(); ++i) ASSERT_EQ(covered[i], 1) << "element " << i;
}

TEST(ParamNorms, ReportFromSums) {
    const std::vector<ParamSegment> segments = {{"a", 0, 4}, {"b", 4, 2}};
    // a: weights {1, -2, 3, 0}, gradients {0.5, 0, 0, -0.5}; b: weights {-4, 4}, gradients {1, 1}.
    const std::vector<SegmentSums> weights = {{6.0, 14.0, 3.0}, {8.0, 32.0, 4.0}};
    const std::vector<SegmentSums> grads = {{1.0, 0.5, 0.5}, {2.0, 2.0, 1.0}};
    const NormReport report = make_norm_report(7, segments, weights, grads);
    EXPECT_EQ(report.step, 7);
    ASSERT_EQ(report.tensors.size(), 2u);
    EXPECT_EQ(report.tensors[0].name, "a");
    EXPECT_DOUBLE_EQ(report.tensors[0].weight_mean, 1.5);
    EXPECT_DOUBLE_EQ(report.tensors[0].weight_max, 3.0);
    EXPECT_DOUBLE_EQ(report.tensors[0].grad_mean, 0.25);
    EXPECT_DOUBLE_EQ(report.tensors[1].weight_mean, 4.0);
    EXPECT_DOUBLE_EQ(report.tensors[1].grad_max, 1.0);
    EXPECT_DOUBLE_EQ(report.weight_l1, 14.0);
    EXPECT_DOUBLE_EQ(report.weight_l2, std::sqrt(46.0));
    EXPECT_DOUBLE_EQ(report.grad_l1, 3.0);
    EXPECT_DOUBLE_EQ(report.grad_l2, std::sqrt(2.5));
    EXPECT_THROW(make_norm_report(7, segments, weights, {grads[0]}), std::invalid_argument);
}

TEST(ParamNorms, LogLine) {
    const test_support::ScratchDir scratch("test_param_norms");
    const NormReport report = make_norm_report(40, {{"wte", 0, 2}, {"layers.0.qkv_w", 2, 2}},
                                               {{2.0, 2.0, 1.0}, {1.0, 0.5, 0.5}}, {{NAN, NAN, 0.0}, {0.2, 0.02, 0.1}});
    {
        RunLog log(scratch.file("log.jsonl"));
        log.norms(report);
        log.hellaswag(40, 0.25, 0.5, 12);
    }
    std::ifstream in(scratch.file("log.jsonl"));
    std::string norms_line, hellaswag_line;
    std::getline(in, norms_line);
    std::getline(in, hellaswag_line);
    const nlohmann::json norms = nlohmann::json::parse(norms_line);
    EXPECT_EQ(norms["event"], "norms");
    EXPECT_EQ(norms["step"], 40);
    EXPECT_DOUBLE_EQ(norms["weight_l1"].get<double>(), 3.0);
    EXPECT_DOUBLE_EQ(norms["weight_l2"].get<double>(), std::sqrt(2.5));
    EXPECT_TRUE(norms["grad_l1"].is_null());  // a NaN gradient: null, as the log writes non-finite values
    EXPECT_DOUBLE_EQ(norms["tensors"]["layers.0.qkv_w"]["grad_mean"].get<double>(), 0.1);
    EXPECT_DOUBLE_EQ(norms["tensors"]["wte"]["weight_max"].get<double>(), 1.0);
    const nlohmann::json hellaswag = nlohmann::json::parse(hellaswag_line);
    EXPECT_EQ(hellaswag["event"], "hellaswag");
    EXPECT_DOUBLE_EQ(hellaswag["acc_norm"].get<double>(), 0.5);
    EXPECT_EQ(hellaswag["items"], 12);
}

}  // namespace
