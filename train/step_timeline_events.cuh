// --timeline-step: a CUDA event at each mark of one step, summarized after the step's final
// synchronization (host/step_timeline.h says what each mark means and does the arithmetic).
#pragma once

#include <string>
#include <vector>

#include "host/step_timeline.h"
#include "kernels/common.cuh"

class StepTimeline {
  public:
    StepTimeline() = default;
    StepTimeline(const StepTimeline&) = delete;
    StepTimeline& operator=(const StepTimeline&) = delete;
    ~StepTimeline() { clear(); }

    // Records this step's marks when `enabled`; until then mark() does nothing.
    void begin(bool enabled, cudaStream_t stream) {
        clear();
        enabled_ = enabled;
        mark(TimelineMark::StepStart, stream);
    }
    bool enabled() const { return enabled_; }
    void mark(TimelineMark what, cudaStream_t stream, int layer = -1) {
        if (!enabled_) return;
        cudaEvent_t event = nullptr;
        CUDA_CHECK(cudaEventCreate(&event));
        CUDA_CHECK(cudaEventRecord(event, stream));
        events_.push_back({what, layer, event});
    }
    // After the step's streams are synchronized.
    std::string report(long long step) {
        std::vector<TimedMark> marks;
        for (const Recorded& r : events_) {
            float ms = 0.0f;
            CUDA_CHECK(cudaEventElapsedTime(&ms, events_.front().event, r.event));
            marks.push_back({r.what, r.layer, ms});
        }
        clear();
        return summarize_step_timeline(step, marks);
    }

  private:
    struct Recorded {
        TimelineMark what;
        int layer;
        cudaEvent_t event;
    };
    void clear() {
        for (const Recorded& r : events_) cudaEventDestroy(r.event);
        events_.clear();
        enabled_ = false;
    }
    bool enabled_ = false;
    std::vector<Recorded> events_;
};
