// --cuda-graphs 1: the launches of a training step replayed from CUDA graphs.
//
// Launched one by one, each kernel of a micro-step costs the host a launch call and leaves the GPU
// a short gap before it starts; replayed from a graph, the whole sequence is one launch whose
// kernels were prepared when it was instantiated, which shortens those gaps (dev/bench/README.md
// says how to measure them). Two graphs:
//   micro-step   Gpt2Model::forward and backward_to_embedding: every kernel from the token
//                embedding to d(embedding output), every parameter gradient but the embedding
//                lookups' share of wte and wpe
//   optimizer    ModelParameters::apply_adamw: AdamW, tensor by tensor
// and in stream order around them, eagerly:
//   - the batch's upload (into the same device buffers each time: BatchFeed);
//   - what changes between replays, stored in device memory before each: the micro-step's dropout
//     offset (DropoutParams::offset_base) and the step's AdamW values (set_adamw_step); each with
//     store_on_device, which needs no host buffer that outlives the copy and leaves the graph
//     untouched (patching arguments with cudaGraphExecKernelNodeSetParams would need to know
//     which argument of which node carries them);
//   - the loss download and the embedding backward, whose plan is built on the host from the
//     batch's tokens (EncoderBackwardPlan: its grid is the batch's count of distinct tokens);
//   - the gradient reductions: collectives are never captured (a capture must end joined, so a
//     micro-step whose backward all-reduces layer by layer would wait at its end for every
//     reduction it overlaps today; such micro-steps run eagerly, below);
//   - the gradient norm, whose value the host needs to decide clipping and skipping, and
//     everything between steps.
// What a graph does not read from memory is baked into it: a graph is captured again when
// MicroStepShape differs (the fp16 loss scale rides on the cross-entropy's gradient scale). A
// step's first micro-step stores the gradients and the others add to them (GradWrite), so with
// accumulation there are two micro-step graphs, one for each.
//
// Eager instead of replayed, whatever --cuda-graphs says:
//   - the first step of the process: first uses (kernel modules, cuBLASLt plans, attention tensor
//     maps, shared-memory attributes) must not fall inside a capture; graphs are captured when
//     a later step first needs them (AdamW's after one eager update);
//   - a micro-step whose backward hands gradients to the comm stream (GradientSync::
//     backward_communicates: ZeRO-2's every micro-step, ZeRO-0's last with --overlap-grad-reduce
//     on several GPUs);
//   - the --timeline-step step (its events mark points inside the passes).
// The replayed kernels are the eager ones with the same arguments and the same inputs, in the
// same order, so the losses are bit-identical (scripts/test_gpt2cu.sh checks it).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "kernels/common.cuh"
#include "model/options.cuh"
#include "train/cuda_graph.cuh"

// The micro-step graphs, as the start-up announces them (scripts/test_gpt2cu.sh looks for them).
constexpr const char* kFirstMicroStepGraph = "a step's first micro-step (forward and backward, storing the gradients)";
constexpr const char* kLaterMicroStepGraph = "a later micro-step (forward and backward, adding to the gradients)";

// What a micro-step graph takes as kernel arguments that may change during a run.
struct MicroStepShape {
    int batch = 0;
    int seq_len = 0;
    float grad_scale = 0.0f;  // the cross-entropy's gradient scale: loss scale / targets per step
    GradWrite gradient_write = GradWrite::add;  // which of the two graphs (GradientSync::gradient_write)
    bool operator==(const MicroStepShape& other) const {
        return batch == other.batch && seq_len == other.seq_len && grad_scale == other.grad_scale &&
               gradient_write == other.gradient_write;
    }
};

// When the trainer's step runs from graphs, and the graphs. Without --cuda-graphs, every call
// enqueues eagerly.
class StepGraphs {
  public:
    // `enabled`: --cuda-graphs. `backward_communicates(last)`: GradientSync's, for the last
    // micro-step of a step and for the others; `timeline_step`: --timeline-step (0: none).
    // `announce`: print notes (rank 0).
    template <typename Communicates>
    StepGraphs(bool enabled, const Communicates& backward_communicates, int64_t timeline_step, bool announce)
        : enabled_(enabled), announce_(announce) {
        CUDA_CHECK(cudaMalloc(&pass_offset_, sizeof(uint64_t)));
        if (!enabled_) return;
        if (backward_communicates(false))
            notes_ += "CUDA graphs: every micro-step runs eagerly: each backward hands its layers' gradients to the "
                      "comm stream (ZeRO-2), which a graph does not capture; AdamW is replayed\n";
        else if (backward_communicates(true))
            notes_ += "CUDA graphs: the last micro-step of each step runs eagerly: its backward all-reduces each "
                      "layer's gradients (--overlap-grad-reduce), which a graph does not capture\n";
        if (timeline_step > 0)
            notes_ += "CUDA graphs: step " + std::to_string(timeline_step) +
                      " runs eagerly (--timeline-step marks points inside it)\n";
    }
    ~StepGraphs() { cudaFree(pass_offset_); }
    StepGraphs(const StepGraphs&) = delete;
    StepGraphs& operator=(const StepGraphs&) = delete;

    // For the start-up: which parts stay eager, one line each ("" without --cuda-graphs).
    const std::string& notes() const { return notes_; }

    // At each step's start: whether its micro-steps and update may replay graphs.
    void begin_step(int64_t step, bool timeline_step) {
        replaying_ = enabled_ && steps_begun_ > 0 && !timeline_step;
        ++steps_begun_;
        step_ = step;
    }

    // One micro-step's forward and backward: `enqueue(schedule)` enqueues them on `stream` with
    // `schedule`'s dropout masks. Replays the micro-step graph (capturing it first when it is
    // missing or `shape` changed) unless this micro-step runs eagerly: `capturable` false (its
    // backward communicates) or a step without graphs. `n_layer`: for the dropout offset.
    template <typename Enqueue>
    void micro_step(const DropoutSchedule& schedule, int n_layer, const MicroStepShape& shape, bool capturable,
                    Enqueue&& enqueue, cudaStream_t stream) {
        if (!replaying_ || !capturable) {
            enqueue(schedule);
            return;
        }
        store_on_device(pass_offset_, schedule.pass_offset(n_layer), stream);
        const int which = shape.gradient_write == GradWrite::store ? 0 : 1;
        CudaGraph& graph = micro_step_[which];
        if (graph.empty() || !(shape == micro_step_shape_[which])) {
            DropoutSchedule replayed = schedule;
            replayed.pass_offset_on_device = pass_offset_;
            capture(graph, which == 0 ? kFirstMicroStepGraph : kLaterMicroStepGraph, [&] { enqueue(replayed); },
                    stream);
            micro_step_shape_[which] = shape;
        }
        graph.launch(stream);
    }

    // The optimizer's update: `enqueue()` enqueues it on `stream`, reading its per-step values
    // from device memory; replayed from its graph in steps with graphs, once it has run eagerly
    // (the first step's update is skipped when fp16 overflows).
    template <typename Enqueue> void optimizer(Enqueue&& enqueue, cudaStream_t stream) {
        if (!replaying_ || !update_ran_eagerly_) {
            enqueue();
            update_ran_eagerly_ = true;
            return;
        }
        if (optimizer_.empty()) capture(optimizer_, "the AdamW update", enqueue, stream);
        optimizer_.launch(stream);
    }

  private:
    // The first capture of each graph is announced; captures again (the fp16 loss scale) are not.
    template <typename Enqueue>
    void capture(CudaGraph& graph, const char* what, Enqueue&& enqueue, cudaStream_t stream) {
        const bool first = graph.empty();
        graph.capture(enqueue, stream);
        if (first && announce_)
            std::printf("CUDA graphs: captured %s at step %lld (%zu nodes); later steps replay it\n", what,
                        (long long)step_, graph.nodes());
    }

    bool enabled_;
    bool announce_;
    std::string notes_;
    int64_t steps_begun_ = 0;
    int64_t step_ = 0;
    bool replaying_ = false;
    uint64_t* pass_offset_ = nullptr;  // (1): the replayed micro-step's DropoutSchedule::pass_offset()
    CudaGraph micro_step_[2];  // [0] the step's first micro-step (GradWrite::store), [1] the others
    MicroStepShape micro_step_shape_[2];
    bool update_ran_eagerly_ = false;
    CudaGraph optimizer_;
};
