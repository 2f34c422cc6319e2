// The attention workbench's problem (dev/cuda/attention.cu): its shape, the CPU reference in
// double, its device buffers with the calls into kernels/attention.cuh, and how close the
// kernels' outputs must come to the reference.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/attention.cuh"

namespace attention_workbench {

struct Shape {
    int B, NH, T, HD;
};

// ---------------------------------------------------------------------------------------------
// CPU reference in double: causal softmax attention forward and backward, the same dropout mask
// (attention_keep, kernels/common.cuh) and scale (attention_dropout_rate: 1 / (1 - p) with p
// rounded to a multiple of 2^-16, in fp32). Inputs are the values the GPU sees.

struct Reference {
    std::vector<double> out;   // (B, T, NH, HD)
    std::vector<double> lse;   // (B, NH, T)
    std::vector<double> dqkv;  // (B, T, 3, NH, HD)
};

Reference attention_reference(const std::vector<float>& qkv, const std::vector<float>& dout, const Shape& s,
                              float softmax_scale, DropoutParams drop) {
    const int B = s.B, T = s.T, NH = s.NH, HD = s.HD;
    Reference ref;
    ref.out.assign(static_cast<size_t>(B) * T * NH * HD, 0.0);
    ref.lse.assign(static_cast<size_t>(B) * NH * T, 0.0);
    ref.dqkv.assign(qkv.size(), 0.0);
    const double keep_scale = drop.enabled() ? attention_dropout_rate(drop.p).scale : 1.0;
    auto qkv_row = [&](int b, int t, int which, int h) {
        return ((static_cast<size_t>(b) * T + t) * 3 + which) * NH * HD + static_cast<size_t>(h) * HD;
    };
    auto out_row = [&](int b, int t, int h) { return ((static_cast<size_t>(b) * T + t) * NH + h) * HD; };

    // One (b, h) pair per task: tasks write disjoint parts of the outputs.
    auto one_head = [&](int b, int h) {
        std::vector<double> p(T), mask(T), dp(T);
        for (int q = 0; q < T; ++q) {
            const float* qv = &qkv[qkv_row(b, q, 0, h)];
            double max_score = -INFINITY;
            for (int k = 0; k <= q; ++k) {
                const float* kv = &qkv[qkv_row(b, k, 1, h)];
                double dot = 0.0;
                for (int d = 0; d < HD; ++d) dot += static_cast<double>(qv[d]) * kv[d];
                p[k] = dot * softmax_scale;
                max_score = std::max(max_score, p[k]);
            }
            double sum = 0.0;
            for (int k = 0; k <= q; ++k) sum += (p[k] = std::exp(p[k] - max_score));
            ref.lse[(static_cast<size_t>(b) * NH + h) * T + q] = max_score + std::log(sum);
            for (int k = 0; k <= q; ++k) {
                p[k] /= sum;
                mask[k] = !drop.enabled() ? 1.0 : attention_keep(drop, b, h, NH, T, q, k) ? keep_scale : 0.0;
            }
            double* o = &ref.out[out_row(b, q, h)];
            for (int k = 0; k <= q; ++k) {
                const float* vv = &qkv[qkv_row(b, k, 2, h)];
                for (int d = 0; d < HD; ++d) o[d] += p[k] * mask[k] * vv[d];
            }
            // Backward: dP = (dO . v) * mask, D = sum P dP, dS = P (dP - D).
            const float* g = &dout[out_row(b, q, h)];
            double D = 0.0;
            for (int k = 0; k <= q; ++k) {
                const float* vv = &qkv[qkv_row(b, k, 2, h)];
                double dot = 0.0;
                for (int d = 0; d < HD; ++d) dot += static_cast<double>(g[d]) * vv[d];
                dp[k] = dot * mask[k];
                D += p[k] * dp[k];
            }
            double* dq = &ref.dqkv[qkv_row(b, q, 0, h)];
            for (int k = 0; k <= q; ++k) {
                const double ds = p[k] * (dp[k] - D) * softmax_scale;
                const double pd = p[k] * mask[k];
                const float* kv = &qkv[qkv_row(b, k, 1, h)];
                double* dk = &ref.dqkv[qkv_row(b, k, 1, h)];
                double* dv = &ref.dqkv[qkv_row(b, k, 2, h)];
                for (int d = 0; d < HD; ++d) {
                    dq[d] += ds * kv[d];
                    dk[d] += ds * qv[d];
                    dv[d] += pd * g[d];
                }
            }
        }
    };
    std::atomic<int> next{0};
    std::vector<std::thread> workers;
    const int num_workers = std::max(1u, std::min(std::thread::hardware_concurrency(), 32u));
    for (int w = 0; w < num_workers; ++w)
        workers.emplace_back([&] {
            for (int task = next++; task < B * NH; task = next++) one_head(task / NH, task % NH);
        });
    for (std::thread& worker : workers) worker.join();
    return ref;
}

// Slice `which` (0 = q, 1 = k, 2 = v) of a packed (B, T, 3, NH, HD) tensor.
template <typename E> std::vector<E> qkv_slice(const std::vector<E>& packed, int which, const Shape& s) {
    const size_t row = static_cast<size_t>(s.NH) * s.HD;
    std::vector<E> slice;
    slice.reserve(packed.size() / 3);
    for (size_t bt = 0; bt < static_cast<size_t>(s.B) * s.T; ++bt)
        slice.insert(slice.end(), packed.begin() + (bt * 3 + which) * row, packed.begin() + (bt * 3 + which + 1) * row);
    return slice;
}

// ---------------------------------------------------------------------------------------------
// Device buffers of one problem.

template <typename T> struct Buffers {
    Shape shape;
    size_t qkv_count, out_count, stat_count, scratch_count;
    T *qkv, *out, *dout, *dqkv;
    float *lse, *scratch;
    explicit Buffers(const Shape& s)
        : shape(s),
          qkv_count(static_cast<size_t>(s.B) * s.T * 3 * s.NH * s.HD),
          out_count(static_cast<size_t>(s.B) * s.T * s.NH * s.HD),
          stat_count(static_cast<size_t>(s.B) * s.NH * s.T),
          scratch_count(attention_backward_scratch_floats(s.B, s.T, s.NH, s.HD)),
          qkv(workbench::device_alloc<T>(qkv_count)),
          out(workbench::device_alloc<T>(out_count)),
          dout(workbench::device_alloc<T>(out_count)),
          dqkv(workbench::device_alloc<T>(qkv_count)),
          lse(workbench::device_alloc<float>(stat_count)),
          scratch(workbench::device_alloc<float>(scratch_count)) {}
    Buffers(const Buffers&) = delete;
    Buffers& operator=(const Buffers&) = delete;
    ~Buffers() {
        for (void* p : {static_cast<void*>(qkv), static_cast<void*>(out), static_cast<void*>(dout),
                        static_cast<void*>(dqkv), static_cast<void*>(lse), static_cast<void*>(scratch)})
            CUDA_CHECK(cudaFree(p));
    }
    void forward(AttentionKernel kernel, float scale, DropoutParams drop) {
        attention_forward_using(kernel, out, lse, qkv, shape.B, shape.T, shape.NH, shape.HD, scale, drop, 0);
    }
    void backward(AttentionKernel kernel, float scale, DropoutParams drop) {
        attention_backward_using(kernel, dqkv, scratch, dout, qkv, out, lse, shape.B, shape.T, shape.NH, shape.HD,
                                 scale, drop, 0);
    }
    void poison_outputs() {
        workbench::poison(out, out_count);
        workbench::poison(dqkv, qkv_count);
        workbench::poison(lse, stat_count);
        workbench::poison(scratch, scratch_count);
    }
};

// Results of one variant on one problem, downloaded.
struct Outputs {
    std::vector<float> out, lse, dqkv;
};
template <typename T> Outputs download_outputs(const Buffers<T>& buf) {
    CUDA_CHECK(cudaDeviceSynchronize());
    Outputs o;
    o.out = workbench::download(buf.out, buf.out_count);
    o.lse.resize(buf.stat_count);
    CUDA_CHECK(cudaMemcpy(o.lse.data(), buf.lse, buf.stat_count * sizeof(float), cudaMemcpyDeviceToHost));
    o.dqkv = workbench::download(buf.dqkv, buf.qkv_count);
    return o;
}

// ---------------------------------------------------------------------------------------------
// Tolerances (relative Frobenius error, ||gpu - ref|| / ||ref||).
//
// The reference computes in double on exactly the rounded inputs the GPU gets. What remains is
// rounding inside the kernels: P (forward) and P, dS (backward) are rounded to the storage type
// before they enter the next matmul (variant 2; variant 1 keeps them in fp32), and every output
// is rounded once at the end. Each rounding adds about u/sqrt(3) RMS relative error, u the unit
// roundoff (bf16 2^-8, fp16 2^-11), so about u in total; the CPU emulation of both variants
// measured at most 1.2u (bf16 4.7e-3 at T=7, fp16 4.4e-4). 4u leaves room for accumulation-order
// differences without hiding a real bug: a wrong mask, scale or tile shows up as O(1) errors.
// lse is fp32 arithmetic on exact products (measured ~1e-7); 1e-5 allows the hardware's
// approximate exp2/log2 (2 ulp) with margin.
template <typename T> double output_tolerance() { return std::is_same<T, __half>::value ? 2e-3 : 1.6e-2; }
constexpr double kLseTolerance = 1e-5;

// Compares O, lse, dQ, dK, dV with expected values and prints one line; returns whether all passed.
template <typename T>
bool compare_outputs(const char* label, const Outputs& got, const std::vector<double>& out, const std::vector<double>& lse,
                     const std::vector<double>& dqkv, const Shape& s, const char* extra) {
    const double tol = output_tolerance<T>();
    struct Item {
        const char* name;
        workbench::CheckResult result;
        double tolerance;
    };
    // dQ and dK are exactly zero where every query sees a single key (T = 1: a softmax over one
    // score has no gradient), and a relative error against zero is meaningless; there the error
    // is measured against the size of the problem's gradients, ||dV||.
    const std::vector<double> ref_dv = qkv_slice(dqkv, 2, s);
    const double dv_norm = std::sqrt(std::inner_product(ref_dv.begin(), ref_dv.end(), ref_dv.begin(), 0.0));
    auto compare_gradient = [&](int part) {
        const std::vector<double> ref = qkv_slice(dqkv, part, s);
        const double ref_norm = std::sqrt(std::inner_product(ref.begin(), ref.end(), ref.begin(), 0.0));
        workbench::CheckResult result = workbench::compare(qkv_slice(got.dqkv, part, s), ref);
        if (ref_norm == 0.0 && dv_norm > 0.0) {
            const std::vector<float> ours = qkv_slice(got.dqkv, part, s);
            double ours2 = 0.0;
            for (float g : ours) ours2 += (double)g * g;
            result.relative_error = std::sqrt(ours2) / dv_norm;
        }
        return result;
    };
    const Item items[] = {
        {"O", workbench::compare(got.out, out), tol},
        {"lse", workbench::compare(got.lse, lse), kLseTolerance},
        {"dQ", compare_gradient(0), tol},
        {"dK", compare_gradient(1), tol},
        {"dV", compare_gradient(2), tol},
    };
    bool ok = true;
    std::string line;
    char buffer[96];
    for (const Item& item : items) {
        const bool pass = item.result.all_finite && item.result.relative_error <= item.tolerance;
        ok = ok && pass;
        std::snprintf(buffer, sizeof buffer, " %s %.2e%s", item.name, item.result.relative_error,
                      !item.result.all_finite ? "(NaN)" : pass ? "" : "(!)");
        line += buffer;
    }
    std::printf("  %-44s%s%s  %s\n", label, line.c_str(), extra, ok ? "ok" : "FAIL");
    return ok;
}

}  // namespace attention_workbench
