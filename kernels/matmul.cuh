// Linear layers through cuBLASLt: out = inp @ weight^T + bias, optionally followed by GELU, and
// the matching backward pass. Layout is PyTorch's, row-major: inp (M,K), weight (N,K), out (M,N).
// cuBLASLt is column-major, so every GEMM is posed on the transposed problem (kernels/matmul_plan.cuh).
//
// Fusions (cuBLASLt epilogues), each paired with an unfused alternative of our own:
//   forward + bias            BIAS            | plain GEMM, then add_bias (in place)
//   forward + (bias +) GELU   GELU_AUX(_BIAS) | GEMM (+BIAS epilogue) into pre_gelu, then gelu_forward
//   input grad through GELU   DGELU           | plain GEMM, then gelu_backward_inplace
// The unfused column sum (bias gradients) is deterministic: a fixed two-stage tree, no atomics.
//
// Bias gradients. A linear layer's bias gradient is the column sum of its dout. cuBLASLt can fold
// it into a GEMM epilogue, but at GPT-2 shapes on Hopper that costs more than a separate pass
// over dout (BGRADB and DGELU_BGRAD slow their GEMMs by a third or more: the README's matmul
// section has the figures). So no GEMM carries a bias gradient: the output projections' come from
// the LayerNorm backward that writes their dout (kernels/layernorm.cuh), and the rest (qkv's, and
// fc's, whose dout is the GELU'd input gradient of fc_proj, dbias_of_dinp) from
// column_sum_accumulate, one read of a tensor that was just written.
//
// Choosing the path and the algorithm. For every GEMM shape (site, dtype, M, N, K, epilogue) the
// heuristic proposes several algorithms per path (fused, unfused). With MatmulTuning::kAutotune
// the first call of each shape times them all on the caller's stream and keeps the fastest,
// leaning towards the fused path and the heuristic's first algorithm (kernels/matmul_autotune.cuh
// says by how much and why). Paths and algorithms round differently, so the choices are part of
// what makes a run reproducible: tuning_record() returns them (host/matmul_tuning_record.h, with
// each algorithm's bytes) and replay() makes another context use exactly the same ones: a resumed
// run, or every rank with rank 0's choices. Without timing (kAlwaysFused, kAlwaysUnfused, or after
// set_tuning switched autotuning off) a shape not in a replayed record takes the heuristic's first
// algorithm, a pure function of the GPU, shape, types, alignment and cuBLASLt version, and needs no
// synchronization (e.g. inside CUDA-graph capture).
//
// The engine. MatmulEngine::simple replaces every cuBLASLt GEMM by our own plain kernel
// (kernels/matmul_simple.cuh) with the unfused epilogues, for compute-sanitizer runs (the
// trainer's --matmul-engine simple); tuning, records and replays then concern nothing.
//
// Descriptors, layouts and the heuristic's answers are built once per shape and cached. One
// context serves one stream at a time: the workspace, scratch and the descriptors' pointer
// attributes are shared by all calls.
#pragma once

#include <cublasLt.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "host/matmul_engine.h"
#include "host/matmul_tuning_record.h"
#include "kernels/common.cuh"
#include "kernels/matmul_autotune.cuh"
#include "kernels/matmul_epilogues.cuh"
#include "kernels/matmul_plan.cuh"
#include "kernels/matmul_simple.cuh"

enum class MatmulTuning {
    kAutotune,       // time every path and algorithm on first use of each shape; keep the fastest (default)
    kAlwaysFused,    // the epilogue wherever cuBLASLt offers one, the heuristic's first algorithm; never times
    kAlwaysUnfused,  // GEMM + our kernels wherever possible, the heuristic's first algorithm (benchmarks)
};

class MatmulContext;
template <typename T>
void matmul_forward(MatmulContext& context, T* out, T* pre_gelu, const T* inp, const T* weight, const T* bias, int M,
                    int N, int K, cudaStream_t stream);
template <typename T>
void matmul_backward(MatmulContext& context, T* dinp, float* dbias_of_dinp, float* dweight, float* dbias,
                     const T* dout, const T* inp, const T* weight, const T* inp_pre_gelu, int M, int N, int K,
                     cudaStream_t stream);

// One candidate of a timed shape, for workbenches (dev/cuda/matmul.cu).
struct TimedCandidate {
    bool fused_path;
    int index;  // in the heuristic's list for that path
    cublasLtMatmulAlgo_t algo;
    float ms;   // autotune's median
};

class MatmulContext {
  public:
    static constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what Hopper's fastest kernels ask for
    static constexpr int kMaxCandidates = 8;  // algorithms asked of the heuristic per path when autotuning

    explicit MatmulContext(MatmulTuning tuning = MatmulTuning::kAutotune, MatmulEngine engine = MatmulEngine::cublaslt)
        : tuning_(tuning), engine_(engine), cublaslt_version_(cublasLtGetVersion()) {
        CUBLASLT_CHECK(cublasLtCreate(&handle_));
        CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
        CUDA_CHECK(cudaMalloc(&column_sum_scratch_, kColumnSumScratchFloats * sizeof(float)));
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        cudaDeviceProp props{};
        CUDA_CHECK(cudaGetDeviceProperties(&props, device));
        device_name_ = props.name;
    }
    ~MatmulContext() {
        plans_.clear();
        cudaFree(column_sum_scratch_);
        cudaFree(workspace_);
        cublasLtDestroy(handle_);
    }
    MatmulContext(const MatmulContext&) = delete;
    MatmulContext& operator=(const MatmulContext&) = delete;

    MatmulTuning tuning() const { return tuning_; }
    MatmulEngine engine() const { return engine_; }
    // For shapes first used from now on (the trainer times during its first step only).
    void set_tuning(MatmulTuning tuning) { tuning_ = tuning; }

    // Every shape's choice (timed, the heuristic's first, or replayed), with this GPU and cuBLASLt
    // version: replayed, it reproduces every GEMM this context has run.
    TuningRecord tuning_record() const {
        TuningRecord record;
        record.device = device_name_;
        record.cublaslt_version = cublaslt_version_;
        record.choices = recorded_;
        for (const auto& [key, plan] : plans_)
            if (plan->recorded) record.choices[key] = *plan->recorded;
        return record;
    }

    // Makes every shape of `record` take its path and algorithm: shapes planned already at once,
    // the others when first used. A recorded algorithm that does not run here is replaced by
    // timing (or, without autotuning, by the heuristic's first) with a note on stderr. A record of
    // another GPU or cuBLASLt version is not replayed at all: returns why ("" when replayed).
    std::string replay(const TuningRecord& record) {
        if (record.device != device_name_ || record.cublaslt_version != cublaslt_version_)
            return string_format("its choices were made on %s with cuBLASLt %llu; this is %s with cuBLASLt %llu",
                                 record.device.c_str(), (unsigned long long)record.cublaslt_version,
                                 device_name_.c_str(), (unsigned long long)cublaslt_version_);
        for (const auto& [key, choice] : record.choices) {
            recorded_[key] = choice;
            if (const auto planned = plans_.find(key); planned != plans_.end())
                apply_recorded(*planned->second, key, choice, "it keeps the choice it has");
        }
        return "";
    }

    // With several ranks: every shape decided from now on takes rank 0's choice, which `agree`
    // returns on every rank given this rank's own. It is a collective per shape, so every rank
    // must first use the same shapes in the same order (the trainer's first step). Empty: each
    // context decides alone.
    using Agreement = std::function<GemmChoice(const GemmKey&, const GemmChoice&)>;
    void set_agreement(Agreement agree) { agree_ = std::move(agree); }

    // The timed candidates of `key` (empty when it was not timed), fused path first.
    std::vector<TimedCandidate> timed_candidates(const GemmKey& key) const {
        std::vector<TimedCandidate> list;
        const auto planned = plans_.find(key);
        if (planned == plans_.end()) return list;
        for (bool fused_path : {true, false}) {
            const GemmVariant& variant = planned->second->variant(fused_path);
            for (size_t i = 0; i < variant.candidate_ms.size(); ++i)
                list.push_back({fused_path, (int)i, variant.candidates[i], variant.candidate_ms[i]});
        }
        return list;
    }

  private:
    template <typename T>
    friend void matmul_forward(MatmulContext&, T*, T*, const T*, const T*, const T*, int, int, int, cudaStream_t);
    template <typename T>
    friend void matmul_backward(MatmulContext&, T*, float*, float*, float*, const T*, const T*, const T*, const T*,
                                int, int, int, GradWrite, cudaStream_t);

    GemmPlan& plan_for(const GemmKey& key, const void* bias, const void* aux) {
        auto found = plans_.find(key);
        if (found != plans_.end()) return *found->second;
        // Without timing only the heuristic's first answer is used: asking for that one alone
        // keeps the untimed choice what it was before several were asked for.
        const int candidates = tuning_ == MatmulTuning::kAutotune ? kMaxCandidates : 1;
        return *plans_.emplace(key, GemmPlanBuilder(handle_, kWorkspaceBytes).build(key, bias, aux, candidates))
                    .first->second;
    }

    // D = A*B (beta 0) or D += A*B (beta 1); bias/aux (when non-null) rebind the epilogue's
    // pointers, which differ per layer for the same shape.
    void run_gemm(const GemmPlan& plan, const GemmVariant& variant, const void* a, const void* b, void* d, float beta,
                  const void* bias, const void* aux, cudaStream_t stream) {
        if (bias) GemmPlanBuilder::set_desc(variant.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
        if (aux) GemmPlanBuilder::set_desc(variant.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
        const float alpha = 1.0f;
        CUBLASLT_CHECK(cublasLtMatmul(handle_, variant.desc, &alpha, a, plan.a, b, plan.b, &beta, d, plan.d, d, plan.d,
                                      &variant.algo, workspace_, kWorkspaceBytes, stream));
    }

    // Settles the plan's path and algorithm on the first call of its shape: from a replayed
    // record, else by timing run(fused_path) (kAutotune), else the heuristic's first; then, with
    // an agreement, rank 0's choice.
    template <typename Run>
    void decide(GemmPlan& plan, const GemmKey& key, Run&& run, cudaStream_t stream,
                const PreservedOutput& preserved = {}) {
        const auto recorded = recorded_.find(key);
        const char* instead = tuning_ == MatmulTuning::kAutotune ? "timing it again" : "the heuristic's first instead";
        if (recorded == recorded_.end() || !apply_recorded(plan, key, recorded->second, instead))
            decide_here(plan, run, stream, preserved);
        if (agree_) {
            const GemmChoice agreed = agree_(key, *plan.recorded);
            if (agreed.fused != plan.recorded->fused || agreed.algo != plan.recorded->algo)
                apply_recorded(plan, key, agreed, "this rank keeps its own choice");
        }
    }

    template <typename Run>
    void decide_here(GemmPlan& plan, Run& run, cudaStream_t stream, const PreservedOutput& preserved) {
        if (tuning_ == MatmulTuning::kAutotune) {
            plan.recorded = GemmAutotuner::tune(plan, run, stream, preserved);
        } else {
            const bool prefer_fused = tuning_ == MatmulTuning::kAlwaysFused || !plan.has_fusion;
            plan.use_fused = prefer_fused ? plan.fused.available() : !plan.unfused.available();
            for (GemmVariant* v : {&plan.fused, &plan.unfused})
                if (v->available()) v->algo = v->candidates[0];
            GemmChoice choice;
            choice.fused = plan.use_fused;
            choice.algo = algo_bytes(plan.variant(plan.use_fused).algo);
            choice.how = "heuristic";
            choice.candidates = (int)plan.variant(plan.use_fused).candidates.size();
            plan.recorded = choice;
        }
        plan.decided = true;
    }

    // Makes `choice` the plan's, if its algorithm runs here; else says so, and what happens
    // `instead`, on stderr and returns false.
    bool apply_recorded(GemmPlan& plan, const GemmKey& key, const GemmChoice& choice, const char* instead) {
        const cublasLtMatmulAlgo_t algo = algo_from_bytes(choice.algo);
        GemmVariant& variant = plan.variant(choice.fused);
        cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
        if (!GemmPlanBuilder(handle_, kWorkspaceBytes).runs(plan, variant, algo, &status)) {
            std::fprintf(stderr,
                         "matmul: the recorded %s algorithm for %s does not run here (cuBLASLt: %s); %s: this "
                         "shape's numerics may differ from those of the run that made the record\n",
                         choice.fused ? "fused" : "unfused", describe_gemm(key).c_str(), cublasLtGetStatusName(status),
                         instead);
            return false;
        }
        variant.algo = algo;
        plan.use_fused = choice.fused;
        plan.recorded = choice;
        plan.decided = true;
        return true;
    }

    MatmulTuning tuning_;
    MatmulEngine engine_;
    std::string device_name_;   // cudaDeviceProp::name: a record names the GPU it was made on
    uint64_t cublaslt_version_;
    cublasLtHandle_t handle_ = nullptr;
    void* workspace_ = nullptr;
    float* column_sum_scratch_ = nullptr;  // kColumnSumScratchFloats
    std::map<GemmKey, std::unique_ptr<GemmPlan>> plans_;
    std::map<GemmKey, GemmChoice> recorded_;  // replayed choices, applied when their shape is planned
    Agreement agree_;
};

// ---------------------------------------------------------------------------------------------
// Launchers

inline void require_matmul_operand(const char* op, const char* name, const void* pointer) {
    REQUIRE(pointer == nullptr || is_aligned16(pointer),
            "%s: %s is not 16-byte aligned; cuBLASLt's fast kernels and our vector kernels need 16-byte aligned "
            "operands (start every tensor view at a multiple of 8 elements)",
            op, name);
}
inline void require_matmul_shape(const char* op, int M, int N, int K) {
    REQUIRE(M > 0 && N > 0 && K > 0, "%s: M=%d, N=%d, K=%d must be positive", op, M, N, K);
    REQUIRE(N % 8 == 0 && K % 8 == 0,
            "%s: N=%d and K=%d must be multiples of 8 (16-byte rows); pad the layer width or the vocabulary", op, N,
            K);
}

// out (M,N) = inp (M,K) @ weight (N,K)^T + bias (N).
// With pre_gelu (M,N) non-null: pre_gelu = that result and out = gelu_tanh(pre_gelu).
template <typename T>
void matmul_forward(MatmulContext& context, T* out, T* pre_gelu, const T* inp, const T* weight, const T* bias, int M,
                    int N, int K, cudaStream_t stream) {
    require_matmul_shape("matmul_forward", M, N, K);
    REQUIRE(out && inp && weight, "matmul_forward: out, inp and weight are required");
    require_matmul_operand("matmul_forward", "out", out);
    require_matmul_operand("matmul_forward", "pre_gelu", pre_gelu);
    require_matmul_operand("matmul_forward", "inp", inp);
    require_matmul_operand("matmul_forward", "weight", weight);
    require_matmul_operand("matmul_forward", "bias", bias);
    const bool gelu = pre_gelu != nullptr;
    if (context.engine() == MatmulEngine::simple) {  // the unfused path, on our own GEMM
        T* gemm_out = gelu ? pre_gelu : out;
        // (M,N): A = inp (M,K) and B = weight (N,K), both along their rows.
        simple_gemm(gemm_out, inp, weight, M, N, K, K, 1, K, 1, /*accumulate=*/false, stream);
        if (bias) add_bias(gemm_out, bias, M, N, stream);
        if (gelu) gelu_forward(out, pre_gelu, static_cast<long long>(M) * N, stream);
        return;
    }
    const GemmKey key{GemmSite::kForward, gemm_dtype<T>(), M, N, K, bias != nullptr, gelu};
    GemmPlan& plan = context.plan_for(key, bias, pre_gelu);
    auto run = [&](bool fused) {
        if (fused) {
            context.run_gemm(plan, plan.fused, weight, inp, out, 0.0f, bias, pre_gelu, stream);
        } else if (gelu) {
            context.run_gemm(plan, plan.unfused, weight, inp, pre_gelu, 0.0f, bias, nullptr, stream);
            gelu_forward(out, pre_gelu, static_cast<long long>(M) * N, stream);
        } else {
            context.run_gemm(plan, plan.unfused, weight, inp, out, 0.0f, nullptr, nullptr, stream);
            add_bias(out, bias, M, N, stream);
        }
    };
    if (!plan.decided) context.decide(plan, key, run, stream);
    run(plan.use_fused);
}

// dinp (M,K) = dout (M,N) @ weight (N,K), times gelu'(inp_pre_gelu) when inp_pre_gelu (M,K) is
// non-null (the layer's input was gelu(inp_pre_gelu)); dinp == nullptr skips it.
// dbias_of_dinp (K) += column sums of that dinp: the bias gradient of the layer that produced
// inp_pre_gelu (dinp is its dout), a pass over dinp as stored; nullptr skips it.
// dweight (N,K) += dout^T @ inp (M,K); dweight == nullptr skips it.
// dbias (N) += column sums of dout, a separate pass over dout; dbias == nullptr skips it.
// The three parameter gradients are stored instead (=) with `write` GradWrite::store: the
// weight gradient's GEMM then runs with beta 0 and reads nothing of dweight.
template <typename T>
void matmul_backward(MatmulContext& context, T* dinp, float* dbias_of_dinp, float* dweight, float* dbias,
                     const T* dout, const T* inp, const T* weight, const T* inp_pre_gelu, int M, int N, int K,
                     GradWrite write, cudaStream_t stream) {
    require_matmul_shape("matmul_backward", M, N, K);
    REQUIRE(dout && (dinp == nullptr || weight) && (dweight == nullptr || inp),
            "matmul_backward: dout is required, weight when dinp is wanted, inp when dweight is wanted");
    REQUIRE(dbias_of_dinp == nullptr || dinp, "matmul_backward: dbias_of_dinp is the column sums of dinp; pass dinp");
    require_matmul_operand("matmul_backward", "dinp", dinp);
    require_matmul_operand("matmul_backward", "dbias_of_dinp", dbias_of_dinp);
    require_matmul_operand("matmul_backward", "dweight", dweight);
    require_matmul_operand("matmul_backward", "dbias", dbias);
    require_matmul_operand("matmul_backward", "dout", dout);
    require_matmul_operand("matmul_backward", "inp", inp);
    require_matmul_operand("matmul_backward", "weight", weight);
    require_matmul_operand("matmul_backward", "inp_pre_gelu", inp_pre_gelu);

    const bool simple = context.engine() == MatmulEngine::simple;  // our own GEMM, unfused
    if (dinp) {
        const bool gelu = inp_pre_gelu != nullptr;
        if (simple) {
            // dinp (M,K): A = dout (M,N) along its rows, B(k, n) = weight (N,K) down its columns.
            simple_gemm(dinp, dout, weight, M, K, N, N, 1, 1, K, /*accumulate=*/false, stream);
            if (gelu) gelu_backward_inplace(dinp, inp_pre_gelu, static_cast<long long>(M) * K, stream);
        } else {
            const GemmKey key{GemmSite::kBackwardInput, gemm_dtype<T>(), M, N, K, false, gelu};
            GemmPlan& plan = context.plan_for(key, nullptr, inp_pre_gelu);
            auto run = [&](bool fused) {
                if (fused) {
                    context.run_gemm(plan, plan.fused, weight, dout, dinp, 0.0f, nullptr, inp_pre_gelu, stream);
                } else {
                    context.run_gemm(plan, plan.unfused, weight, dout, dinp, 0.0f, nullptr, nullptr, stream);
                    gelu_backward_inplace(dinp, inp_pre_gelu, static_cast<long long>(M) * K, stream);
                }
            };
            if (!plan.decided) context.decide(plan, key, run, stream);
            run(plan.use_fused);
        }
        if (dbias_of_dinp)
            column_sum_accumulate(dbias_of_dinp, dinp, M, K, write, context.column_sum_scratch_, stream);
    }

    if (dweight && simple) {
        // dweight (N,K) += dout^T inp: A(n, m) = dout (M,N) down its columns, B(k, m) = inp (M,K) likewise.
        simple_gemm(dweight, dout, inp, N, K, M, 1, N, 1, K, /*accumulate=*/write == GradWrite::add, stream);
    } else if (dweight) {
        const GemmKey key{GemmSite::kBackwardWeight, gemm_dtype<T>(), M, N, K, false, false};
        GemmPlan& plan = context.plan_for(key, nullptr, nullptr);
        auto run = [&](bool) {
            context.run_gemm(plan, plan.fused, inp, dout, dweight, write == GradWrite::add ? 1.0f : 0.0f, nullptr,
                             nullptr, stream);
        };
        if (!plan.decided) context.decide(plan, key, run, stream, PreservedOutput{dweight, size_t(N) * K});
        run(true);
    }
    if (dbias) column_sum_accumulate(dbias, dout, M, N, write, context.column_sum_scratch_, stream);
}
