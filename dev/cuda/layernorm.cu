// Workbench for kernels/layernorm.cuh: dropout + residual add + LayerNorm, pre-norm (residual
// in T or fp32) and post-norm, forward and backward.
//
//   build/dev/cuda/layernorm             validate everything, then benchmark (with PyTorch baselines)
//   build/dev/cuda/layernorm --quick     validation only, small shapes (what `make test-gpu` runs)
//   build/dev/cuda/layernorm --no-torch  full run without the PyTorch baselines
// Run from the repository root: the baselines are dev/cuda/layernorm.py.
//
// Variants are launch shapes of the production kernels: how many warps share a row and how many
// 8-element chunks each thread keeps in registers (forward and backward), and how many warps
// the backward keeps in flight (which sets its rows per block). The public launchers' choice is
// marked '*'; every variant is validated before it is timed.
//
// Validation: a CPU reference in double computes the same math with the same dropout mask
// (DropoutParams::keep on the host); outputs are poisoned first; the backward's incoming
// gradient is poisoned when it must be ignored; dweight/dbias/d_sublayer_bias start from random
// values to check that they accumulate; a second backward on the same inputs must be
// bit-identical. d_sublayer_bias (the column sums of dx: the bias gradient of the linear layer
// whose output x is) is checked against the column sums of dx as the GPU stored it, which is what
// it promises to equal (the stored dx is checked against the exact reference on its own).
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/layernorm.cuh"

namespace {

using layernorm_detail::BackwardPlan;
using layernorm_detail::RowTeamShape;

constexpr float kEps = 1e-5f;
constexpr float kBenchmarkDropout = 0.1f;  // the presets' residual dropout
constexpr int kBenchmarkRows = 32768;
const int kBenchmarkC[] = {768, 1280, 1600, 2048, 2560};

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
    RowTeamShape backward;
    int backward_target_warps;
};

RowTeamShape shape_with(int C, int chunks_per_thread) {
    RowTeamShape shape;
    shape.chunks_per_thread = chunks_per_thread;
    shape.warps_per_team = ceil_div(C / layernorm_detail::kChunk, 32 * chunks_per_thread);
    shape.teams_per_block = std::max(1, layernorm_detail::kTargetBlockThreads / (32 * shape.warps_per_team));
    return shape;
}
std::string describe(const RowTeamShape& s) {
    return std::to_string(s.warps_per_team) + "w x " + std::to_string(s.chunks_per_thread) + "c x " +
           std::to_string(s.teams_per_block) + "rows";
}

// Forward variants (with the default backward), then backward variants (with the default forward):
// each backward shape at fixed warp counts, and the public launchers' one-wave grid (bf16, the
// sweep's type).
std::vector<Variant> variants_for(int C) {
    using namespace layernorm_detail;
    const RowTeamShape forward_default = row_team_shape(C, kForwardMaxChunksPerThread);
    const RowTeamShape backward_default = row_team_shape(C, kBackwardMaxChunksPerThread);
    const int wave_warps = backward_wave_warps<__nv_bfloat16, __nv_bfloat16>(backward_default);
    std::vector<Variant> variants;
    for (int chunks = 1; chunks <= kForwardMaxChunksPerThread; ++chunks) {
        const RowTeamShape shape = shape_with(C, chunks);
        if (shape.block_threads() > kMaxBlockThreads) continue;
        const bool is_default = shape.warps_per_team == forward_default.warps_per_team &&
                                shape.chunks_per_thread == forward_default.chunks_per_thread;
        variants.push_back({"fwd " + describe(shape) + (is_default ? " *" : ""), true, shape, backward_default,
                            wave_warps});
    }
    for (int chunks = 1; chunks <= kBackwardMaxChunksPerThread; ++chunks) {
        const RowTeamShape shape = shape_with(C, chunks);
        if (shape.block_threads() > kMaxBlockThreads) continue;
        for (int warps : {1024, 2048, 4096})
            variants.push_back({"bwd " + describe(shape) + ", " + std::to_string(warps) + " warps", false,
                                forward_default, shape, warps});
        if (shape.warps_per_team == backward_default.warps_per_team &&
            shape.chunks_per_thread == backward_default.chunks_per_thread)
            variants.push_back({"bwd " + describe(shape) + ", one wave (" + std::to_string(wave_warps) + ") *", false,
                                forward_default, shape, wave_warps});
    }
    return variants;
}

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
        return layernorm_detail::backward_plan(N, variant->backward, variant->backward_target_warps).scratch_floats(C);
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
    void backward(cudaStream_t stream) const {
        if (variant != nullptr) {
            const BackwardPlan plan = layernorm_detail::backward_plan(N, variant->backward, variant->backward_target_warps);
            layernorm_detail::launch_backward<T, R>(plan, dx.ptr, grad_residual.ptr, dweight.ptr, dbias.ptr,
                                                    d_sublayer_bias_ptr(), dy.ptr, nullptr,
                                                    config.has_incoming ? grad_residual.ptr : nullptr,
                                                    residual_out.ptr, mean.ptr, rstd.ptr, weight.ptr, drop, N, C,
                                                    scratch.ptr, stream);
        } else if (!config.post_norm) {
            fused_dropout_residual_layernorm_backward(dx.ptr, grad_residual.ptr, dweight.ptr, dbias.ptr,
                                                      d_sublayer_bias_ptr(), dy.ptr, residual_out.ptr, mean.ptr,
                                                      rstd.ptr, weight.ptr, drop, !config.has_incoming, N, C,
                                                      scratch.ptr, stream);
        } else if constexpr (std::is_same_v<T, R>) {
            fused_dropout_residual_layernorm_postnorm_backward(
                dx.ptr, d_residual_in_ptr(), dweight.ptr, dbias.ptr, d_sublayer_bias_ptr(), dy.ptr,
                config.has_incoming ? extra.ptr : nullptr, residual_out.ptr, mean.ptr, rstd.ptr, weight.ptr, drop, N,
                C, scratch.ptr, stream);
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

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

template <typename T, typename R>
void validate(int N, int C, const CaseConfig& config, const Variant* variant, std::mt19937_64& rng, Tally& tally) {
    std::printf("%s/%s %s N=%d C=%d%s%s\n", precision_name<T>(), precision_name<R>(), config.name, N, C,
                variant ? ", variant " : "", variant ? variant->name.c_str() : "");
    Case<T, R> c(N, C, config, variant, Inputs::host, rng);
    const size_t n = size_t(N) * C;
    auto check = [&](const char* what, const std::vector<float>& out, const std::vector<double>& ref, double tol) {
        tally.add(workbench::report_check(what, workbench::compare(out, ref), tol));
    };

    c.poison_forward_outputs();
    c.forward(nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> residual_out = workbench::download(c.residual_out.ptr, n);
    const std::vector<float> mean = workbench::download(c.mean.ptr, N), rstd = workbench::download(c.rstd.ptr, N);
    check("forward residual_out", residual_out, reference_sum(c), tolerance<R>());
    const LayerNormReference fwd = reference_layernorm(c, residual_out);
    check("forward ln_out", workbench::download(c.ln_out.ptr, n), fwd.ln_out, tolerance<T>());
    check("forward mean", mean, fwd.mean, tolerance<float>());
    check("forward rstd", rstd, fwd.rstd, tolerance<float>());

    struct BackwardOutputs {
        std::vector<float> dx, d_residual, dweight, dbias, d_sublayer_bias;
    };
    auto run_backward = [&] {
        c.prepare_backward();
        c.backward(nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        BackwardOutputs out;
        out.dx = workbench::download(c.dx.ptr, n);
        if (c.residual_grad_output() != nullptr) out.d_residual = workbench::download(c.residual_grad_output(), n);
        out.dweight = workbench::download(c.dweight.ptr, C);
        out.dbias = workbench::download(c.dbias.ptr, C);
        if (config.sublayer_bias) out.d_sublayer_bias = workbench::download(c.d_sublayer_bias.ptr, C);
        return out;
    };
    const BackwardOutputs first = run_backward();
    const BackwardReference bwd = reference_backward(c, residual_out, mean, rstd);
    check("backward dx", first.dx, bwd.dx, tolerance<T>());
    if (c.residual_grad_output() != nullptr) check("backward d_residual", first.d_residual, bwd.d_sum, tolerance<R>());
    check("backward dweight (+=)", first.dweight, bwd.dweight, tolerance<float>());
    check("backward dbias (+=)", first.dbias, bwd.dbias, tolerance<float>());
    if (config.sublayer_bias)
        check("backward d_sublayer_bias (+=)", first.d_sublayer_bias, reference_dx_column_sums(c, first.dx),
              tolerance<float>());

    const BackwardOutputs second = run_backward();
    const bool same = bit_identical(first.dx, second.dx) && bit_identical(first.d_residual, second.d_residual) &&
                      bit_identical(first.dweight, second.dweight) && bit_identical(first.dbias, second.dbias) &&
                      bit_identical(first.d_sublayer_bias, second.d_sublayer_bias);
    std::printf("  %-28s %s  %s\n", "backward rerun", same ? "bit-identical" : "DIFFERS", same ? "ok" : "FAIL");
    tally.add(same);
}

// Every precision combination of one (N, C): pre-norm with R = T and R = fp32, post-norm.
template <typename T> void validate_forms(int N, int C, std::mt19937_64& rng, Tally& tally) {
    validate<T, T>(N, C, kPreNorm, nullptr, rng, tally);
    validate<T, float>(N, C, kPreNorm, nullptr, rng, tally);
    validate<T, T>(N, C, kPostNorm, nullptr, rng, tally);
}

// ---------------------------------------------------------------------------------------------
// Benchmark

struct Timing {
    double forward_ms, backward_ms;
};
template <typename T, typename R>
Timing time_case(const CaseConfig& config, int C, const Variant* variant, std::mt19937_64& rng,
                 double* forward_bytes, double* backward_bytes) {
    Case<T, R> c(kBenchmarkRows, C, config, variant, Inputs::device, rng);
    c.forward(nullptr);
    c.prepare_backward();  // the in-place d_residual then drifts by one LN gradient per call: harmless
    Timing timing;
    timing.forward_ms = workbench::median_ms([&] { c.forward(nullptr); });
    timing.backward_ms = workbench::median_ms([&] { c.backward(nullptr); });
    if (forward_bytes) *forward_bytes = c.forward_bytes();
    if (backward_bytes) *backward_bytes = c.backward_bytes();
    return timing;
}

double find_ms(const std::vector<workbench::BaselineTiming>& timings, const std::string& name) {
    for (const auto& t : timings)
        if (t.name == name) return t.ms;
    return -1.0;
}

void print_header(const std::string& title) {
    std::printf("\n    %-34s %9s %7s %6s   %9s %7s %6s\n", title.c_str(), "fwd ms", "GB/s", "%copy", "bwd ms", "GB/s",
                "%copy");
}
void print_row(const std::string& label, double forward_ms, double forward_bytes, double backward_ms,
               double backward_bytes, double copy_gbs) {
    std::printf("    %-34s", label.c_str());
    for (const auto& [ms, bytes] : {std::pair{forward_ms, forward_bytes}, std::pair{backward_ms, backward_bytes}}) {
        if (ms < 0) {
            std::printf(" %9s %7s %6s  ", "-", "", "");
            continue;
        }
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        std::printf(" %9.4f %7.0f %5.1f%%  ", ms, gbs, 100.0 * gbs / copy_gbs);
    }
    std::printf("\n");
}

template <typename T, typename R>
void benchmark_form(const CaseConfig& config, int C, std::mt19937_64& rng, double copy_gbs,
                    const std::vector<workbench::BaselineTiming>& torch_timings) {
    double forward_bytes = 0, backward_bytes = 0;
    const Timing ours = time_case<T, R>(config, C, nullptr, rng, &forward_bytes, &backward_bytes);
    const std::string label = std::string(config.post_norm ? "post-norm " : "pre-norm ") + precision_name<T>() +
                              (config.post_norm ? "" : std::string(", residual ") + precision_name<R>());
    print_row("ours  " + label, ours.forward_ms, forward_bytes, ours.backward_ms, backward_bytes, copy_gbs);
    if (config.post_norm || !std::is_same_v<T, __nv_bfloat16> || torch_timings.empty()) return;
    for (const char* impl : {"eager", "compile"}) {
        const std::string key = std::string("_") + precision_name<R>() + "_C" + std::to_string(C);
        const double fwd = find_ms(torch_timings, std::string(impl) + "_fwd" + key);
        const double fwdbwd = find_ms(torch_timings, std::string(impl) + "_fwdbwd" + key);
        const double bwd = fwd >= 0 && fwdbwd >= 0 ? fwdbwd - fwd : -1.0;
        print_row(std::string("torch ") + impl + " " + label, fwd, forward_bytes, bwd, backward_bytes, copy_gbs);
    }
}

void benchmark(bool with_torch, std::mt19937_64& rng) {
    const workbench::DeviceInfo device = workbench::device_info();
    const double copy_gbs = workbench::measured_copy_bandwidth_gbs();
    std::printf("\nBenchmark on %s (%d SMs): N=%d rows, dropout p=%.1f, eps %g; measured copy bandwidth %.0f GB/s\n",
                device.name.c_str(), device.sm_count, kBenchmarkRows, kBenchmarkDropout, kEps, copy_gbs);
    std::printf("GB/s counts the bytes that must move: forward reads x, residual_in, writes residual_out, ln_out,\n"
                "mean, rstd; backward reads d_ln_out (+ d_out_extra), the incoming residual gradient, the saved sum,\n"
                "mean, rstd, writes dx and the residual gradient, and accumulates dweight, dbias and the column\n"
                "sums of dx (the sublayer's bias gradient). Scratch traffic is overhead and not counted.\n"
                "PyTorch (bf16 only): backward = time(forward + autograd.grad) - time(forward).\n");

    std::vector<workbench::BaselineTiming> torch_timings;
    if (with_torch) {
        std::string columns;
        for (int C : kBenchmarkC) columns += (columns.empty() ? "" : ",") + std::to_string(C);
        char args[128];
        std::snprintf(args, sizeof args, " --N %d --p %g --eps %g --C ", kBenchmarkRows, kBenchmarkDropout, kEps);
        torch_timings = workbench::run_torch_baseline("dev/cuda/layernorm.py" + std::string(args) + columns);
    }
    CaseConfig pre = kPreNorm, post = kPostNorm;
    pre.p = post.p = kBenchmarkDropout;
    for (int C : kBenchmarkC) {
        print_header("C=" + std::to_string(C));
        benchmark_form<__nv_bfloat16, __nv_bfloat16>(pre, C, rng, copy_gbs, torch_timings);
        benchmark_form<__nv_bfloat16, float>(pre, C, rng, copy_gbs, torch_timings);
        benchmark_form<__nv_bfloat16, __nv_bfloat16>(post, C, rng, copy_gbs, torch_timings);
        benchmark_form<__half, __half>(pre, C, rng, copy_gbs, torch_timings);
        benchmark_form<__half, float>(pre, C, rng, copy_gbs, torch_timings);
        benchmark_form<__half, __half>(post, C, rng, copy_gbs, torch_timings);
    }

    std::printf("\nLaunch-shape sweep (bf16, pre-norm, residual bf16; '*' = the public launchers' choice;\n"
                "w = warps per row, c = 8-element chunks per thread, rows = rows per block):\n");
    for (int C : kBenchmarkC) {
        print_header("C=" + std::to_string(C));
        for (const Variant& v : variants_for(C)) {
            double forward_bytes = 0, backward_bytes = 0;
            const Timing t = time_case<__nv_bfloat16, __nv_bfloat16>(pre, C, &v, rng, &forward_bytes, &backward_bytes);
            print_row(v.name, v.varies_forward ? t.forward_ms : -1.0, forward_bytes,
                      v.varies_forward ? -1.0 : t.backward_ms, backward_bytes, copy_gbs);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const workbench::Options options = workbench::parse_options(argc, argv, /*accepts_no_torch=*/true);
    const bool quick = options.quick, with_torch = options.with_torch;
    std::mt19937_64 rng(20261127);
    Tally tally;

    std::printf("Validation (relative L2 error against the CPU reference in double)\n");
    // Odd row counts (partial blocks), every default launch shape from 1 to 16 warps per row, and
    // the limits C = 8 and 8192.
    for (int C : {8, 24, 768, 1000, 1280, 1600, 2048, 2560, 8192}) {
        validate_forms<__nv_bfloat16>(77, C, rng, tally);
        validate_forms<__half>(77, C, rng, tally);
    }
    validate<__nv_bfloat16, __nv_bfloat16>(300, 768, kPreNormFirst, nullptr, rng, tally);
    validate<__half, float>(300, 2560, kPreNormFirst, nullptr, rng, tally);
    validate<__nv_bfloat16, __nv_bfloat16>(1, 1280, kPostNormFirst, nullptr, rng, tally);
    validate<__half, __half>(300, 1600, kPostNormFirst, nullptr, rng, tally);
    if (!quick) {
        // Every benchmarked width and variant, on 1021 and 509 rows (several blocks, a partial one):
        // the CPU reference on the benchmark's 32768 rows would take minutes.
        for (int C : kBenchmarkC) {
            validate_forms<__nv_bfloat16>(1021, C, rng, tally);
            validate_forms<__half>(1021, C, rng, tally);
            for (const Variant& v : variants_for(C))
                validate<__nv_bfloat16, __nv_bfloat16>(509, C, kPreNorm, &v, rng, tally);
        }
        benchmark(with_torch, rng);
    }

    const bool ok = tally.failed == 0;
    std::printf("\n%s: layernorm %d checks passed, %d failed\n", ok ? "PASS" : "FAIL", tally.passed, tally.failed);
    return ok ? 0 : 1;
}
