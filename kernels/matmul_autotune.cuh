// Autotuning one GEMM shape (kernels/matmul.cuh, MatmulTuning::kAutotune): every algorithm the
// heuristic proposed for each epilogue path is run on the caller's stream, in interleaved rounds
// (so that clock changes touch all alike), and the median of kRepeats rounds decides.
//
// The choice leans towards the default, the fused path with the heuristic's first algorithm:
//   - within a path, another algorithm replaces the heuristic's first only when its median is
//     more than kAlgorithmMargin faster. The heuristic's first is what cuBLAS users get and it is
//     rarely far off; a median of a few timings still moves between runs (clocks under the power
//     limit, other work on the GPU), and a switch on noise would gain nothing while making two
//     fresh runs on the same machine choose differently more often.
//   - between paths, the unfused one replaces the fused one only when more than
//     kFusedPreferenceMargin faster: the fused path moves fewer bytes (the GEMM's output is not
//     read back by a second kernel), which the GEMM-only timing here does not see in full (the
//     second kernel's bytes compete with the neighbouring kernels in a real step).
#pragma once

#include <algorithm>
#include <vector>

#include "kernels/matmul_plan.cuh"

// An output the GEMM accumulates into (beta = 1, the weight gradient): timing runs the GEMM many
// times, so its values are saved to the host first and put back afterwards, bit for bit. Host
// memory, because the largest such output (the LM head's weight gradient, Vp x C fp32: 0.5 GB
// for gpt3-2.7B) need not fit the GPU's memory left over.
struct PreservedOutput {
    float* data = nullptr;  // nullptr: nothing to preserve
    size_t count = 0;
};

class GemmAutotuner {
  public:
    static constexpr int kRepeats = 7;
    static constexpr float kAlgorithmMargin = 0.03f;
    static constexpr float kFusedPreferenceMargin = 0.03f;

    // Times run(fused_path) for every candidate of both paths (the path's `algo` set to each in
    // turn), leaves the winner in the plan and returns it as the record holds it. Synchronizes
    // the stream: once per shape, on first use.
    template <typename Run>
    static GemmChoice tune(GemmPlan& plan, Run&& run, cudaStream_t stream, const PreservedOutput& preserved) {
        cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
        CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
        REQUIRE(capture == cudaStreamCaptureStatusNone,
                "matmul autotune cannot time inside CUDA-graph capture: run one uncaptured step first, replay a "
                "tuning record, or use MatmulTuning::kAlwaysFused");
        std::vector<float> saved(preserved.data ? preserved.count : 0);
        copy(saved.data(), preserved.data, saved.size() * sizeof(float), cudaMemcpyDeviceToHost, stream);
        time_candidates(plan, run, stream);
        copy(preserved.data, saved.data(), saved.size() * sizeof(float), cudaMemcpyHostToDevice, stream);

        GemmVariant* paths[2] = {&plan.fused, &plan.unfused};
        int chosen[2] = {0, 0};
        for (int p = 0; p < 2; ++p)
            if (paths[p]->available()) chosen[p] = pick_algorithm(*paths[p]);
        auto ms = [&](int p) { return paths[p]->candidate_ms[chosen[p]]; };
        plan.use_fused = !plan.unfused.available() ||
                         (plan.fused.available() && ms(0) <= ms(1) * (1.0f + kFusedPreferenceMargin));
        const int p = plan.use_fused ? 0 : 1;
        GemmVariant& path = *paths[p];
        path.algo = path.candidates[chosen[p]];
        if (GemmVariant& other = *paths[1 - p]; other.available()) other.algo = other.candidates[chosen[1 - p]];
        GemmChoice choice;
        choice.fused = plan.use_fused;
        choice.algo = algo_bytes(path.algo);
        choice.how = "timed";
        choice.ms = ms(p);
        choice.heuristic_ms = plan.fused.available() ? plan.fused.candidate_ms[0] : plan.unfused.candidate_ms[0];
        choice.index = chosen[p];
        choice.candidates = (int)path.candidates.size();
        return choice;
    }

  private:
    // The heuristic's first (index 0) unless another candidate's median beats it by the margin.
    static int pick_algorithm(const GemmVariant& variant) {
        const std::vector<float>& ms = variant.candidate_ms;
        const int fastest = (int)(std::min_element(ms.begin(), ms.end()) - ms.begin());
        return ms[fastest] < ms[0] * (1.0f - kAlgorithmMargin) ? fastest : 0;
    }

    template <typename Run> static void time_candidates(GemmPlan& plan, Run& run, cudaStream_t stream) {
        struct Candidate {
            bool fused_path;
            int index;
            std::vector<float> ms;
        };
        std::vector<Candidate> candidates;
        for (bool fused_path : {true, false})
            for (int i = 0; i < (int)plan.variant(fused_path).candidates.size(); ++i)
                candidates.push_back({fused_path, i, {}});
        cudaEvent_t start, stop;
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
        for (int repeat = -1; repeat < kRepeats; ++repeat) {  // repeat -1 warms every candidate up
            for (Candidate& candidate : candidates) {
                GemmVariant& variant = plan.variant(candidate.fused_path);
                variant.algo = variant.candidates[candidate.index];
                CUDA_CHECK(cudaEventRecord(start, stream));
                run(candidate.fused_path);
                CUDA_CHECK(cudaEventRecord(stop, stream));
                CUDA_CHECK(cudaEventSynchronize(stop));
                float ms = 0.0f;
                CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
                if (repeat >= 0) candidate.ms.push_back(ms);
            }
        }
        CUDA_CHECK(cudaEventDestroy(start));
        CUDA_CHECK(cudaEventDestroy(stop));
        for (bool fused_path : {true, false}) plan.variant(fused_path).candidate_ms.clear();
        for (Candidate& candidate : candidates) {
            std::sort(candidate.ms.begin(), candidate.ms.end());
            plan.variant(candidate.fused_path).candidate_ms.push_back(candidate.ms[kRepeats / 2]);
        }
    }

    // On `stream`, then waited for: a pageable host buffer must outlive its copy.
    static void copy(void* to, const void* from, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
        if (bytes == 0) return;
        CUDA_CHECK(cudaMemcpyAsync(to, from, bytes, kind, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
    }
};
