// Where one training step's time went (--timeline-step). The trainer records a CUDA event at each
// mark below (StepTimeline in train_gpt2.cu); this turns their times into the printed summary.
//
// An event completes when the work enqueued before it on its stream has: a mark on the compute
// stream says when that phase's kernels finished, a mark on the comm stream when the collectives
// enqueued so far did. So "reduction left after backward" is the part of the gradient reduction
// that overlap did not hide, and a layer's lag is how long its reduction took from the moment the
// backward pass handed it over (queueing behind the previous layer's included).
#pragma once

#include <string>
#include <vector>

enum class TimelineMark { StepStart, BackwardStart, LayerHandoff, LayerReduced, BackwardEnd, GradientsReduced, StepEnd };

struct TimedMark {
    TimelineMark what;
    int layer;  // LayerHandoff and LayerReduced; -1 otherwise
    float ms;   // from the step's start
};

// The phases of `step` (forward, backward, reduction left after backward, optimizer, step) and,
// when layers were handed over, the median and largest lag from each LayerHandoff to the next
// LayerReduced of that layer (ZeRO-2 hands every layer over once per micro-step).
std::string summarize_step_timeline(long long step, const std::vector<TimedMark>& marks);
