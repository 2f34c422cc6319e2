// Workbench for kernels/encoder.cuh: token + position embedding, forward and deterministic
// backward (positions bucketed by token on the CPU, no atomics).
//
//   build/dev/cuda/encoder [--quick]
//
// Validation (always): bf16 and fp16, with and without learned positions, channel counts that
// leave partial 256-channel slices, skewed token frequencies (one token takes 30% of the batch:
// a long bucket). Forward output poisoned first; dwte/dwpe accumulate onto random initial values;
// rows of dwte whose token is absent must stay bit-identical; a second backward from the same
// initial values must be bit-identical; dwpe stored (GradWrite::store) into poisoned storage must
// be the sums alone. Without --quick also the gpt2s shape (B=64, T=1024).
// Benchmark (without --quick): gpt2s shape with Zipf-distributed tokens; GB/s against the measured
// copy bandwidth; the CPU time of building the plan; PyTorch embedding forward and forward +
// backward, eager and torch.compile.
//
// Tolerances, relative L2 error against a double reference on the same rounded inputs:
//   forward: one rounding of wte + wpe into T: bf16 1e-2 (RMS 2^-8/sqrt(3) = 2.3e-3),
//     fp16 1e-3 (2.8e-4).
//   backward: fp32 sums of n <= N/8 terms per warp, then 8 warp partials: RMS relative error
//     ~2^-24 * sqrt(n/2), 2e-6 for the 30% bucket at N = 65536 (n = 2458); 1e-5.
#include <chrono>
#include <numeric>
#include <random>

#include "dev/cuda/workbench.cuh"
#include "kernels/encoder.cuh"

namespace {

struct Problem {
    int B, T, C, Vp;
    bool wpe;
};

template <typename T> double storage_tolerance() { return std::is_same_v<T, __half> ? 1e-3 : 1e-2; }

// 30% of positions hold one token, the rest are uniform over the vocabulary.
std::vector<int> skewed_tokens(int N, int Vp, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> any(0, Vp - 1);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    const int frequent = any(rng);
    std::vector<int> tokens(N);
    for (int& t : tokens) t = u(rng) < 0.3f ? frequent : any(rng);
    return tokens;
}

// Zipf(1) over the vocabulary with token ids shuffled: roughly the frequencies of text.
std::vector<int> zipf_tokens(int N, int Vp, std::mt19937_64& rng) {
    std::vector<double> weights(Vp);
    for (int r = 0; r < Vp; ++r) weights[r] = 1.0 / (r + 1);
    std::discrete_distribution<int> rank(weights.begin(), weights.end());
    std::vector<int> id_of_rank(Vp);
    std::iota(id_of_rank.begin(), id_of_rank.end(), 0);
    std::shuffle(id_of_rank.begin(), id_of_rank.end(), rng);
    std::vector<int> tokens(N);
    for (int& t : tokens) t = id_of_rank[rank(rng)];
    return tokens;
}

template <typename T> struct Buffers {
    Problem p;
    T *out, *wte, *wpe = nullptr, *dout;
    float *dwte, *dwpe = nullptr;
    int* tokens;
    EncoderBackwardPlan plan;
    explicit Buffers(const Problem& problem) : p(problem), plan(problem.B * problem.T, problem.Vp) {
        using workbench::device_alloc;
        const size_t NC = size_t(p.B) * p.T * p.C;
        out = device_alloc<T>(NC);
        dout = device_alloc<T>(NC);
        wte = device_alloc<T>(size_t(p.Vp) * p.C);
        dwte = device_alloc<float>(size_t(p.Vp) * p.C);
        tokens = device_alloc<int>(size_t(p.B) * p.T);
        if (p.wpe) wpe = device_alloc<T>(size_t(p.T) * p.C), dwpe = device_alloc<float>(size_t(p.T) * p.C);
    }
    ~Buffers() {
        for (void* ptr : std::initializer_list<void*>{out, wte, wpe, dout, dwte, dwpe, tokens})
            if (ptr) CUDA_CHECK(cudaFree(ptr));
    }
    Buffers(const Buffers&) = delete;
    Buffers& operator=(const Buffers&) = delete;
    int N() const { return p.B * p.T; }
};

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

template <typename T> bool validate(const Problem& p, std::mt19937_64& rng) {
    std::printf("%s B=%d T=%d C=%d Vp=%d %s\n", precision_name<T>(), p.B, p.T, p.C, p.Vp,
                p.wpe ? "learned positions" : "no positions (rotary)");
    Buffers<T> b(p);
    const int N = b.N(), C = p.C;
    const std::vector<int> tokens = skewed_tokens(N, p.Vp, rng);
    CUDA_CHECK(cudaMemcpy(b.tokens, tokens.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    const uint64_t seed = rng();
    workbench::fill_uniform(b.wte, size_t(p.Vp) * C, seed + 1);
    workbench::fill_uniform(b.dout, size_t(N) * C, seed + 2);
    if (b.wpe) workbench::fill_uniform(b.wpe, size_t(p.T) * C, seed + 3);
    auto reset_gradients = [&] {
        workbench::fill_uniform(b.dwte, size_t(p.Vp) * C, seed + 4);
        if (b.dwpe) workbench::fill_uniform(b.dwpe, size_t(p.T) * C, seed + 5);
    };
    reset_gradients();
    workbench::poison(b.out, size_t(N) * C);
    const std::vector<float> dwte_initial = workbench::download(b.dwte, size_t(p.Vp) * C);
    const std::vector<float> dwpe_initial = b.dwpe ? workbench::download(b.dwpe, size_t(p.T) * C) : std::vector<float>{};

    encoder_forward(b.out, b.tokens, b.wte, b.wpe, p.B, p.T, C, nullptr);
    b.plan.build(tokens.data(), N, nullptr);
    encoder_backward(b.dwte, b.dwpe, b.dout, b.plan, p.B, p.T, C, GradWrite::add, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> out = workbench::download(b.out, size_t(N) * C);
    const std::vector<float> dwte = workbench::download(b.dwte, size_t(p.Vp) * C);
    const std::vector<float> dwpe = b.dwpe ? workbench::download(b.dwpe, size_t(p.T) * C) : std::vector<float>{};

    reset_gradients();
    b.plan.build(tokens.data(), N, nullptr);
    encoder_backward(b.dwte, b.dwpe, b.dout, b.plan, p.B, p.T, C, GradWrite::add, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const bool deterministic = bitwise_equal(dwte, workbench::download(b.dwte, size_t(p.Vp) * C)) &&
                               (!b.dwpe || bitwise_equal(dwpe, workbench::download(b.dwpe, size_t(p.T) * C)));

    const std::vector<float> wte = workbench::download(b.wte, size_t(p.Vp) * C);
    const std::vector<float> wpe = b.wpe ? workbench::download(b.wpe, size_t(p.T) * C) : std::vector<float>{};
    const std::vector<float> dout = workbench::download(b.dout, size_t(N) * C);
    std::vector<double> out_ref(size_t(N) * C);
    std::vector<double> dwte_ref(dwte_initial.begin(), dwte_initial.end());
    std::vector<double> dwpe_ref(dwpe_initial.begin(), dwpe_initial.end());
    std::vector<bool> present(p.Vp, false);
    for (int n = 0; n < N; ++n) {
        const int t = n % p.T, token = tokens[n];
        present[token] = true;
        for (int c = 0; c < C; ++c) {
            out_ref[size_t(n) * C + c] = double(wte[size_t(token) * C + c]) + (b.wpe ? wpe[size_t(t) * C + c] : 0.0);
            dwte_ref[size_t(token) * C + c] += dout[size_t(n) * C + c];
            if (b.dwpe) dwpe_ref[size_t(t) * C + c] += dout[size_t(n) * C + c];
        }
    }
    bool absent_untouched = true;
    for (int v = 0; v < p.Vp; ++v)
        if (!present[v])
            absent_untouched &= std::memcmp(&dwte[size_t(v) * C], &dwte_initial[size_t(v) * C], C * sizeof(float)) == 0;

    bool ok = workbench::report_check("out", workbench::compare(out, out_ref), storage_tolerance<T>());
    ok &= workbench::report_check("dwte +=", workbench::compare(dwte, dwte_ref), 1e-5);
    if (b.dwpe) {
        ok &= workbench::report_check("dwpe +=", workbench::compare(dwpe, dwpe_ref), 1e-5);
        // Stored, not added (a step's first micro-step): the poison (NaN) dwpe holds must not reach it.
        reset_gradients();
        workbench::poison(b.dwpe, size_t(p.T) * C);
        b.plan.build(tokens.data(), N, nullptr);
        encoder_backward(b.dwte, b.dwpe, b.dout, b.plan, p.B, p.T, C, GradWrite::store, nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        ok &= workbench::report_check("dwpe = (stored)",
                                      workbench::compare(workbench::download(b.dwpe, size_t(p.T) * C),
                                                         workbench::without_initial(dwpe_ref, dwpe_initial)),
                                      1e-5);
    }
    std::printf("  %-28s %s\n", "absent tokens' dwte rows", absent_untouched ? "untouched  ok" : "CHANGED  FAIL");
    std::printf("  %-28s %s\n", "backward run twice", deterministic ? "bit-identical  ok" : "DIFFERENT  FAIL");
    return ok && absent_untouched && deterministic;
}

template <typename T> bool validate_all(bool quick, std::mt19937_64& rng) {
    std::vector<Problem> problems = {{4, 64, 72, 512, true}, {4, 64, 768, 512, false}, {3, 100, 1280, 1000, true}};
    if (!quick) problems.push_back({64, 1024, 768, 50304, true});
    bool ok = true;
    for (const Problem& p : problems) ok &= validate<T>(p, rng);
    return ok;
}

template <typename T>
void benchmark(double copy_gbs, const std::vector<workbench::BaselineTiming>& torch, std::mt19937_64& rng) {
    const Problem p{64, 1024, 768, 50304, true};
    Buffers<T> b(p);
    const int N = b.N(), C = p.C;
    const std::vector<int> tokens = zipf_tokens(N, p.Vp, rng);
    CUDA_CHECK(cudaMemcpy(b.tokens, tokens.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    workbench::fill_uniform(b.wte, size_t(p.Vp) * C, 1);
    workbench::fill_uniform(b.wpe, size_t(p.T) * C, 2);
    workbench::fill_uniform(b.dout, size_t(N) * C, 3);
    CUDA_CHECK(cudaMemset(b.dwte, 0, size_t(p.Vp) * C * sizeof(float)));
    CUDA_CHECK(cudaMemset(b.dwpe, 0, size_t(p.T) * C * sizeof(float)));

    const auto start = std::chrono::steady_clock::now();
    constexpr int kBuilds = 20;
    for (int i = 0; i < kBuilds; ++i) b.plan.build(tokens.data(), N, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const double build_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / kBuilds;
    const int distinct = b.plan.num_buckets();

    // Bytes that must move. Forward: tokens, the N gathered wte rows, wpe once, out.
    // Backward: dout, read-modify-write of the touched dwte rows and of dwpe (fp32), the plan.
    const double s = sizeof(T);
    const double fwd_bytes = 4.0 * N + 2.0 * N * C * s + double(p.T) * C * s;
    const double bwd_bytes = double(N) * C * s + 8.0 * (double(distinct) + p.T) * C + 4.0 * (N + 2.0 * distinct);
    auto row = [&](const char* name, double ms, double bytes) {
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        std::printf("| %-5s | %-34s | %8.4f | %7.0f | %5.1f%% |\n", precision_name<T>(), name, ms, gbs,
                    100.0 * gbs / copy_gbs);
    };
    const double fwd_ms = workbench::median_ms([&] { encoder_forward(b.out, b.tokens, b.wte, b.wpe, p.B, p.T, C, nullptr); });
    const double bwd_ms = workbench::median_ms(
        [&] { encoder_backward(b.dwte, b.dwpe, b.dout, b.plan, p.B, p.T, C, GradWrite::add, nullptr); });
    row("ours forward", fwd_ms, fwd_bytes);
    row("ours backward", bwd_ms, bwd_bytes);
    row("ours forward + backward", fwd_ms + bwd_ms, fwd_bytes + bwd_bytes);
    for (const auto& t : torch) {
        if (t.name.find(std::string(".") + precision_name<T>() + ".") == std::string::npos) continue;
        const bool both = t.name.find(".fwd_bwd.") != std::string::npos;
        row(t.name.c_str(), t.ms, both ? fwd_bytes + bwd_bytes : fwd_bytes);
    }
    std::printf("| %-5s | plan build on the CPU: %.3f ms for %d tokens, %d distinct (overlaps the GPU's forward)\n",
                precision_name<T>(), build_ms, N, distinct);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = workbench::parse_options(argc, argv, /*accepts_no_torch=*/false).quick;
    const workbench::DeviceInfo device = workbench::device_info();
    std::printf("encoder workbench on %s (%d SMs)\n", device.name.c_str(), device.sm_count);
    std::mt19937_64 rng(std::random_device{}());
    bool ok = validate_all<__nv_bfloat16>(quick, rng);
    ok &= validate_all<__half>(quick, rng);

    if (!quick) {
        const double copy_gbs = workbench::measured_copy_bandwidth_gbs();
        std::printf("\nPyTorch baseline (embedding forward, forward + backward; eager and torch.compile)...\n");
        const auto torch = workbench::run_torch_baseline("dev/cuda/encoder.py --B 64 --T 1024 --C 768 --Vp 50304");
        std::printf("\n%s, gpt2s shape B=64 T=1024 C=768 Vp=50304, Zipf tokens; copy bandwidth %.0f GB/s.\n"
                    "GB/s counts the bytes that must move (see encoder.cu); PyTorch is charged the same bytes\n"
                    "(it writes 16-bit gradients that overwrite, ours accumulate into fp32).\n",
                    device.name.c_str(), copy_gbs);
        std::printf("| dtype | variant                            |       ms |    GB/s |  of copy |\n");
        benchmark<__nv_bfloat16>(copy_gbs, torch, rng);
        benchmark<__half>(copy_gbs, torch, rng);
    }
    std::printf("encoder: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
