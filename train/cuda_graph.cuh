// One CUDA graph: what a callable enqueues on a stream, captured once and replayed. The trainer's
// step graphs (train/step_graph.cuh) and generation's decode step (train/generator.cuh) use it.
#pragma once

#include <cstddef>

#include "kernels/common.cuh"

class CudaGraph {
  public:
    CudaGraph() = default;
    ~CudaGraph() { reset(); }
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;

    bool empty() const { return exec_ == nullptr; }
    size_t nodes() const { return nodes_; }

    // Records what `enqueue()` puts on `stream` (nothing runs), replacing an earlier capture; if
    // `enqueue` throws, the capture is ended and dropped (the stream is usable again) and the
    // graph stays empty. Thread-local capture mode: other threads (the NCCL watchdog polls
    // events) are not bound by it.
    template <typename Enqueue> void capture(Enqueue&& enqueue, cudaStream_t stream) {
        reset();
        cudaGraph_t graph = nullptr;
        CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            enqueue();
        } catch (...) {
            cudaStreamEndCapture(stream, &graph);
            if (graph) cudaGraphDestroy(graph);
            throw;
        }
        const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
        REQUIRE(ended == cudaSuccess,
                "CUDA-graph capture failed (%s); --cuda-graphs 0 and --generate-cuda-graph 0 run without graphs",
                cudaGetErrorString(ended));
        CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes_));
        CUDA_CHECK(cudaGraphInstantiate(&exec_, graph, 0));
        CUDA_CHECK(cudaGraphDestroy(graph));
    }
    void launch(cudaStream_t stream) const { CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

  private:
    void reset() {
        if (exec_) cudaGraphExecDestroy(exec_);
        exec_ = nullptr;
        nodes_ = 0;
    }
    cudaGraphExec_t exec_ = nullptr;
    size_t nodes_ = 0;
};
