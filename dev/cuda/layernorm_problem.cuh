// The LayerNorm workbench's problem (dev/cuda/layernorm.cu): the cases it runs, their device
// buffers with the calls into kernels/layernorm.cuh, the bytes a pass must move, the CPU reference
// in double, and how close the kernels' outputs must come to it.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/layernorm.cuh"

namespace layernorm_workbench {

using layernorm_detail::BackwardKernel;
using layernorm_detail::BackwardPlan;
using layernorm_detail::RowTeamShape;

constexpr float kEps = 1e-5f;


// Tolerance on ||out - ref|| / ||ref|| for an output stored as S. A 16-bit output is fp32 math
// on exact inputs rounded once: RMS relative error about 2e-3 (bf16) or 3e-4 (fp16); the
// tolerances are ~5x that. fp32 outputs (fp32 residual stream, mean, rstd, dweight, dbias) carry
// fp32 rounding of sums over C or N terms: ~1e-6.
template <typename S> double tolerance();
template <> double tolerance<__nv_bfloat16>() { return 1e-2; }
template <> double tolerance<__half>() { return 2e-3; }
template <> double tolerance<float>() { return 1e-5; }

using workbench::DeviceArray;
using workbench::Tally;

// What a case exercises.
struct CaseConfig {
    const char* name;
    bool post_norm;
    bool has_residual_in;  // forward residual_in given (else nullptr = zeros)
    bool has_incoming;     // pre-norm: d_residual holds a gradient (else d_residual_is_zero);
                           // post-norm: d_out_extra given
    bool alias_incoming;   // post-norm: d_residual_in is the d_out_extra buffer
    float p;
    bool sublayer_bias;    // backward accumulates the column sums of dx into d_sublayer_bias
};
const CaseConfig kPreNorm{"pre-norm", false, true, true, false, 0.1f, true};
const CaseConfig kPreNormFirst{"pre-norm, no residual_in, d_residual zero, p=0, no d_sublayer_bias", false, false,
                               false, false, 0.0f, false};
const CaseConfig kPostNorm{"post-norm, d_residual_in aliases d_out_extra", true, true, true, true, 0.1f, true};
const CaseConfig kPostNormFirst{"post-norm, no residual_in/d_out_extra, p=0", true, false, false, false, 0.0f, true};

// A workbench launch shape; nullptr in the functions below means the public launchers.
struct Variant {
    std::string name;
    bool varies_forward;  // else it varies the backward
    RowTeamShape forward;
    BackwardKernel backward_kernel;
    RowTeamShape backward;
    int backward_target_warps;  // 0: one wave of resident blocks for the case's types (the launchers' rule)
};

// ---------------------------------------------------------------------------------------------
// Device-side case: buffers, random inputs, and the forward/backward launches.

// Validation draws inputs on the host (the CPU reference needs them); benchmarks fill them on
// the GPU (tens of millions of elements per tensor; timing does not depend on the values).
enum class Inputs { host, device };

template <typename T, typename R> struct Case {
    static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "T is a 16-bit storage type");
    int N, C;
    CaseConfig config;
    const Variant* variant;  // nullptr: public launchers
    DropoutParams drop;
    size_t scratch_floats;
    DeviceArray<T> x, weight, bias, ln_out, dy, dx, extra;  // extra: post-norm d_out_extra
    DeviceArray<R> residual_in, residual_out, grad_residual;  // grad_residual: pre d_residual, post d_residual_in
    DeviceArray<float> mean, rstd, dweight, dbias, d_sublayer_bias, scratch;
    Inputs inputs;
    std::mt19937_64& rng;
    uint64_t incoming_seed = 0;  // Inputs::device: regenerates the incoming gradient
    // Inputs::host: the inputs as the GPU sees them (rounded to storage).
    std::vector<float> x_h, weight_h, bias_h, residual_in_h, dy_h, incoming_h, dweight_init, dbias_init,
        d_sublayer_bias_init;

    Case(int N_, int C_, const CaseConfig& config_, const Variant* variant_, Inputs inputs_, std::mt19937_64& rng_)
        : N(N_), C(C_), config(config_), variant(variant_), scratch_floats(scratch_size(N_, C_, variant_)),
          x(size_t(N_) * C_), weight(C_), bias(C_), ln_out(size_t(N_) * C_), dy(size_t(N_) * C_),
          dx(size_t(N_) * C_), extra(size_t(N_) * C_), residual_in(size_t(N_) * C_), residual_out(size_t(N_) * C_),
          grad_residual(size_t(N_) * C_), mean(N_), rstd(N_), dweight(C_), dbias(C_), d_sublayer_bias(C_),
          scratch(scratch_floats),
          inputs(inputs_), rng(rng_) {
        const size_t n = size_t(N) * C;
        drop.p = config.p;
        drop.seed = rng();  // full 64-bit seed and offset: both words of each reach Philox
        drop.offset = rng();
        x_h = fill(x.ptr, n);
        if (config.has_residual_in) residual_in_h = fill(residual_in.ptr, n);
        weight_h = fill(weight.ptr, C, 0.2f, 1.0f);
        bias_h = fill(bias.ptr, C, 0.2f);
        dy_h = fill(dy.ptr, n);
        incoming_seed = rng();
        if (config.has_incoming && inputs == Inputs::host) incoming_h = rounded<R>(workbench::random_vector(n, rng));
        if (inputs == Inputs::host) {
            // Comparable to the sums they accumulate (|sum over N rows| ~ sqrt(N)): a bug in the
            // increment cannot hide under a much larger starting value.
            dweight_init = workbench::random_vector(C, rng, std::sqrt(static_cast<float>(N)));
            dbias_init = workbench::random_vector(C, rng, std::sqrt(static_cast<float>(N)));
            d_sublayer_bias_init = workbench::random_vector(C, rng, std::sqrt(static_cast<float>(N)));
        }
    }

    // Random values scale * N(0,1) + shift (host) or uniform in shift +- scale (device).
    template <typename S> std::vector<float> fill(S* device, size_t count, float scale = 1.0f, float shift = 0.0f) {
        if (inputs == Inputs::device) {
            workbench::fill_uniform(device, count, rng(), scale);  // shift only matters to the reference
            return {};
        }
        std::vector<float> values = workbench::random_vector(count, rng, scale);
        for (float& v : values) v += shift;
        return workbench::upload_rounded(device, values);
    }

    static size_t scratch_size(int N, int C, const Variant* variant) {
        if (variant == nullptr) return layernorm_backward_scratch_floats<T, R>(N, C);
        return variant_backward_plan(N, *variant).scratch_floats(C);
    }
    static BackwardPlan variant_backward_plan(int N, const Variant& v) {
        const int target_warps = v.backward_target_warps > 0
                                     ? v.backward_target_warps
                                     : layernorm_detail::backward_wave_warps<T, R>(v.backward_kernel, v.backward);
        return layernorm_detail::backward_plan(v.backward_kernel, N, v.backward, target_warps);
    }
    template <typename S> static std::vector<float> rounded(std::vector<float> values) {
        for (float& v : values) v = to_float(from_float<S>(v));
        return values;
    }

    R* residual_in_ptr() const { return config.has_residual_in ? residual_in.ptr : nullptr; }
    float* d_sublayer_bias_ptr() const { return config.sublayer_bias ? d_sublayer_bias.ptr : nullptr; }
    // Post-norm's d_residual_in: the d_out_extra buffer, its own buffer, or null (no residual_in).
    R* d_residual_in_ptr() const {
        if (config.alias_incoming) return reinterpret_cast<R*>(extra.ptr);  // post-norm: R == T
        return config.has_residual_in ? grad_residual.ptr : nullptr;
    }

    void poison_forward_outputs() const {
        workbench::poison(ln_out.ptr, size_t(N) * C);
        workbench::poison(residual_out.ptr, size_t(N) * C);
        workbench::poison(mean.ptr, N);
        workbench::poison(rstd.ptr, N);
    }
    void forward(cudaStream_t stream) const {
        if (variant != nullptr) {
            layernorm_detail::launch_forward(variant->forward, ln_out.ptr, residual_out.ptr, mean.ptr, rstd.ptr, x.ptr,
                                             residual_in_ptr(), weight.ptr, bias.ptr, drop, kEps, N, C, stream);
        } else if (!config.post_norm) {
            fused_dropout_residual_layernorm_forward(ln_out.ptr, residual_out.ptr, mean.ptr, rstd.ptr, x.ptr,
                                                     residual_in_ptr(), weight.ptr, bias.ptr, drop, kEps, N, C, stream);
        } else if constexpr (std::is_same_v<T, R>) {
            fused_dropout_residual_layernorm_postnorm_forward(ln_out.ptr, residual_out.ptr, mean.ptr, rstd.ptr, x.ptr,
                                                              residual_in_ptr(), weight.ptr, bias.ptr, drop, kEps, N,
                                                              C, stream);
        } else {
            REQUIRE(false, "post-norm has no separate residual type: use R = T");
        }
    }

    // Resets everything backward reads or accumulates into; poisons what it must write (and the
    // incoming gradient when it must be ignored).
    void prepare_backward() const {
        const size_t n = size_t(N) * C;
        workbench::poison(dx.ptr, n);
        workbench::poison(scratch.ptr, scratch_floats);
        workbench::poison(grad_residual.ptr, n);
        workbench::poison(extra.ptr, n);
        if (config.has_incoming) {
            if (inputs == Inputs::device) {
                if (config.post_norm) workbench::fill_uniform(extra.ptr, n, incoming_seed);
                else workbench::fill_uniform(grad_residual.ptr, n, incoming_seed);
            } else {
                if (config.post_norm) workbench::upload_rounded(extra.ptr, incoming_h);
                else workbench::upload_rounded(grad_residual.ptr, incoming_h);
            }
        }
        if (inputs == Inputs::device) {
            CUDA_CHECK(cudaMemset(dweight.ptr, 0, C * sizeof(float)));
            CUDA_CHECK(cudaMemset(dbias.ptr, 0, C * sizeof(float)));
            CUDA_CHECK(cudaMemset(d_sublayer_bias.ptr, 0, C * sizeof(float)));
        } else {
            workbench::upload_rounded(dweight.ptr, dweight_init);
            workbench::upload_rounded(dbias.ptr, dbias_init);
            if (config.sublayer_bias) workbench::upload_rounded(d_sublayer_bias.ptr, d_sublayer_bias_init);
        }
    }
    void backward(cudaStream_t stream, GradWrite write = GradWrite::add) const {
        if (variant != nullptr) {
            // Pre-norm: d_residual (when given) joins the result and is overwritten in place;
            // post-norm: d_out_extra (when given) joins d_out, d_residual_in may alias it or be null.
            const bool incoming_after = config.has_incoming && !config.post_norm;
            const bool incoming_before = config.has_incoming && config.post_norm;
            R* d_sum_out = config.post_norm ? d_residual_in_ptr() : grad_residual.ptr;
            layernorm_detail::launch_backward<T, R>(
                variant_backward_plan(N, *variant), dx.ptr, d_sum_out, dweight.ptr, dbias.ptr,
                d_sublayer_bias_ptr(), dy.ptr, incoming_before ? extra.ptr : nullptr,
                incoming_after ? grad_residual.ptr : nullptr, residual_out.ptr, mean.ptr, rstd.ptr, weight.ptr, drop,
                N, C, write, scratch.ptr, stream);
        } else if (!config.post_norm) {
            fused_dropout_residual_layernorm_backward(dx.ptr, grad_residual.ptr, dweight.ptr, dbias.ptr,
                                                      d_sublayer_bias_ptr(), dy.ptr, residual_out.ptr, mean.ptr,
                                                      rstd.ptr, weight.ptr, drop, !config.has_incoming, N, C,
                                                      write, scratch.ptr, stream);
        } else if constexpr (std::is_same_v<T, R>) {
            fused_dropout_residual_layernorm_postnorm_backward(
                dx.ptr, d_residual_in_ptr(), dweight.ptr, dbias.ptr, d_sublayer_bias_ptr(), dy.ptr,
                config.has_incoming ? extra.ptr : nullptr, residual_out.ptr, mean.ptr, rstd.ptr, weight.ptr, drop, N,
                C, write, scratch.ptr, stream);
        } else {
            REQUIRE(false, "post-norm has no separate residual type: use R = T");
        }
    }
    // The residual-gradient output: pre-norm d_residual, post-norm d_residual_in (maybe null).
    const R* residual_grad_output() const { return config.post_norm ? d_residual_in_ptr() : grad_residual.ptr; }

    // Bytes that must move (what GB/s counts): row tensors, mean/rstd, weight/bias, and the fp32
    // parameter-gradient vectors read and written (dweight, dbias, d_sublayer_bias).
    double forward_bytes() const {
        const double per_element = 2.0 * sizeof(T) + sizeof(R) * (config.has_residual_in ? 2 : 1);
        return double(N) * C * per_element + 8.0 * N + 2.0 * C * sizeof(T);
    }
    double backward_bytes() const {
        double per_element = 2.0 * sizeof(T) + sizeof(R);  // dy, dx, saved sum
        if (config.has_incoming) per_element += config.post_norm ? sizeof(T) : sizeof(R);
        if (residual_grad_output() != nullptr) per_element += sizeof(R);
        const int gradient_vectors = config.sublayer_bias ? 3 : 2;
        return double(N) * C * per_element + 8.0 * N + C * sizeof(T) + 2.0 * C * sizeof(float) * gradient_vectors;
    }
};

// ---------------------------------------------------------------------------------------------
// CPU reference (double), the same math as kernels/layernorm.cuh.

// residual_in + dropout(x), exact.
template <typename T, typename R> std::vector<double> reference_sum(const Case<T, R>& c) {
    const double scale = 1.0 / (1.0 - static_cast<double>(c.drop.p));
    std::vector<double> sum(size_t(c.N) * c.C);
    for (size_t i = 0; i < sum.size(); ++i)
        sum[i] = (c.residual_in_h.empty() ? 0.0 : c.residual_in_h[i]) + (c.drop.keep(i) ? c.x_h[i] * scale : 0.0);
    return sum;
}

// LayerNorm of the residual stream as the GPU stored it: the kernel's statistics are defined on
// the stored (rounded to R) values. Recomputing the rounding here instead would make the check
// flaky, not stricter: 16-bit inputs times 1/(1-p) land exactly on rounding midpoints often,
// and there the fp32 and double values of 1/(1-p) round differently.
struct LayerNormReference {
    std::vector<double> ln_out, mean, rstd;
};
template <typename T, typename R>
LayerNormReference reference_layernorm(const Case<T, R>& c, const std::vector<float>& stored) {
    const int N = c.N, C = c.C;
    LayerNormReference ref;
    ref.ln_out.resize(size_t(N) * C);
    ref.mean.resize(N);
    ref.rstd.resize(N);
    for (int row = 0; row < N; ++row) {
        const float* s = stored.data() + size_t(row) * C;
        double mean = 0.0, variance = 0.0;
        for (int col = 0; col < C; ++col) mean += s[col];
        mean /= C;
        for (int col = 0; col < C; ++col) variance += (s[col] - mean) * (s[col] - mean);
        variance /= C;
        const double rstd = 1.0 / std::sqrt(variance + kEps);
        for (int col = 0; col < C; ++col)
            ref.ln_out[size_t(row) * C + col] = (s[col] - mean) * rstd * c.weight_h[col] + c.bias_h[col];
        ref.mean[row] = mean;
        ref.rstd[row] = rstd;
    }
    return ref;
}

struct BackwardReference {
    std::vector<double> d_sum, dx, dweight, dbias;
};
// Takes the saved sum, mean and rstd as the GPU forward produced them: they are backward's inputs.
template <typename T, typename R>
BackwardReference reference_backward(const Case<T, R>& c, const std::vector<float>& saved_sum,
                                     const std::vector<float>& mean, const std::vector<float>& rstd) {
    const int N = c.N, C = c.C;
    const double scale = 1.0 / (1.0 - static_cast<double>(c.drop.p));
    const bool incoming_before_ln = c.config.has_incoming && c.config.post_norm;
    const bool incoming_after_ln = c.config.has_incoming && !c.config.post_norm;
    BackwardReference ref;
    ref.d_sum.resize(size_t(N) * C);
    ref.dx.resize(size_t(N) * C);
    ref.dweight.assign(c.dweight_init.begin(), c.dweight_init.end());
    ref.dbias.assign(c.dbias_init.begin(), c.dbias_init.end());
    std::vector<double> dy(C), xhat(C);
    for (int row = 0; row < N; ++row) {
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int col = 0; col < C; ++col) {
            const size_t i = size_t(row) * C + col;
            dy[col] = c.dy_h[i] + (incoming_before_ln ? c.incoming_h[i] : 0.0);
            xhat[col] = (saved_sum[i] - static_cast<double>(mean[row])) * rstd[row];
            sum_g += dy[col] * c.weight_h[col];
            sum_g_xhat += dy[col] * c.weight_h[col] * xhat[col];
        }
        const double mean_g = sum_g / C, mean_g_xhat = sum_g_xhat / C;
        for (int col = 0; col < C; ++col) {
            const size_t i = size_t(row) * C + col;
            const double g = dy[col] * c.weight_h[col];
            ref.d_sum[i] = rstd[row] * (g - mean_g - xhat[col] * mean_g_xhat) + (incoming_after_ln ? c.incoming_h[i] : 0.0);
            ref.dx[i] = c.drop.keep(i) ? ref.d_sum[i] * scale : 0.0;
            ref.dweight[col] += dy[col] * xhat[col];
            ref.dbias[col] += dy[col];
        }
    }
    return ref;
}

// d_sublayer_bias after backward: its initial values plus the column sums of dx as stored.
template <typename T, typename R>
std::vector<double> reference_dx_column_sums(const Case<T, R>& c, const std::vector<float>& stored_dx) {
    std::vector<double> sums(c.d_sublayer_bias_init.begin(), c.d_sublayer_bias_init.end());
    for (int row = 0; row < c.N; ++row)
        for (int col = 0; col < c.C; ++col) sums[col] += stored_dx[size_t(row) * c.C + col];
    return sums;
}

}  // namespace layernorm_workbench
