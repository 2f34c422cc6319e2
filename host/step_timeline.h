// Where one training step's time goes on this GPU (--timeline-step): CUDA events recorded between
// the step's phases, read after the step's final synchronization.
//
// An event completes when the work enqueued before it on its stream has: a mark on the compute
// stream says when that phase's kernels finished, a mark on the comm stream when the collectives
// enqueued so far did. So "reduction after backward" is the part of the gradient reduction that
// overlap did not hide, and each layer's lag is how long its reduction took from the moment the
// backward pass handed it over (queueing behind the previous layer's included).
//
// Header-only; CUDA runtime only.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "host/format.h"
#include "kernels/common.cuh"

class StepTimeline {
  public:
    enum class Mark { StepStart, BackwardStart, LayerHandoff, LayerReduced, BackwardEnd, GradientsReduced, StepEnd };

    StepTimeline() = default;
    StepTimeline(const StepTimeline&) = delete;
    StepTimeline& operator=(const StepTimeline&) = delete;
    ~StepTimeline() { clear(); }

    // Starts recording this step when `enabled`; every mark() until report() is then kept.
    void begin(bool enabled, cudaStream_t stream) {
        clear();
        enabled_ = enabled;
        mark(Mark::StepStart, stream);
    }
    bool enabled() const { return enabled_; }

    // `layer` names the layer of LayerHandoff and LayerReduced marks.
    void mark(Mark what, cudaStream_t stream, int layer = -1) {
        if (!enabled_) return;
        cudaEvent_t event = nullptr;
        CUDA_CHECK(cudaEventCreate(&event));
        CUDA_CHECK(cudaEventRecord(event, stream));
        marks_.push_back({what, layer, event});
    }

    // After the step's streams are synchronized: the phases in ms, and the per-layer lags.
    std::string report(long long step) {
        if (!enabled_) return "";
        auto at = [&](Mark what) -> float {
            for (const Recorded& r : marks_)
                if (r.what == what) return elapsed(r.event);
            return -1.0f;
        };
        const float backward_start = at(Mark::BackwardStart), backward_end = at(Mark::BackwardEnd);
        const float reduced = at(Mark::GradientsReduced), step_end = at(Mark::StepEnd);
        std::vector<float> lags;
        for (const Recorded& handoff : marks_) {
            if (handoff.what != Mark::LayerHandoff) continue;
            for (const Recorded& done : marks_)
                if (done.what == Mark::LayerReduced && done.layer == handoff.layer) {
                    lags.push_back(elapsed(done.event) - elapsed(handoff.event));
                    break;
                }
        }
        std::string text = string_format("timeline of step %lld on this GPU (ms, CUDA events):\n", step);
        text += string_format("  %-58s %9.2f\n", "forward (and any earlier micro-steps)", backward_start);
        text += string_format("  %-58s %9.2f\n", "backward of the last micro-step", backward_end - backward_start);
        text += string_format("  %-58s %9.2f\n", "gradient reduction left after backward", reduced - backward_end);
        text += string_format("  %-58s %9.2f\n", "gradient norm, AdamW, parameter all-gather", step_end - reduced);
        text += string_format("  %-58s %9.2f\n", "step", step_end);
        if (!lags.empty()) {
            std::vector<float> sorted = lags;
            std::sort(sorted.begin(), sorted.end());
            text += string_format("  %zu layer reductions during backward: each done %.2f ms (median; max %.2f) after "
                                  "its layer was handed over\n",
                                  sorted.size(), sorted[sorted.size() / 2], sorted.back());
        }
        clear();
        return text;
    }

  private:
    struct Recorded {
        Mark what;
        int layer;
        cudaEvent_t event;
    };
    float elapsed(cudaEvent_t event) const {
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, marks_.front().event, event));
        return ms;
    }
    void clear() {
        for (const Recorded& r : marks_) cudaEventDestroy(r.event);
        marks_.clear();
        enabled_ = false;
    }

    bool enabled_ = false;
    std::vector<Recorded> marks_;
};
