#include "host/step_timeline.h"

#include <algorithm>

#include "host/format.h"

namespace {
float first_time(const std::vector<TimedMark>& marks, TimelineMark what) {
    for (const TimedMark& mark : marks)
        if (mark.what == what) return mark.ms;
    return 0.0f;
}
}  // namespace

std::string summarize_step_timeline(long long step, const std::vector<TimedMark>& marks) {
    const float backward_start = first_time(marks, TimelineMark::BackwardStart);
    const float backward_end = first_time(marks, TimelineMark::BackwardEnd);
    const float reduced = first_time(marks, TimelineMark::GradientsReduced);
    const float step_end = first_time(marks, TimelineMark::StepEnd);
    std::vector<float> lags;
    for (size_t i = 0; i < marks.size(); ++i) {
        if (marks[i].what != TimelineMark::LayerHandoff) continue;
        for (size_t j = i + 1; j < marks.size(); ++j)
            if (marks[j].what == TimelineMark::LayerReduced && marks[j].layer == marks[i].layer) {
                lags.push_back(marks[j].ms - marks[i].ms);
                break;
            }
    }
    std::string text = string_format("timeline of step %lld on this GPU (ms, CUDA events):\n", step);
    auto row = [&](const char* phase, float ms) { text += string_format("  %-58s %9.2f\n", phase, ms); };
    row("forward (and any earlier micro-steps)", backward_start);
    row("backward of the last micro-step", backward_end - backward_start);
    row("gradient reduction left after backward", reduced - backward_end);
    row("gradient norm, AdamW, parameter all-gather", step_end - reduced);
    row("step", step_end);
    if (!lags.empty()) {
        std::sort(lags.begin(), lags.end());
        text += string_format("  %zu layer reductions during backward: each done %.2f ms (median; max %.2f) after its "
                              "layer was handed over\n",
                              lags.size(), lags[lags.size() / 2], lags.back());
    }
    return text;
}
