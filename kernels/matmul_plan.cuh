// The cuBLASLt side of kernels/matmul.cuh: for one GEMM shape (GemmKey), its matrix layouts and,
// per epilogue path, its operation descriptor and the algorithms cuBLASLt's heuristic proposes.
// Built once per shape and cached by MatmulContext, so that no descriptor is rebuilt per call.
//
// The three GEMMs of a linear layer, posed on the transposed (column-major) problem:
//   forward        out^T (N,M)     = op_T(weight as (K,N)) * (inp as (K,M))
//   input grad     dinp^T (K,M)    = (weight as (K,N)) * (dout as (N,M))
//   weight grad    dweight^T (K,N) = (inp as (K,M)) * op_T(dout as (N,M))      [beta = 1: +=]
// Each shape with something to fuse has two paths: the fused one (the whole op in cuBLASLt's
// epilogue) and the unfused one (a GEMM whose result our kernels finish, kernels/matmul.cuh).
#pragma once

#include <cublasLt.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/format.h"
#include "host/matmul_tuning_record.h"
#include "kernels/common.cuh"

inline void cublaslt_check_impl(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "cuBLASLt error: %s (%s)\n  in %s\n  at %s:%d\n", cublasLtGetStatusName(status),
                     cublasLtGetStatusString(status), call, file, line);
        std::exit(EXIT_FAILURE);
    }
}
#define CUBLASLT_CHECK(call) cublaslt_check_impl((call), #call, __FILE__, __LINE__)

template <typename T> constexpr GemmDtype gemm_dtype();
template <> constexpr GemmDtype gemm_dtype<__nv_bfloat16>() { return GemmDtype::kBf16; }
template <> constexpr GemmDtype gemm_dtype<__half>() { return GemmDtype::kFp16; }
inline cudaDataType_t cuda_data_type(GemmDtype dtype) { return dtype == GemmDtype::kBf16 ? CUDA_R_16BF : CUDA_R_16F; }

static_assert(sizeof(cublasLtMatmulAlgo_t) == sizeof(MatmulAlgoBytes), "cublasLtMatmulAlgo_t is 8 x uint64");
inline MatmulAlgoBytes algo_bytes(const cublasLtMatmulAlgo_t& algo) {
    MatmulAlgoBytes bytes;
    std::memcpy(bytes.data(), &algo, sizeof algo);
    return bytes;
}
inline cublasLtMatmulAlgo_t algo_from_bytes(const MatmulAlgoBytes& bytes) {
    cublasLtMatmulAlgo_t algo;
    std::memcpy(&algo, bytes.data(), sizeof algo);
    return algo;
}

// "id 66 tile 24 stages 20 split-k 1 reduction 0 swizzle 0 cluster 2": the algorithm's
// configuration as cuBLASLt reports it (the enum values of cublasLt.h), for tables and notes.
inline std::string describe_algo(const cublasLtMatmulAlgo_t& algo) {
    // Attributes differ in width (16 or 32 bits): ask for the size first, read that many bytes.
    auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attribute) {
        size_t size = 0;
        uint64_t value = 0;
        if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, nullptr, 0, &size) != CUBLAS_STATUS_SUCCESS ||
            size > sizeof value ||
            cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, &value, size, &size) != CUBLAS_STATUS_SUCCESS)
            return 0ull;
        return (unsigned long long)value;  // little-endian: the low bytes hold the value
    };
    return string_format("id %llu tile %llu stages %llu split-k %llu reduction %llu swizzle %llu cluster %llu",
                         get(CUBLASLT_ALGO_CONFIG_ID), get(CUBLASLT_ALGO_CONFIG_TILE_ID),
                         get(CUBLASLT_ALGO_CONFIG_STAGES_ID), get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                         get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME), get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                         get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID));
}

struct GemmVariant {
    cublasLtMatmulDesc_t desc = nullptr;
    std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's answers, its first first
    std::vector<float> candidate_ms;               // autotune's median per candidate; empty when not timed
    cublasLtMatmulAlgo_t algo{};                   // the one the GEMM runs with
    bool available() const { return !candidates.empty(); }
};

struct GemmPlan {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;  // C uses D's layout (same buffer)
    GemmVariant fused;    // the whole op in one cuBLASLt call; for keys with nothing to fuse, the plain GEMM
    GemmVariant unfused;  // GEMM + our kernels; built only for keys with something to fuse
    bool has_fusion = false;
    bool decided = false;
    bool use_fused = true;
    std::optional<GemmChoice> recorded;  // the choice as a tuning record holds it, once decided

    GemmPlan() = default;
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    ~GemmPlan() {
        for (GemmVariant* v : {&fused, &unfused})
            if (v->desc) cublasLtMatmulDescDestroy(v->desc);
        for (cublasLtMatrixLayout_t layout : {a, b, d})
            if (layout) cublasLtMatrixLayoutDestroy(layout);
    }
    GemmVariant& variant(bool fused_path) { return fused_path ? fused : unfused; }
};

// Builds the layouts and both paths of `key`, asking the heuristic for up to `candidate_count`
// algorithms per path. `bias` and `aux` are the first call's pointers: the heuristic reads their
// alignment (all are 16-byte aligned, checked by the launchers).
class GemmPlanBuilder {
  public:
    GemmPlanBuilder(cublasLtHandle_t handle, size_t workspace_bytes)
        : handle_(handle), workspace_bytes_(workspace_bytes) {}

    std::unique_ptr<GemmPlan> build(const GemmKey& key, const void* bias, const void* aux, int candidate_count) const {
        auto plan = std::make_unique<GemmPlan>();
        const int M = key.M, N = key.N, K = key.K;
        const cudaDataType_t in_type = cuda_data_type(key.dtype);
        const cudaDataType_t out_type = key.site == GemmSite::kBackwardWeight ? CUDA_R_32F : in_type;
        cublasOperation_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
        cublasLtEpilogue_t fused_epilogue = CUBLASLT_EPILOGUE_DEFAULT, unfused_epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        int64_t aux_ld = 0;
        switch (key.site) {
        case GemmSite::kForward:  // out^T (N,M) = op_T(weight (K,N)) * inp (K,M)
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, in_type, K, N, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, in_type, K, M, K));
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
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, in_type, K, N, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, in_type, N, M, N));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->d, out_type, K, M, K));
            fused_epilogue = key.gelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT;
            aux_ld = K;
            plan->has_fusion = key.gelu;
            break;
        case GemmSite::kBackwardWeight:  // dweight^T (K,N) += inp (K,M) * op_T(dout (N,M)), nothing fused
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->a, in_type, K, M, K));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->b, in_type, N, M, N));
            CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan->d, out_type, K, N, K));
            trans_b = CUBLAS_OP_T;
            break;
        }
        build_variant(*plan, plan->fused, trans_a, trans_b, fused_epilogue, bias, aux, aux_ld, candidate_count);
        if (plan->has_fusion) {
            const bool unfused_has_bias = unfused_epilogue == CUBLASLT_EPILOGUE_BIAS;
            build_variant(*plan, plan->unfused, trans_a, trans_b, unfused_epilogue, unfused_has_bias ? bias : nullptr,
                          nullptr, 0, candidate_count);
        }
        REQUIRE(plan->fused.available() || plan->unfused.available(),
                "matmul (%s): cuBLASLt offers no algorithm for this shape and type on this GPU",
                describe_gemm(key).c_str());
        return plan;
    }

    // Whether `algo` (e.g. from a tuning record) runs `variant` of `plan` here, within the workspace.
    bool runs(const GemmPlan& plan, const GemmVariant& variant, const cublasLtMatmulAlgo_t& algo,
              cublasStatus_t* status) const {
        cublasLtMatmulHeuristicResult_t result{};
        *status = variant.desc ? cublasLtMatmulAlgoCheck(handle_, variant.desc, plan.a, plan.b, plan.d, plan.d, &algo,
                                                         &result)
                               : CUBLAS_STATUS_NOT_SUPPORTED;
        return *status == CUBLAS_STATUS_SUCCESS && result.workspaceSize <= workspace_bytes_;
    }

    template <typename Value>
    static void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const Value& value) {
        CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
    }

  private:
    void build_variant(GemmPlan& plan, GemmVariant& variant, cublasOperation_t trans_a, cublasOperation_t trans_b,
                       cublasLtEpilogue_t epilogue, const void* bias, const void* aux, int64_t aux_ld,
                       int candidate_count) const {
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
        const uint64_t workspace_bytes = workspace_bytes_;
        const uint32_t alignment = 16;
        CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace_bytes, sizeof workspace_bytes));
        for (auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
            CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof alignment));
        std::vector<cublasLtMatmulHeuristicResult_t> results(candidate_count);
        int found = 0;
        // An epilogue the library does not support for this combination is not an error: the
        // other path takes over.
        const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
            handle_, variant.desc, plan.a, plan.b, plan.d, plan.d, preference, candidate_count, results.data(), &found);
        CUBLASLT_CHECK(cublasLtMatmulPreferenceDestroy(preference));
        if (status != CUBLAS_STATUS_SUCCESS) return;
        for (int i = 0; i < found; ++i)
            if (results[i].state == CUBLAS_STATUS_SUCCESS) variant.candidates.push_back(results[i].algo);
        if (variant.available()) variant.algo = variant.candidates[0];
    }

    cublasLtHandle_t handle_;
    size_t workspace_bytes_;
};
