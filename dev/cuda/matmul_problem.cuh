// The matmul workbench's problem (dev/cuda/matmul.cu): the layers of a GPT with their shapes, the
// device buffers of one layer with the calls into kernels/matmul.cuh, the CPU reference in double,
// and the check of one context's results against it.
//
// A layer's inputs and reference are made once (prepare_layer) and checked any number of times
// (check_layer): each candidate algorithm of each GEMM is checked against the same reference.
// Each layer's backward asks for the bias gradients the trainer takes from it: qkv the column
// sums of its dout (dbias), fc_proj the column sums of its input gradient through GELU'
// (dbias_of_dinp: fc's bias gradient); the other biases come from the LayerNorm backward
// (dev/cuda/layernorm.cu). References are computed in double on the CPU from random inputs
// (exactly the rounded values the GPU reads), on sampled rows and columns for large shapes (all of
// them for small ones); outputs are poisoned first; gradients accumulate onto random initial
// values (checks +=); forward and backward are run twice and must give bit-identical results; a
// third backward stores the gradients (GradWrite::store, a step's first micro-step) into poisoned
// storage, and must give the reference without the initial values.
//
// Tolerances, relative L2 error against the double reference:
//   bf16 outputs 1e-2: rounding to nearest with 8 significant bits has RMS relative error
//     2^-8/sqrt(3) = 2.3e-3; the unfused paths round twice (~3.2e-3); 1e-2 leaves 3x.
//   fp16 outputs 1e-3: the same with 11 bits: 2.8e-4 once, ~4e-4 twice (plus tanhf's error).
//   fp32 gradients (dweight, dbias) from 16-bit operands: products are exact, the sum is fp32 over
//     R = M rows. Tensor cores truncate when accumulating in fp32 (Fasi et al., "Numerical behavior
//     of NVIDIA tensor cores", 2021): a bias of ~2^-24 relative per sequential step over ~R/16
//     steps, (2/3)*2^-24*R/16 expected. We allow max(1e-5, 2^-24*R/8), 3x that.
//   dbias_of_dinp: the column sums of dinp as stored, summed in fp32 (the fp32 tolerance above).
#pragma once

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/matmul.cuh"

namespace matmul_workbench {

struct LayerShape {
    const char* name;
    int N, K;
    bool bias;
    bool gelu_out;  // forward applies GELU and saves the pre-activation (fc)
    bool gelu_in;   // the layer's input was gelu(pre): the input gradient goes through GELU', and
                    // its column sums are the previous layer's bias gradient (fc_proj)
    bool dbias;     // backward sums dout into this layer's bias gradient (qkv)
};
inline std::vector<LayerShape> model_layers(int C, int Vp) {
    return {{"qkv", 3 * C, C, true, false, false, true},
            {"attn_proj", C, C, true, false, false, false},
            {"fc", 4 * C, C, true, true, false, false},
            {"fc_proj", C, 4 * C, true, false, true, false},
            {"lm_head", Vp, C, false, false, false, false}};
}
struct ModelShape {
    const char* name;
    int C, M, Vp;
};

template <typename T> double storage_tolerance() { return std::is_same_v<T, __half> ? 1e-3 : 1e-2; }
inline double fp32_sum_tolerance(int reduction_length) {
    return std::max(1e-5, std::ldexp(1.0, -24) * reduction_length / 8);
}

inline double gelu_ref(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
inline double gelu_derivative_ref(double x) {
    const double s = 0.7978845608028654, t = std::tanh(s * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * 0.044715 * x * x);
}

// Runs f(i) for i in [0, n) on all cores (the references at benchmark shapes are ~1e9 MACs).
template <typename F> void parallel_for(int n, F&& f) {
    std::atomic<int> next{0};
    std::vector<std::thread> pool;
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (int i; (i = next++) < n;) f(i);
        });
    for (auto& thread : pool) thread.join();
}

template <typename T> struct LayerBuffers {
    int M, N, K;
    T *inp, *weight, *bias = nullptr, *out, *pre_gelu = nullptr, *dout, *dinp, *inp_pre_gelu = nullptr;
    float *dweight, *dbias = nullptr, *dbias_of_dinp = nullptr;
    LayerBuffers(int M_, const LayerShape& s) : M(M_), N(s.N), K(s.K) {
        using workbench::device_alloc;
        const size_t MN = size_t(M) * N, MK = size_t(M) * K, NK = size_t(N) * K;
        inp = device_alloc<T>(MK);
        weight = device_alloc<T>(NK);
        out = device_alloc<T>(MN);
        dout = device_alloc<T>(MN);
        dinp = device_alloc<T>(MK);
        dweight = device_alloc<float>(NK);
        if (s.bias) bias = device_alloc<T>(N);
        if (s.dbias) dbias = device_alloc<float>(N);
        if (s.gelu_out) pre_gelu = device_alloc<T>(MN);
        if (s.gelu_in) inp_pre_gelu = device_alloc<T>(MK), dbias_of_dinp = device_alloc<float>(K);
    }
    ~LayerBuffers() {
        for (void* p : std::initializer_list<void*>{inp, weight, bias, out, pre_gelu, dout, dinp, inp_pre_gelu,
                                                    dweight, dbias, dbias_of_dinp})
            if (p) CUDA_CHECK(cudaFree(p));
    }
    LayerBuffers(const LayerBuffers&) = delete;
    LayerBuffers& operator=(const LayerBuffers&) = delete;

    // The keys of the three GEMMs the layer's forward and backward run (kernels/matmul.cuh).
    GemmKey forward_key() const {
        return {GemmSite::kForward, gemm_dtype<T>(), M, N, K, bias != nullptr, pre_gelu != nullptr};
    }
    GemmKey input_gradient_key() const {
        return {GemmSite::kBackwardInput, gemm_dtype<T>(), M, N, K, false, inp_pre_gelu != nullptr};
    }
    GemmKey weight_gradient_key() const { return {GemmSite::kBackwardWeight, gemm_dtype<T>(), M, N, K, false, false}; }
};

template <typename T> void forward(MatmulContext& ctx, LayerBuffers<T>& b) {
    matmul_forward(ctx, b.out, b.pre_gelu, b.inp, b.weight, b.bias, b.M, b.N, b.K, nullptr);
}
template <typename T> void backward(MatmulContext& ctx, LayerBuffers<T>& b, GradWrite write = GradWrite::add) {
    matmul_backward(ctx, b.dinp, b.dbias_of_dinp, b.dweight, b.dbias, b.dout, b.inp, b.weight, b.inp_pre_gelu, b.M,
                    b.N, b.K, write, nullptr);
}

// Rows `rows` of a row-major (R, width) device matrix, as floats.
template <typename T> std::vector<float> download_rows(const T* device, int width, const std::vector<int>& rows) {
    std::vector<float> values;
    values.reserve(rows.size() * width);
    for (int r : rows) {
        const std::vector<float> row = workbench::download(device + size_t(r) * width, width);
        values.insert(values.end(), row.begin(), row.end());
    }
    return values;
}
// Columns `columns` of a row-major (R, width) device matrix, column by column.
template <typename T>
std::vector<float> download_columns(const T* device, int R, int width, const std::vector<int>& columns) {
    std::vector<float> values;
    values.reserve(columns.size() * R);
    std::vector<T> raw(R);
    for (int c : columns) {
        CUDA_CHECK(cudaMemcpy2D(raw.data(), sizeof(T), device + c, size_t(width) * sizeof(T), sizeof(T), R,
                                cudaMemcpyDeviceToHost));
        for (const T& x : raw) values.push_back(to_float(x));
    }
    return values;
}

// All of [0, n) when n <= limit, else `count` distinct indices including the first and last.
inline std::vector<int> sample_indices(int n, int limit, int count, std::mt19937_64& rng) {
    std::vector<int> all(n);
    for (int i = 0; i < n; ++i) all[i] = i;
    if (n <= limit) return all;
    std::shuffle(all.begin() + 1, all.end() - 1, rng);
    std::vector<int> picked(all.begin(), all.begin() + count - 1);
    picked.push_back(n - 1);
    std::sort(picked.begin(), picked.end());
    return picked;
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The reference of one layer's outputs, on the sampled rows (and weight rows), for the inputs
// prepare_layer left in the buffers and the initial gradients reset_gradients writes.
struct LayerReference {
    uint64_t initial_grad_seed = 0;
    std::vector<int> rows, weight_rows;
    std::vector<double> out, pre, dinp, dweight, dbias;
    std::vector<float> dweight_initial, dbias_initial, dbias_of_dinp_initial;  // on the sampled rows
};

template <typename T> void reset_gradients(LayerBuffers<T>& b, uint64_t seed) {
    workbench::fill_uniform(b.dweight, size_t(b.N) * b.K, seed);
    if (b.dbias) workbench::fill_uniform(b.dbias, b.N, seed + 1);
    if (b.dbias_of_dinp) workbench::fill_uniform(b.dbias_of_dinp, b.K, seed + 2);
}

// Fresh random inputs in the buffers, and their reference.
template <typename T> LayerReference prepare_layer(LayerBuffers<T>& b, const LayerShape& s, std::mt19937_64& rng) {
    using workbench::fill_uniform;
    const int M = b.M, N = b.N, K = b.K;
    const uint64_t seed = rng();
    LayerReference ref;
    ref.initial_grad_seed = rng();
    fill_uniform(b.inp, size_t(M) * K, seed + 1);
    fill_uniform(b.weight, size_t(N) * K, seed + 2, 1.0f / std::sqrt(float(K)));  // pre-activations ~O(1)
    fill_uniform(b.dout, size_t(M) * N, seed + 3);
    if (b.bias) fill_uniform(b.bias, N, seed + 4, 0.5f);
    if (b.inp_pre_gelu) fill_uniform(b.inp_pre_gelu, size_t(M) * K, seed + 5, 3.0f);  // GELU's curved range
    reset_gradients(b, ref.initial_grad_seed);
    ref.rows = sample_indices(M, 1024, 32, rng);
    ref.weight_rows = sample_indices(N, 512, 16, rng);
    ref.dweight_initial = download_rows(b.dweight, K, ref.weight_rows);
    if (b.dbias) ref.dbias_initial = download_rows(b.dbias, N, {0});
    if (b.dbias_of_dinp) ref.dbias_of_dinp_initial = download_rows(b.dbias_of_dinp, K, {0});
    const std::vector<float>& dweight_initial = ref.dweight_initial;
    const std::vector<float>& dbias_initial = ref.dbias_initial;

    // Inputs as the GPU reads them. dout's columns feed dweight/dbias: all of dout when dbias is
    // checked (bias layers are at most 4C wide), else only the sampled columns (the LM head's
    // dout is gigabytes).
    const std::vector<float> inp = workbench::download(b.inp, size_t(M) * K);
    const std::vector<float> weight = workbench::download(b.weight, size_t(N) * K);
    const std::vector<float> bias = b.bias ? workbench::download(b.bias, N) : std::vector<float>(N, 0.0f);
    const std::vector<float> dout_rows = download_rows(b.dout, N, ref.rows);
    const std::vector<float> inp_pre = b.inp_pre_gelu ? download_rows(b.inp_pre_gelu, K, ref.rows) : std::vector<float>{};
    const std::vector<float> dout_all = b.dbias ? workbench::download(b.dout, size_t(M) * N) : std::vector<float>{};
    const std::vector<float> dout_sampled_columns =
        b.dbias ? std::vector<float>{} : download_columns(b.dout, M, N, ref.weight_rows);  // (W, M)

    const int R = static_cast<int>(ref.rows.size()), W = static_cast<int>(ref.weight_rows.size());
    ref.out.resize(size_t(R) * N);
    ref.pre.resize(size_t(R) * N);
    ref.dinp.resize(size_t(R) * K);
    ref.dweight.resize(size_t(W) * K);
    parallel_for(R, [&](int i) {
        const float* x = &inp[size_t(ref.rows[i]) * K];
        for (int n = 0; n < N; ++n) {
            double acc = bias[n];
            for (int k = 0; k < K; ++k) acc += double(x[k]) * weight[size_t(n) * K + k];
            ref.pre[size_t(i) * N + n] = acc;
            ref.out[size_t(i) * N + n] = s.gelu_out ? gelu_ref(acc) : acc;
        }
        double* d = &ref.dinp[size_t(i) * K];
        for (int n = 0; n < N; ++n) {
            const double g = dout_rows[size_t(i) * N + n];
            for (int k = 0; k < K; ++k) d[k] += g * weight[size_t(n) * K + k];
        }
        if (s.gelu_in)
            for (int k = 0; k < K; ++k) d[k] *= gelu_derivative_ref(inp_pre[size_t(i) * K + k]);
    });
    parallel_for(W, [&](int j) {
        double* acc = &ref.dweight[size_t(j) * K];
        for (int k = 0; k < K; ++k) acc[k] = dweight_initial[size_t(j) * K + k];
        for (int m = 0; m < M; ++m) {
            const double g = b.dbias ? dout_all[size_t(m) * N + ref.weight_rows[j]] : dout_sampled_columns[size_t(j) * M + m];
            for (int k = 0; k < K; ++k) acc[k] += g * inp[size_t(m) * K + k];
        }
    });
    if (b.dbias) {
        ref.dbias.assign(dbias_initial.begin(), dbias_initial.end());
        for (int m = 0; m < M; ++m)
            for (int n = 0; n < N; ++n) ref.dbias[n] += dout_all[size_t(m) * N + n];
    }
    return ref;
}

// Which outputs check_layer compares: a candidate algorithm of one GEMM changes only its outputs
// (the bias gradients are our column sums, checked with the whole layer).
enum class Checked { kWholeLayer, kForward, kInputGradient, kWeightGradient };

struct LayerCheck {
    bool ok = true;
    double worst = 0.0;  // the largest relative error over its tolerance (<= 1 passes)
    void add(const char* what, const workbench::CheckResult& result, double tolerance, bool print) {
        if (print) workbench::report_check(what, result, tolerance);
        ok &= result.all_finite && result.relative_error <= tolerance;
        worst = std::max(worst, result.all_finite ? result.relative_error / tolerance : INFINITY);
    }
};

// One forward and two backward passes (from the same initial gradients: the second must be
// bit-identical), and a second forward (likewise), against `ref`; poisoned outputs first.
template <typename T>
LayerCheck check_layer(MatmulContext& ctx, LayerBuffers<T>& b, const LayerShape& s, const LayerReference& ref,
                       Checked checked, bool print) {
    const int M = b.M, N = b.N, K = b.K;
    reset_gradients(b, ref.initial_grad_seed);
    workbench::poison(b.out, size_t(M) * N);
    workbench::poison(b.dinp, size_t(M) * K);
    if (b.pre_gelu) workbench::poison(b.pre_gelu, size_t(M) * N);
    forward(ctx, b);
    backward(ctx, b);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> out = download_rows(b.out, N, ref.rows);
    const std::vector<float> pre = b.pre_gelu ? download_rows(b.pre_gelu, N, ref.rows) : std::vector<float>{};
    const std::vector<float> dinp = download_rows(b.dinp, K, ref.rows);
    const std::vector<float> dweight = download_rows(b.dweight, K, ref.weight_rows);
    const std::vector<float> dbias = b.dbias ? download_rows(b.dbias, N, {0}) : std::vector<float>{};
    const std::vector<float> dbias_of_dinp =
        b.dbias_of_dinp ? download_rows(b.dbias_of_dinp, K, {0}) : std::vector<float>{};
    // All of dinp as stored: dbias_of_dinp is checked against its column sums.
    const bool whole = checked == Checked::kWholeLayer;
    const std::vector<float> dinp_all =
        whole && b.dbias_of_dinp ? workbench::download(b.dinp, size_t(M) * K) : std::vector<float>{};

    reset_gradients(b, ref.initial_grad_seed);
    forward(ctx, b);
    backward(ctx, b);
    CUDA_CHECK(cudaDeviceSynchronize());
    const bool deterministic =
        bitwise_equal(out, download_rows(b.out, N, ref.rows)) &&
        bitwise_equal(dinp, download_rows(b.dinp, K, ref.rows)) &&
        bitwise_equal(dweight, download_rows(b.dweight, K, ref.weight_rows)) &&
        (!b.dbias || bitwise_equal(dbias, download_rows(b.dbias, N, {0}))) &&
        (!b.dbias_of_dinp || bitwise_equal(dbias_of_dinp, download_rows(b.dbias_of_dinp, K, {0})));

    const double tol = storage_tolerance<T>();
    LayerCheck check;
    if (whole || checked == Checked::kForward) {
        check.add("out", workbench::compare(out, ref.out), tol, print);
        if (b.pre_gelu) check.add("pre_gelu", workbench::compare(pre, ref.pre), tol, print);
    }
    if (whole || checked == Checked::kInputGradient)
        check.add(s.gelu_in ? "dinp (through GELU')" : "dinp", workbench::compare(dinp, ref.dinp), tol, print);
    if (whole || checked == Checked::kWeightGradient)
        check.add("dweight +=", workbench::compare(dweight, ref.dweight), fp32_sum_tolerance(M), print);
    if (whole && b.dbias) check.add("dbias +=", workbench::compare(dbias, ref.dbias), fp32_sum_tolerance(M), print);
    if (whole && b.dbias_of_dinp) {
        std::vector<double> sums(ref.dbias_of_dinp_initial.begin(), ref.dbias_of_dinp_initial.end());
        for (int m = 0; m < M; ++m)
            for (int k = 0; k < K; ++k) sums[k] += dinp_all[size_t(m) * K + k];
        check.add("dbias_of_dinp +=", workbench::compare(dbias_of_dinp, sums), fp32_sum_tolerance(M), print);
    }
    if (print) std::printf("  %-28s %s\n", "run twice", deterministic ? "bit-identical  ok" : "DIFFERENT  FAIL");
    check.ok &= deterministic;

    if (whole || checked == Checked::kWeightGradient) {
        // Stored, not added: the poison (NaN) the gradients hold must not reach them.
        workbench::poison(b.dweight, size_t(N) * K);
        if (b.dbias) workbench::poison(b.dbias, N);
        if (b.dbias_of_dinp) workbench::poison(b.dbias_of_dinp, K);
        backward(ctx, b, GradWrite::store);
        CUDA_CHECK(cudaDeviceSynchronize());
        check.add("dweight = (stored)",
                  workbench::compare(download_rows(b.dweight, K, ref.weight_rows),
                                     workbench::without_initial(ref.dweight, ref.dweight_initial)),
                  fp32_sum_tolerance(M), print);
        if (whole && b.dbias)
            check.add("dbias = (stored)",
                      workbench::compare(download_rows(b.dbias, N, {0}), workbench::without_initial(ref.dbias, ref.dbias_initial)),
                      fp32_sum_tolerance(M), print);
        if (whole && b.dbias_of_dinp) {
            std::vector<double> sums(K, 0.0);
            for (int m = 0; m < M; ++m)
                for (int k = 0; k < K; ++k) sums[k] += dinp_all[size_t(m) * K + k];
            check.add("dbias_of_dinp = (stored)", workbench::compare(download_rows(b.dbias_of_dinp, K, {0}), sums),
                      fp32_sum_tolerance(M), print);
        }
    }
    return check;
}

}  // namespace matmul_workbench
