// The attention workbench's problem (dev/cuda/attention.cu): its shape, the CPU reference in
// double, and its device buffers with the calls into kernels/attention.cuh.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
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

}  // namespace attention_workbench
