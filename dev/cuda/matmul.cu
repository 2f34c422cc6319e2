// Workbench for kernels/matmul.cuh: cuBLASLt matmul + bias (+ GELU), forward and backward.
//
//   build/dev/cuda/matmul [--quick]
//
// Validation (always): every layer of two small models (odd row counts, partial column tiles),
// bf16 and fp16, through three contexts: fused epilogues only, unfused GEMM + kernel pairs only,
// and autotuned. Each layer's backward asks for the bias gradients the trainer takes from it: qkv
// the column sums of its dout (dbias), fc_proj the column sums of its input gradient through
// GELU' (dbias_of_dinp: fc's bias gradient); the other biases
// come from the LayerNorm backward (dev/cuda/layernorm.cu). References are computed in double on
// the CPU from fresh random inputs (exactly the rounded values the GPU reads); outputs are
// poisoned first; gradients accumulate onto random initial values (checks +=); the backward pass
// is run twice and must give bit-identical results.
// Benchmark (without --quick): GPT-2 small (M = B*T = 32768) and large (M = 16384) layer shapes,
// forward and both backward GEMMs, in TFLOP/s: the plain GEMM (no epilogue: cuBLASLt's ceiling for
// the shape), the fused epilogue, the unfused pair, the autotuned choice, and PyTorch eager and
// torch.compile (dev/cuda/matmul.py, same GPU, same run). Each benchmark shape is also validated
// (autotuned path) on sampled rows and columns.
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
#include <atomic>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "dev/cuda/workbench.cuh"
#include "kernels/matmul.cuh"

namespace {

struct LayerShape {
    const char* name;
    int N, K;
    bool bias;
    bool gelu_out;  // forward applies GELU and saves the pre-activation (fc)
    bool gelu_in;   // the layer's input was gelu(pre): the input gradient goes through GELU', and
                    // its column sums are the previous layer's bias gradient (fc_proj)
    bool dbias;     // backward sums dout into this layer's bias gradient (qkv)
};
std::vector<LayerShape> model_layers(int C, int Vp) {
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
double fp32_sum_tolerance(int reduction_length) { return std::max(1e-5, std::ldexp(1.0, -24) * reduction_length / 8); }

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
double gelu_derivative_ref(double x) {
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
};

template <typename T> void forward(MatmulContext& ctx, LayerBuffers<T>& b) {
    matmul_forward(ctx, b.out, b.pre_gelu, b.inp, b.weight, b.bias, b.M, b.N, b.K, nullptr);
}
template <typename T> void backward(MatmulContext& ctx, LayerBuffers<T>& b) {
    matmul_backward(ctx, b.dinp, b.dbias_of_dinp, b.dweight, b.dbias, b.dout, b.inp, b.weight, b.inp_pre_gelu, b.M,
                    b.N, b.K, nullptr);
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
std::vector<int> sample_indices(int n, int limit, int count, std::mt19937_64& rng) {
    std::vector<int> all(n);
    for (int i = 0; i < n; ++i) all[i] = i;
    if (n <= limit) return all;
    std::shuffle(all.begin() + 1, all.end() - 1, rng);
    std::vector<int> picked(all.begin(), all.begin() + count - 1);
    picked.push_back(n - 1);
    std::sort(picked.begin(), picked.end());
    return picked;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Fresh random inputs and initial gradients, poisoned outputs, one forward and two backward
// passes (the second from the same initial gradients must be bit-identical), CPU reference on
// the sampled rows/columns (all of them for small shapes).
template <typename T>
bool validate_layer(MatmulContext& ctx, LayerBuffers<T>& b, const LayerShape& s, std::mt19937_64& rng) {
    using workbench::fill_uniform;
    const int M = b.M, N = b.N, K = b.K;
    const uint64_t seed = rng(), initial_grad_seed = rng();
    fill_uniform(b.inp, size_t(M) * K, seed + 1);
    fill_uniform(b.weight, size_t(N) * K, seed + 2, 1.0f / std::sqrt(float(K)));  // pre-activations ~O(1)
    fill_uniform(b.dout, size_t(M) * N, seed + 3);
    if (b.bias) fill_uniform(b.bias, N, seed + 4, 0.5f);
    if (b.inp_pre_gelu) fill_uniform(b.inp_pre_gelu, size_t(M) * K, seed + 5, 3.0f);  // GELU's curved range
    auto reset_gradients = [&] {
        fill_uniform(b.dweight, size_t(N) * K, initial_grad_seed);
        if (b.dbias) fill_uniform(b.dbias, N, initial_grad_seed + 1);
        if (b.dbias_of_dinp) fill_uniform(b.dbias_of_dinp, K, initial_grad_seed + 2);
    };
    reset_gradients();
    workbench::poison(b.out, size_t(M) * N);
    workbench::poison(b.dinp, size_t(M) * K);
    if (b.pre_gelu) workbench::poison(b.pre_gelu, size_t(M) * N);

    const std::vector<int> rows = sample_indices(M, 1024, 32, rng);
    const std::vector<int> weight_rows = sample_indices(N, 512, 16, rng);
    const std::vector<float> dweight_initial = download_rows(b.dweight, K, weight_rows);
    const std::vector<float> dbias_initial = b.dbias ? download_rows(b.dbias, N, {0}) : std::vector<float>{};
    const std::vector<float> dbias_of_dinp_initial =
        b.dbias_of_dinp ? download_rows(b.dbias_of_dinp, K, {0}) : std::vector<float>{};

    forward(ctx, b);
    backward(ctx, b);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> out = download_rows(b.out, N, rows);
    const std::vector<float> pre = b.pre_gelu ? download_rows(b.pre_gelu, N, rows) : std::vector<float>{};
    const std::vector<float> dinp = download_rows(b.dinp, K, rows);
    const std::vector<float> dweight = download_rows(b.dweight, K, weight_rows);
    const std::vector<float> dbias = b.dbias ? download_rows(b.dbias, N, {0}) : std::vector<float>{};
    const std::vector<float> dbias_of_dinp =
        b.dbias_of_dinp ? download_rows(b.dbias_of_dinp, K, {0}) : std::vector<float>{};
    // All of dinp as stored: dbias_of_dinp is checked against its column sums.
    const std::vector<float> dinp_all =
        b.dbias_of_dinp ? workbench::download(b.dinp, size_t(M) * K) : std::vector<float>{};

    reset_gradients();
    backward(ctx, b);
    CUDA_CHECK(cudaDeviceSynchronize());
    const bool deterministic = bitwise_equal(dinp, download_rows(b.dinp, K, rows)) &&
                               bitwise_equal(dweight, download_rows(b.dweight, K, weight_rows)) &&
                               (!b.dbias || bitwise_equal(dbias, download_rows(b.dbias, N, {0}))) &&
                               (!b.dbias_of_dinp ||
                                bitwise_equal(dbias_of_dinp, download_rows(b.dbias_of_dinp, K, {0})));

    // Inputs as the GPU read them. dout's columns feed dweight/dbias: all of dout when dbias is
    // checked (bias layers are at most 4C wide), else only the sampled columns (the LM head's
    // dout is gigabytes).
    const std::vector<float> inp = workbench::download(b.inp, size_t(M) * K);
    const std::vector<float> weight = workbench::download(b.weight, size_t(N) * K);
    const std::vector<float> bias = b.bias ? workbench::download(b.bias, N) : std::vector<float>(N, 0.0f);
    const std::vector<float> dout_rows = download_rows(b.dout, N, rows);
    const std::vector<float> inp_pre = b.inp_pre_gelu ? download_rows(b.inp_pre_gelu, K, rows) : std::vector<float>{};
    const std::vector<float> dout_all = b.dbias ? workbench::download(b.dout, size_t(M) * N) : std::vector<float>{};
    const std::vector<float> dout_sampled_columns =
        b.dbias ? std::vector<float>{} : download_columns(b.dout, M, N, weight_rows);  // (W, M)

    const int R = static_cast<int>(rows.size()), W = static_cast<int>(weight_rows.size());
    std::vector<double> out_ref(size_t(R) * N), pre_ref(size_t(R) * N), dinp_ref(size_t(R) * K);
    std::vector<double> dweight_ref(size_t(W) * K), dbias_ref(b.dbias ? N : 0);
    parallel_for(R, [&](int i) {
        const float* x = &inp[size_t(rows[i]) * K];
        for (int n = 0; n < N; ++n) {
            double acc = bias[n];
            for (int k = 0; k < K; ++k) acc += double(x[k]) * weight[size_t(n) * K + k];
            pre_ref[size_t(i) * N + n] = acc;
            out_ref[size_t(i) * N + n] = s.gelu_out ? gelu_ref(acc) : acc;
        }
        double* d = &dinp_ref[size_t(i) * K];
        for (int n = 0; n < N; ++n) {
            const double g = dout_rows[size_t(i) * N + n];
            for (int k = 0; k < K; ++k) d[k] += g * weight[size_t(n) * K + k];
        }
        if (s.gelu_in)
            for (int k = 0; k < K; ++k) d[k] *= gelu_derivative_ref(inp_pre[size_t(i) * K + k]);
    });
    parallel_for(W, [&](int j) {
        double* acc = &dweight_ref[size_t(j) * K];
        for (int k = 0; k < K; ++k) acc[k] = dweight_initial[size_t(j) * K + k];
        for (int m = 0; m < M; ++m) {
            const double g = b.dbias ? dout_all[size_t(m) * N + weight_rows[j]] : dout_sampled_columns[size_t(j) * M + m];
            for (int k = 0; k < K; ++k) acc[k] += g * inp[size_t(m) * K + k];
        }
    });
    if (b.dbias) {
        for (int n = 0; n < N; ++n) dbias_ref[n] = dbias_initial[n];
        for (int m = 0; m < M; ++m)
            for (int n = 0; n < N; ++n) dbias_ref[n] += dout_all[size_t(m) * N + n];
    }
    std::vector<double> dbias_of_dinp_ref(dbias_of_dinp_initial.begin(), dbias_of_dinp_initial.end());
    if (b.dbias_of_dinp)
        for (int m = 0; m < M; ++m)
            for (int k = 0; k < K; ++k) dbias_of_dinp_ref[k] += dinp_all[size_t(m) * K + k];

    const double tol = storage_tolerance<T>();
    bool ok = workbench::report_check("out", workbench::compare(out, out_ref), tol);
    if (b.pre_gelu) ok &= workbench::report_check("pre_gelu", workbench::compare(pre, pre_ref), tol);
    ok &= workbench::report_check(s.gelu_in ? "dinp (through GELU')" : "dinp", workbench::compare(dinp, dinp_ref), tol);
    ok &= workbench::report_check("dweight +=", workbench::compare(dweight, dweight_ref), fp32_sum_tolerance(M));
    if (b.dbias) ok &= workbench::report_check("dbias +=", workbench::compare(dbias, dbias_ref), fp32_sum_tolerance(M));
    if (b.dbias_of_dinp) {
        ok &= workbench::report_check("dbias_of_dinp +=", workbench::compare(dbias_of_dinp, dbias_of_dinp_ref),
                                      fp32_sum_tolerance(M));
    }
    std::printf("  %-28s %s\n", "backward run twice", deterministic ? "bit-identical  ok" : "DIFFERENT  FAIL");
    return ok && deterministic;
}

const char* mode_name(MatmulTuning t) {
    return t == MatmulTuning::kAlwaysFused ? "fused" : t == MatmulTuning::kAlwaysUnfused ? "unfused" : "autotuned";
}

// The first 8 fields of each record line (the choice, without how it was made and the timings).
std::vector<std::string> recorded_choices(const std::string& record) {
    std::vector<std::string> choices;
    std::istringstream lines(record);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string field, choice;
        for (int i = 0; i < 8 && fields >> field; ++i) choice += field + ' ';
        choices.push_back(choice);
    }
    return choices;
}

// A context that loads another's tuning record makes the same choices without timing anything.
template <typename T>
bool validate_tuning_replay(const MatmulContext& tuned, const std::vector<ModelShape>& models) {
    MatmulContext replay(MatmulTuning::kAutotune);
    replay.load_tuning_record(tuned.tuning_record());
    for (const ModelShape& model : models)
        for (const LayerShape& layer : model_layers(model.C, model.Vp)) {
            LayerBuffers<T> b(model.M, layer);
            forward(replay, b);
            backward(replay, b);
        }
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string record = replay.tuning_record();
    const bool same = recorded_choices(record) == recorded_choices(tuned.tuning_record());
    const bool all_replayed = record.find(" timed ") == std::string::npos;
    std::printf("%s tuning record replayed: %s\n", precision_name<T>(),
                same && all_replayed ? "same choices, nothing re-timed  ok" : "FAIL");
    if (!(same && all_replayed)) std::printf("tuned:\n%sreplayed:\n%s", tuned.tuning_record().c_str(), record.c_str());
    return same && all_replayed;
}

template <typename T> bool validate_small_models(std::mt19937_64& rng) {
    const std::vector<ModelShape> models = {{"small-a", 64, 200, 512}, {"small-b", 96, 333, 384}};
    bool ok = true;
    for (MatmulTuning tuning : {MatmulTuning::kAlwaysFused, MatmulTuning::kAlwaysUnfused, MatmulTuning::kAutotune}) {
        MatmulContext ctx(tuning);
        for (const ModelShape& model : models)
            for (const LayerShape& layer : model_layers(model.C, model.Vp)) {
                std::printf("%s %s %s %s (M=%d N=%d K=%d)\n", precision_name<T>(), mode_name(tuning), model.name,
                            layer.name, model.M, layer.N, layer.K);
                LayerBuffers<T> buffers(model.M, layer);
                ok &= validate_layer(ctx, buffers, layer, rng);
            }
        if (tuning == MatmulTuning::kAutotune) ok &= validate_tuning_replay<T>(ctx, models);
    }
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Benchmark

double tflops(double M, double N, double K, double ms) { return 2.0 * M * N * K / (ms * 1e-3) / 1e12; }

struct Contexts {
    MatmulContext fused{MatmulTuning::kAlwaysFused};
    MatmulContext unfused{MatmulTuning::kAlwaysUnfused};
    MatmulContext autotuned{MatmulTuning::kAutotune};
};

std::string cell(double tflops_value) {  // 0 = not applicable
    char text[16];
    if (tflops_value > 0) std::snprintf(text, sizeof text, "%8.1f", tflops_value);
    else std::snprintf(text, sizeof text, "%8s", "-");
    return text;
}

// Validates every layer of `model` at full size, then appends its table rows to `table`.
template <typename T>
bool benchmark_model(Contexts& ctx, const ModelShape& model, const std::map<std::string, double>& torch_ms,
                     std::mt19937_64& rng, std::vector<std::string>& table) {
    bool ok = true;
    const int M = model.M;
    for (const LayerShape& s : model_layers(model.C, model.Vp)) {
        LayerBuffers<T> b(M, s);
        std::printf("validate %s %s %s (M=%d N=%d K=%d), autotuned path, sampled rows:\n", precision_name<T>(),
                    model.name, s.name, M, s.N, s.K);
        ok &= validate_layer(ctx.autotuned, b, s, rng);
        const int N = s.N, K = s.K;
        auto time = [](auto&& launch) { return double(workbench::median_ms(launch)); };
        struct Row {
            const char* pass;
            double plain, fused, unfused, autotuned;
            bool has_fusion;
        };
        std::vector<Row> rows;
        {
            const double plain = time([&] { matmul_forward(ctx.fused, b.out, (T*)nullptr, b.inp, b.weight, (const T*)nullptr, M, N, K, nullptr); });
            auto fwd = [&](MatmulContext& c) { return time([&] { forward(c, b); }); };
            rows.push_back({"fwd", plain, fwd(ctx.fused), fwd(ctx.unfused), fwd(ctx.autotuned), s.bias || s.gelu_out});
        }
        {
            const double plain = time([&] { matmul_backward(ctx.fused, b.dinp, (float*)nullptr, (float*)nullptr, (float*)nullptr, b.dout, (const T*)nullptr, b.weight, (const T*)nullptr, M, N, K, nullptr); });
            auto bwd = [&](MatmulContext& c) {
                return time([&] { matmul_backward(c, b.dinp, b.dbias_of_dinp, (float*)nullptr, (float*)nullptr, b.dout, (const T*)nullptr, b.weight, b.inp_pre_gelu, M, N, K, nullptr); });
            };
            rows.push_back({"bwd_input", plain, bwd(ctx.fused), bwd(ctx.unfused), bwd(ctx.autotuned), s.gelu_in});
        }
        {
            // Nothing to fuse: "auto" is the trainer's cost, the plain GEMM plus, for qkv, the
            // column sum over dout.
            const double plain = time([&] { matmul_backward(ctx.fused, (T*)nullptr, (float*)nullptr, b.dweight, (float*)nullptr, b.dout, b.inp, (const T*)nullptr, (const T*)nullptr, M, N, K, nullptr); });
            const double with_bias = time([&] { matmul_backward(ctx.autotuned, (T*)nullptr, (float*)nullptr, b.dweight, b.dbias, b.dout, b.inp, (const T*)nullptr, (const T*)nullptr, M, N, K, nullptr); });
            rows.push_back({"bwd_weight", plain, 0.0, 0.0, with_bias, false});
        }
        for (const Row& row : rows) {
            const std::string key =
                std::string(model.name) + "." + s.name + "." + row.pass + "." + precision_name<T>();
            auto torch = [&](const char* mode) {
                const auto found = torch_ms.find(key + "." + mode);
                return found == torch_ms.end() ? 0.0 : tflops(M, N, K, found->second);
            };
            char line[256];
            std::snprintf(line, sizeof line, "| %-6s %-5s %-9s %-10s %6d %6d %5d |%s |%s |%s |%s |%s |%s |",
                          model.name, precision_name<T>(), s.name, row.pass, M, N, K,
                          cell(tflops(M, N, K, row.plain)).c_str(),
                          cell(row.has_fusion ? tflops(M, N, K, row.fused) : 0).c_str(),
                          cell(row.has_fusion ? tflops(M, N, K, row.unfused) : 0).c_str(),
                          cell(tflops(M, N, K, row.autotuned)).c_str(), cell(torch("eager")).c_str(),
                          cell(torch("compiled")).c_str());
            table.push_back(line);
        }
    }
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = workbench::parse_options(argc, argv, /*accepts_no_torch=*/false).quick;
    const workbench::DeviceInfo device = workbench::device_info();
    std::printf("matmul workbench on %s (%d SMs)\n", device.name.c_str(), device.sm_count);
    std::mt19937_64 rng(std::random_device{}());

    bool ok = validate_small_models<__nv_bfloat16>(rng);
    ok &= validate_small_models<__half>(rng);

    if (!quick) {
        const ModelShape models[] = {{"gpt2s", 768, 32768, 50304}, {"gpt2l", 1280, 16384, 50304}};
        std::printf("\nTFLOP/s on %s. plain = the GEMM alone (cuBLASLt, no epilogue); fused = cuBLASLt epilogue;\n"
                    "unfused = GEMM + our bias/GELU/column-sum kernels; auto = MatmulContext's per-shape choice\n"
                    "(bwd_input of fc_proj includes fc's bias gradient; bwd_weight is always the plain GEMM, plus\n"
                    "the column sum over dout for qkv's bias); torch = F.linear / matmul (+gelu, +sum) in bf16,\n"
                    "eager and torch.compile, computing the same gradients. All count 2*M*N*K.\n",
                    device.name.c_str());
        std::vector<std::string> records;
        // One model at a time, each table printed when done: compiling the PyTorch side takes
        // about a minute per model.
        for (const ModelShape& model : models) {
            std::printf("\nPyTorch baseline for %s (bf16; eager and torch.compile)...\n", model.name);
            std::map<std::string, double> torch_ms;
            const std::string spec =
                std::string(model.name) + ":" + std::to_string(model.M) + ":" + std::to_string(model.C);
            for (const auto& t : workbench::run_torch_baseline("dev/cuda/matmul.py --dtype bf16 --vp " +
                                                               std::to_string(model.Vp) + " --models " + spec))
                torch_ms[t.name] = t.ms;
            std::vector<std::string> table;
            Contexts bf16_contexts, fp16_contexts;
            ok &= benchmark_model<__nv_bfloat16>(bf16_contexts, model, torch_ms, rng, table);
            ok &= benchmark_model<__half>(fp16_contexts, model, torch_ms, rng, table);
            records.push_back(std::string(model.name) + " bf16:\n" + bf16_contexts.autotuned.tuning_record());
            records.push_back(std::string(model.name) + " fp16:\n" + fp16_contexts.autotuned.tuning_record());
            std::printf("| model  dtype layer     pass            M      N     K |   plain |   fused | unfused |    auto "
                        "|   torch | compile |\n");
            for (const std::string& line : table) std::printf("%s\n", line.c_str());
        }
        std::printf("\nAutotuning records (site dtype M N K bias gelu choice how fused_ms unfused_ms):\n");
        for (const std::string& record : records) std::printf("%s", record.c_str());
    }
    std::printf("matmul: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
