// --timeline-step's summary: phase lengths from the marks, and each layer's reduction lag paired
// with the next reduction of the same layer (ZeRO-2 hands each layer over once per micro-step).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "host/step_timeline.h"

namespace {

using M = TimelineMark;

// The line of `text` that starts with `prefix` (after the indent), or "" if none.
std::string line_of(const std::string& text, const std::string& prefix) {
    size_t at = text.find("  " + prefix);
    if (at == std::string::npos) return "";
    return text.substr(at, text.find('\n', at) - at);
}

TEST(StepTimelineTest, PhasesAreDifferencesBetweenMarks) {
    const std::vector<TimedMark> marks = {
        {M::StepStart, -1, 0.0f},       {M::BackwardStart, -1, 50.0f}, {M::LayerHandoff, 1, 60.0f},
        {M::LayerReduced, 1, 60.5f},    {M::LayerHandoff, 0, 70.0f},   {M::LayerReduced, 0, 71.5f},
        {M::BackwardEnd, -1, 70.25f},   {M::GradientsReduced, -1, 72.0f}, {M::StepEnd, -1, 80.0f},
    };
    const std::string text = summarize_step_timeline(12, marks);
    EXPECT_NE(text.find("timeline of step 12"), std::string::npos) << text;
    EXPECT_NE(line_of(text, "forward").find(" 50.00"), std::string::npos) << text;
    EXPECT_NE(line_of(text, "backward of the last micro-step").find(" 20.25"), std::string::npos) << text;
    EXPECT_NE(line_of(text, "gradient reduction left after backward").find(" 1.75"), std::string::npos) << text;
    EXPECT_NE(line_of(text, "gradient norm, AdamW").find(" 8.00"), std::string::npos) << text;
    EXPECT_NE(line_of(text, "step").find(" 80.00"), std::string::npos) << text;
    // Lags 0.5 and 1.5: the median of two is the upper one.
    EXPECT_NE(text.find("2 layer reductions during backward: each done 1.50 ms (median; max 1.50)"), std::string::npos)
        << text;
}

TEST(StepTimelineTest, EachHandoffPairsWithTheNextReductionOfItsLayer) {
    // Two micro-steps of one layer: the second handoff must not pair with the first reduction.
    const std::vector<TimedMark> marks = {
        {M::StepStart, -1, 0.0f},   {M::LayerHandoff, 0, 10.0f},   {M::LayerReduced, 0, 10.25f},
        {M::BackwardStart, -1, 20.0f}, {M::LayerHandoff, 0, 30.0f}, {M::LayerReduced, 0, 30.5f},
        {M::BackwardEnd, -1, 31.0f}, {M::GradientsReduced, -1, 31.0f}, {M::StepEnd, -1, 35.0f},
    };
    const std::string text = summarize_step_timeline(3, marks);
    EXPECT_NE(text.find("2 layer reductions during backward: each done 0.50 ms (median; max 0.50)"), std::string::npos)
        << text;
}

TEST(StepTimelineTest, OneGpuHasNoLayerLine) {
    const std::vector<TimedMark> marks = {
        {M::StepStart, -1, 0.0f}, {M::BackwardStart, -1, 5.0f}, {M::BackwardEnd, -1, 15.0f},
        {M::GradientsReduced, -1, 15.0f}, {M::StepEnd, -1, 16.0f},
    };
    const std::string text = summarize_step_timeline(1, marks);
    EXPECT_NE(line_of(text, "gradient reduction left after backward").find(" 0.00"), std::string::npos) << text;
    EXPECT_EQ(text.find("layer reductions"), std::string::npos) << text;
}

}  // namespace
