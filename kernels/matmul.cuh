// Linear layers through cuBLASLt: out = inp @ weight^T + bias, optionally followed by GELU, and
// the matching backward pass. Layout is PyTorch's, row-major: inp (M,K), weight (N,K), out (M,N).
//
// cuBLASLt is column-major, so every GEMM is posed on the transposed problem. A row-major
// (R,C) matrix is a column-major (C,R) matrix with leading dimension C:
//   forward        out^T (N,M)    = op_T(weight as (K,N)) * (inp as (K,M))
//   input grad     dinp^T (K,M)   = (weight as (K,N)) * (dout as (N,M))
//   weight grad    dweight^T (K,N) = (inp as (K,M)) * op_T(dout as (N,M))      [beta = 1: +=]
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
// Choosing between fused and unfused: an epilogue is not always the faster path (the seed reports
// GELU epilogues losing on Hopper for some shapes). With MatmulTuning::kAutotune the first call of
// each (site, dtype, shape, fusion) times both paths on the caller's stream and keeps the faster,
// preferring the fused path unless the unfused one wins by more than kFusedPreferenceMargin (the
// fused path moves fewer bytes, and the margin keeps the choice stable against timing noise).
// The two paths round differently, so the choices are part of what makes a run reproducible:
// tuning_record() prints them and load_tuning_record() replays them, so a resumed or repeated
// run (or every rank, from rank 0's record) uses exactly the same paths. kAlwaysFused needs no
// timing at all (and so no synchronization, e.g. inside CUDA-graph capture).
//
// Descriptors, layouts and the heuristic's algorithm (always its first answer: a pure function of
// the GPU, shape, types, alignment and cuBLASLt version, so runs on the same setup agree) are built
// once per key and cached. One context serves one stream at a time: the workspace, scratch and
// the descriptors' pointer attributes are shared by all calls.
#pragma once

#include <cublasLt.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/common.cuh"
#include "kernels/matmul_epilogues.cuh"

inline void cublaslt_check_impl(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "cuBLASLt error: %s (%s)\n  in %s\n  at %s:%d\n", cublasLtGetStatusName(status),
                     cublasLtGetStatusString(status), call, file, line);
        std::exit(EXIT_FAILURE);
    }
}
#define CUBLASLT_CHECK(call) cublaslt_check_impl((call), #call, __FILE__, __LINE__)

template <typename T> constexpr cudaDataType_t cuda_data_type();
template <> constexpr cudaDataType_t cuda_data_type<__nv_bfloat16>() { return CUDA_R_16BF; }
template <> constexpr cudaDataType_t cuda_data_type<__half>() { return CUDA_R_16F; }

// ---------------------------------------------------------------------------------------------
// The context: handle, workspace, per-shape plans and the fused-vs-unfused choices.

enum class MatmulTuning {
    kAutotune,       // time fused vs unfused on first use of each shape; keep the faster (default)
    kAlwaysFused,    // the epilogue wherever cuBLASLt offers one; never times, never synchronizes
    kAlwaysUnfused,  // GEMM + our kernels wherever possible (benchmarks, debugging)
};

class MatmulContext;
template <typename T>
void matmul_forward(MatmulContext& context, T* out, T* pre_gelu, const T* inp, const T* weight, const T* bias, int M,
                    int N, int K, cudaStream_t stream);
template <typename T>
void matmul_backward(MatmulContext& context, T* dinp, float* dbias_of_dinp, float* dweight, float* dbias,
                     const T* dout, const T* inp, const T* weight, const T* inp_pre_gelu, int M, int N, int K,
                     cudaStream_t stream);

enum class GemmSite { kForward, kBackwardInput, kBackwardWeight };

struct GemmKey {
    GemmSite site;
    cudaDataType_t dtype;
    int M, N, K;
    bool bias;  // forward: bias added
    bool gelu;  // forward: GELU applied; input grad: through GELU
    bool operator<(const GemmKey& o) const {
        return std::tie(site, dtype, M, N, K, bias, gelu) < std::tie(o.site, o.dtype, o.M, o.N, o.K, o.bias, o.gelu);
    }
};

struct GemmVariant {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool available = false;  // the heuristic found an algorithm for this epilogue
};

struct GemmPlan {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;  // C uses D's layout (same buffer)
    GemmVariant fused;    // the whole op in one cuBLASLt call; for keys with nothing to fuse, the plain GEMM
    GemmVariant unfused;  // GEMM + our kernels; built only for keys with something to fuse
    bool has_fusion = false;
    bool decided = false;
    bool use_fused = true;
    const char* how = "";                  // how use_fused was decided (for the record)
    float fused_ms = 0.0f, unfused_ms = 0.0f;  // autotune medians, 0 when not timed

    GemmPlan() = default;
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    ~GemmPlan() {
        for (GemmVariant* v : {&fused, &unfused})
            if (v->desc) cublasLtMatmulDescDestroy(v->desc);
        for (cublasLtMatrixLayout_t layout : {a, b, d})
            if (layout) cublasLtMatrixLayoutDestroy(layout);
    }
};

class MatmulContext {
  public:
    static constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what Hopper's fastest kernels ask for
    static constexpr float kFusedPreferenceMargin = 0.03f;
    static constexpr int kTuningRepeats = 7;

    explicit MatmulContext(MatmulTuning tuning = MatmulTuning::kAutotune) : tuning_(tuning) {
        CUBLASLT_CHECK(cublasLtCreate(&handle_));
        CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
        CUDA_CHECK(cudaMalloc(&column_sum_scratch_, kColumnSumScratchFloats * sizeof(float)));
    }
    ~MatmulContext() {
        plans_.clear();
        cudaFree(column_sum_scratch_);
        cudaFree(workspace_);
        cublasLtDestroy(handle_);
    }
    MatmulContext(const MatmulContext&) = delete;
    MatmulContext& operator=(const MatmulContext&) = delete;

    // One line per shape that had a choice: "<site> <dtype> M N K <bias|nobias> <gelu|nogelu>
    // <fused|unfused> <how> <fused_ms> <unfused_ms>". Save it with the run; load it to replay.
    std::string tuning_record() const {
        std::ostringstream out;
        for (const auto& [key, plan] : plans_) {
            if (!plan->has_fusion || !plan->decided) continue;
            out << site_name(key.site) << ' ' << (key.dtype == CUDA_R_16BF ? "bf16" : "fp16") << ' ' << key.M << ' '
                << key.N << ' ' << key.K << ' ' << (key.bias ? "bias" : "nobias") << ' '
                << (key.gelu ? "gelu" : "nogelu") << ' ' << (plan->use_fused ? "fused" : "unfused") << ' '
                << plan->how << ' ' << plan->fused_ms << ' ' << plan->unfused_ms << '\n';
        }
        return out.str();
    }

    // Replays choices from tuning_record() for shapes not planned yet (the timings are ignored).
    void load_tuning_record(const std::string& record) {
        std::istringstream lines(record);
        std::string line;
        int line_number = 0;
        while (std::getline(lines, line)) {
            ++line_number;
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            std::istringstream fields(line);
            std::string site, dtype, bias, gelu, choice;
            GemmKey key{};
            fields >> site >> dtype >> key.M >> key.N >> key.K >> bias >> gelu >> choice;
            const bool site_ok = site == "forward" || site == "backward_input" || site == "backward_weight";
            REQUIRE(fields && site_ok && (dtype == "bf16" || dtype == "fp16") &&
                        (choice == "fused" || choice == "unfused"),
                    "matmul tuning record, line %d: cannot parse \"%s\"; expected the format of "
                    "MatmulContext::tuning_record() (delete the record to re-tune)",
                    line_number, line.c_str());
            key.site = site == "forward" ? GemmSite::kForward
                       : site == "backward_input" ? GemmSite::kBackwardInput
                                                  : GemmSite::kBackwardWeight;
            key.dtype = dtype == "bf16" ? CUDA_R_16BF : CUDA_R_16F;
            key.bias = bias == "bias";
            key.gelu = gelu == "gelu";
            recorded_choices_[key] = choice == "fused";
        }
    }

    MatmulTuning tuning() const { return tuning_; }

  private:
    template <typename T>
    friend void matmul_forward(MatmulContext&, T*, T*, const T*, const T*, const T*, int, int, int, cudaStream_t);
    template <typename T>
    friend void matmul_backward(MatmulContext&, T*, float*, float*, float*, const T*, const T*, const T*, const T*,
                                int, int, int, cudaStream_t);

    static const char* site_name(GemmSite site) {
        return site == GemmSite::kForward ? "forward" : site == GemmSite::kBackwardInput ? "backward_input"
                                                                                          : "backward_weight";
    }

    // Builds (once) the layouts and both variants of `key`. `bias` and `aux` are the first call's
    // pointers: the heuristic reads their alignment (all are 16-byte aligned, checked by the launchers).
    GemmPlan& plan_for(const GemmKey& key, const void* bias, const void* aux) {
        auto found = plans_.find(key);
        if (found != plans_.end()) return *found->second;
        auto plan = std::make_unique<GemmPlan>();
        const int M = key.M, N = key.N, K = key.K;
        const cudaDataType_t out_type = key.site == GemmSite::kBackwardWeight ? CUDA_R_32F : key.dtype;
        cublasOperation_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
        cublasLtEpilogue_t fused_epilogue = CUBLASLT_EPILOGUE_DEFAULT, unfused_epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        int64_t aux_ld = 0;
        switch (key.site) {
        case GemmSite::kForward:  // out^T (N,M) = op_T(weight (K,N)) * inp (K,M)
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, key.dtype, K, N, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, key.dtype, K, M, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->d, out_type, N, M, N));
            trans_a = CUBLAS_OP_T;
            fused_epilogue = key.gelu ? (key.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                                      : (key.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
            // Splitting out GELU keeps the (nearly free) bias epilogue; splitting out a lone bias
            // leaves the plain GEMM.
            unfused_epilogue = key.gelu && key.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
            aux_ld = N;
            plan->has_fusion = key.bias || key.gelu;
            break;
        case GemmSite::kBackwardInput:  // dinp^T (K,M) = weight (K,N) * dout (N,M)
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, key.dtype, K, N, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, key.dtype, N, M, N));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->d, out_type, K, M, K));
            fused_epilogue = key.gelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT;
            aux_ld = K;
            plan->has_fusion = key.gelu;
            break;
        case GemmSite::kBackwardWeight:  // dweight^T (K,N) += inp (K,M) * op_T(dout (N,M)), nothing fused
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, key.dtype, K, M, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, key.dtype, N, M, N));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->d, out_type, K, N, K));
            trans_b = CUBLAS_OP_T;
            break;
        }
        build_variant(*plan, plan->fused, trans_a, trans_b, fused_epilogue, bias, aux, aux_ld);
        if (plan->has_fusion) {
            const bool unfused_has_bias = unfused_epilogue == CUBLASLT_EPILOGUE_BIAS;
            build_variant(*plan, plan->unfused, trans_a, trans_b, unfused_epilogue, unfused_has_bias ? bias : nullptr,
                          nullptr, 0);
        }
        REQUIRE(plan->fused.available || plan->unfused.available,
                "matmul (%s, M=%d N=%d K=%d): cuBLASLt offers no algorithm for this shape and type on this GPU",
                site_name(key.site), M, N, K);
        return *plans_.emplace(key, std::move(plan)).first->second;
    }

    void build_variant(GemmPlan& plan, GemmVariant& variant, cublasOperation_t trans_a, cublasOperation_t trans_b,
                       cublasLtEpilogue_t epilogue, const void* bias, const void* aux, int64_t aux_ld) {
        CUBLASLT_CHECK(cublasLtMatmulDescCreate(&variant.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        set_desc(variant.desc, CUBLASLT_MATMUL_DESC_TRANSA, trans_a);
        set_desc(variant.desc, CUBLASLT_MATMUL_DESC_TRANSB, trans_b);
        set_desc(variant.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
        if (bias) set_desc(variant.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
        if (aux) {
            set_desc(variant.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
            set_desc(variant.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, aux_ld);
        }
        cublasLtMatmulPreference_t preference;
        CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference));
        const uint64_t workspace_bytes = kWorkspaceBytes;
        const uint32_t alignment = 16;
        CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace_bytes, sizeof workspace_bytes));
        for (auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
            CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof alignment));
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        // An epilogue the library does not support for this combination is not an error: the
        // other variant takes over.
        const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, variant.desc, plan.a, plan.b, plan.d,
                                                                     plan.d, preference, 1, &result, &found);
        CUBLASLT_CHECK(cublasLtMatmulPreferenceDestroy(preference));
        variant.available = status == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
        if (variant.available) variant.algo = result.algo;
    }

    template <typename Value>
    static void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const Value& value) {
        CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
    }

    // D = A*B (beta 0) or D += A*B (beta 1); bias/aux (when non-null) rebind the epilogue's
    // pointers, which differ per layer for the same shape.
    void run_gemm(const GemmPlan& plan, const GemmVariant& variant, const void* a, const void* b, void* d, float beta,
                  const void* bias, const void* aux, cudaStream_t stream) {
        if (bias) set_desc(variant.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
        if (aux) set_desc(variant.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
        const float alpha = 1.0f;
        CUBLASLT_CHECK(cublasLtMatmul(handle_, variant.desc, &alpha, a, plan.a, b, plan.b, &beta, d, plan.d, d, plan.d,
                                      &variant.algo, workspace_, kWorkspaceBytes, stream));
    }

    // Settles use_fused without timing where possible; returns false when the plan needs autotune.
    bool decide_without_timing(GemmPlan& plan, const GemmKey& key) {
        plan.decided = true;
        if (!plan.has_fusion) {
            plan.how = "plain";
            return true;
        }
        if (!plan.fused.available || !plan.unfused.available) {
            plan.use_fused = plan.fused.available;
            plan.how = "only-one-available";
            return true;
        }
        if (const auto recorded = recorded_choices_.find(key); recorded != recorded_choices_.end()) {
            plan.use_fused = recorded->second;
            plan.how = "recorded";
            return true;
        }
        if (tuning_ != MatmulTuning::kAutotune) {
            plan.use_fused = tuning_ == MatmulTuning::kAlwaysFused;
            plan.how = "forced";
            return true;
        }
        plan.decided = false;
        return false;
    }

    // Times run(true) (fused) against run(false) (unfused), interleaved, median of kTuningRepeats.
    // Synchronizes the stream: once per shape, on first use.
    template <typename Run> void autotune(GemmPlan& plan, Run&& run, cudaStream_t stream) {
        cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
        CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
        REQUIRE(capture == cudaStreamCaptureStatusNone,
                "matmul autotune cannot time inside CUDA-graph capture: run one uncaptured step first, load a "
                "tuning record, or use MatmulTuning::kAlwaysFused");
        cudaEvent_t start, stop;
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
        std::vector<float> times[2];
        for (int repeat = -1; repeat < kTuningRepeats; ++repeat) {  // repeat -1 warms up both paths
            for (int fused = 1; fused >= 0; --fused) {
                CUDA_CHECK(cudaEventRecord(start, stream));
                run(fused == 1);
                CUDA_CHECK(cudaEventRecord(stop, stream));
                CUDA_CHECK(cudaEventSynchronize(stop));
                float ms = 0.0f;
                CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
                if (repeat >= 0) times[fused].push_back(ms);
            }
        }
        CUDA_CHECK(cudaEventDestroy(start));
        CUDA_CHECK(cudaEventDestroy(stop));
        for (auto& t : times) std::sort(t.begin(), t.end());
        plan.fused_ms = times[1][kTuningRepeats / 2];
        plan.unfused_ms = times[0][kTuningRepeats / 2];
        plan.use_fused = plan.fused_ms <= plan.unfused_ms * (1.0f + kFusedPreferenceMargin);
        plan.how = "timed";
        plan.decided = true;
    }

    MatmulTuning tuning_;
    cublasLtHandle_t handle_ = nullptr;
    void* workspace_ = nullptr;
    float* column_sum_scratch_ = nullptr;  // kColumnSumScratchFloats
    std::map<GemmKey, std::unique_ptr<GemmPlan>> plans_;
    std::map<GemmKey, bool> recorded_choices_;
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
    const GemmKey key{GemmSite::kForward, cuda_data_type<T>(), M, N, K, bias != nullptr, gelu};
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
    if (!plan.decided && !context.decide_without_timing(plan, key)) context.autotune(plan, run, stream);
    run(plan.use_fused);
}

// dinp (M,K) = dout (M,N) @ weight (N,K), times gelu'(inp_pre_gelu) when inp_pre_gelu (M,K) is
// non-null (the layer's input was gelu(inp_pre_gelu)); dinp == nullptr skips it.
// dbias_of_dinp (K) += column sums of that dinp: the bias gradient of the layer that produced
// inp_pre_gelu (dinp is its dout), a pass over dinp as stored; nullptr skips it.
// dweight (N,K) += dout^T @ inp (M,K); dweight == nullptr skips it.
// dbias (N) += column sums of dout, a separate pass over dout; dbias == nullptr skips it.
template <typename T>
void matmul_backward(MatmulContext& context, T* dinp, float* dbias_of_dinp, float* dweight, float* dbias,
                     const T* dout, const T* inp, const T* weight, const T* inp_pre_gelu, int M, int N, int K,
                     cudaStream_t stream) {
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

    if (dinp) {
        const bool gelu = inp_pre_gelu != nullptr;
        const GemmKey key{GemmSite::kBackwardInput, cuda_data_type<T>(), M, N, K, false, gelu};
        GemmPlan& plan = context.plan_for(key, nullptr, inp_pre_gelu);
        auto run = [&](bool fused) {
            if (fused) {
                context.run_gemm(plan, plan.fused, weight, dout, dinp, 0.0f, nullptr, inp_pre_gelu, stream);
            } else {
                context.run_gemm(plan, plan.unfused, weight, dout, dinp, 0.0f, nullptr, nullptr, stream);
                gelu_backward_inplace(dinp, inp_pre_gelu, static_cast<long long>(M) * K, stream);
            }
        };
        if (!plan.decided && !context.decide_without_timing(plan, key)) context.autotune(plan, run, stream);
        run(plan.use_fused);
        if (dbias_of_dinp) column_sum_accumulate(dbias_of_dinp, dinp, M, K, context.column_sum_scratch_, stream);
    }

    if (dweight) {
        const GemmKey key{GemmSite::kBackwardWeight, cuda_data_type<T>(), M, N, K, false, false};
        GemmPlan& plan = context.plan_for(key, nullptr, nullptr);
        context.run_gemm(plan, plan.fused, inp, dout, dweight, 1.0f, nullptr, nullptr, stream);
    }
    if (dbias) column_sum_accumulate(dbias, dout, M, N, context.column_sum_scratch_, stream);
}
