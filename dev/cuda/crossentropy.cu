// Workbench for kernels/crossentropy.cuh: fused softmax cross-entropy with the gradient written
// in place into the logits.
//
//   build/dev/cuda/crossentropy [--quick]
//
// Variants:
//   1  two sweeps per row (production, kernels/crossentropy.cuh): online stats sweep, then the
//      gradient sweep re-reads the row from L2; at 256 / 512 / 1024 threads per row.
//   2  the row held in registers between the two phases (one HBM read by construction, but only
//      one row in flight per SM during the reduction); for Vp <= threads * vectors * 8.
// Validation (always): bf16 and fp16; a small vocabulary and GPT-2's (V=50257, Vp=50304); label
// smoothing 0 and 0.1; ~12% ignored targets; padded columns poisoned with NaN (they must be
// ignored and get exactly zero gradient); write_grad=false must leave the logits untouched; a
// second run must be bit-identical; an out-of-range target must give a NaN loss.
// Benchmark (without --quick): N=32768 rows at Vp=50304, GB/s of every variant against the
// measured copy bandwidth, and PyTorch F.cross_entropy forward+backward, eager and torch.compile.
//
// Tolerances, relative L2 error against a double reference on the same (rounded) logits:
//   loss 1e-5: fp32 math; the sums of 50k exponentials carry ~1e-6 relative error, which moves
//     lse (~11) by ~1e-6 absolute, and __expf/__logf add a few ulp.
//   gradient: the output is stored in T, so rounding dominates: bf16 1e-2 (RMS 2^-8/sqrt(3)
//     = 2.3e-3), fp16 1e-3 (2.8e-4). Target columns (p - 1 + eps, large) and the other columns
//     (p - eps/V, small) are checked separately so the large ones cannot hide errors in the rest.
//     grad_scale = 1024 keeps fp16 gradients out of the subnormal range, which is the loss
//     scale's job in training.
#include <random>

#include "dev/cuda/workbench.cuh"
#include "kernels/crossentropy.cuh"

namespace {

// Variant 2: the row stays in registers (kVectors 16-byte vectors per thread).
template <typename T, int kThreads, int kVectors>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_row_in_registers_kernel(T* logits, float* losses, const int* targets, int V, int Vp,
                                          float label_smoothing, float grad_scale, bool write_grad) {
    constexpr int kVec = Vec16<T>::size;
    CrossEntropyRowInput<T> in;
    if (!begin_cross_entropy_row<T, kThreads>(in, logits, losses, targets, V, Vp, write_grad)) return;
    T* row_logits = in.logits;
    const int vectors = in.vectors;
    Vec16<T> x[kVectors];
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
        const int v = threadIdx.x + i * kThreads;
        if (v < vectors) x[i] = load16_streaming(row_logits + v * kVec);
    }
    SoftmaxStats stats;
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
        const int v = threadIdx.x + i * kThreads;
        if (v < vectors) accumulate_stats(stats, x[i], v * kVec, V);
    }
    CrossEntropyRow row;
    if (!end_cross_entropy_stats<T, kThreads>(row, stats, in, losses, V, label_smoothing, grad_scale, write_grad))
        return;
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
        const int v = threadIdx.x + i * kThreads;
        if (v < vectors) store16_streaming(row_logits + v * kVec, gradient_vector(x[i], v * kVec, row));
    }
}

struct Problem {
    int N, V, Vp;
    float label_smoothing, grad_scale;
    bool write_grad;
};

template <typename T> using Launch = void (*)(T* logits, float* losses, const int* targets, const Problem& p);

template <typename T> void launch_production(T* logits, float* losses, const int* targets, const Problem& p) {
    fused_cross_entropy(logits, losses, targets, p.N, p.V, p.Vp, p.label_smoothing, p.grad_scale, p.write_grad,
                        nullptr);
}
template <typename T, int kThreads>
void launch_two_sweeps(T* logits, float* losses, const int* targets, const Problem& p) {
    check_cross_entropy_args(logits, p.N, p.V, p.Vp, p.label_smoothing);
    fused_cross_entropy_kernel<T, kThreads>
        <<<p.N, kThreads>>>(logits, losses, targets, p.V, p.Vp, p.label_smoothing, p.grad_scale, p.write_grad);
    CUDA_CHECK_LAUNCH();
}
template <typename T, int kThreads, int kVectors>
void launch_in_registers(T* logits, float* losses, const int* targets, const Problem& p) {
    check_cross_entropy_args(logits, p.N, p.V, p.Vp, p.label_smoothing);
    REQUIRE(p.Vp / Vec16<T>::size <= kThreads * kVectors, "Vp=%d does not fit in %d x %d vectors", p.Vp, kThreads,
            kVectors);
    cross_entropy_row_in_registers_kernel<T, kThreads, kVectors>
        <<<p.N, kThreads>>>(logits, losses, targets, p.V, p.Vp, p.label_smoothing, p.grad_scale, p.write_grad);
    CUDA_CHECK_LAUNCH();
}

template <typename T> struct Variant {
    const char* name;
    int max_row_vectors;  // longest row (in 16-byte vectors) the variant handles; 0 = any
    Launch<T> launch;
    bool supports(int Vp) const { return max_row_vectors == 0 || Vp / Vec16<T>::size <= max_row_vectors; }
};

template <typename T> std::vector<Variant<T>> variants() {
    static_assert(kCrossEntropyThreads == 512, "update the production variant's name");
    return {{"1: two sweeps, 256 threads", 0, launch_two_sweeps<T, 256>},
            {"1: two sweeps, 512 (production)", 0, launch_production<T>},
            {"1: two sweeps, 1024 threads", 0, launch_two_sweeps<T, 1024>},
            {"2: in registers, 512 x 13", 512 * 13, launch_in_registers<T, 512, 13>},
            {"2: in registers, 1024 x 7", 1024 * 7, launch_in_registers<T, 1024, 7>}};
}

template <typename T> double storage_tolerance() { return std::is_same_v<T, __half> ? 1e-3 : 1e-2; }

template <typename T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T> std::vector<T> download_raw(const T* device, size_t count) {
    std::vector<T> raw(count);
    CUDA_CHECK(cudaMemcpy(raw.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
    return raw;
}

// Device buffers of one problem size; logits are regenerated from `seed` by fill().
template <typename T> struct Buffers {
    Problem p;
    T* logits;
    float* losses;
    int* targets;
    std::vector<int> host_targets;
    explicit Buffers(const Problem& problem) : p(problem) {
        logits = workbench::device_alloc<T>(size_t(p.N) * p.Vp);
        losses = workbench::device_alloc<float>(p.N);
        targets = workbench::device_alloc<int>(p.N);
    }
    ~Buffers() {
        CUDA_CHECK(cudaFree(logits));
        CUDA_CHECK(cudaFree(losses));
        CUDA_CHECK(cudaFree(targets));
    }
    Buffers(const Buffers&) = delete;
    Buffers& operator=(const Buffers&) = delete;

    // Logits uniform in [-4, 4) (a spread of e^8 in probability), NaN in the padded columns,
    // poisoned losses.
    void fill(uint64_t seed) {
        workbench::fill_uniform(logits, size_t(p.N) * p.Vp, seed, 4.0f);
        if (p.Vp > p.V)
            CUDA_CHECK(cudaMemset2D(logits + p.V, size_t(p.Vp) * sizeof(T), 0xFF, size_t(p.Vp - p.V) * sizeof(T), p.N));
        workbench::poison(losses, p.N);
    }
    void set_targets(std::mt19937_64& rng) {
        host_targets.resize(p.N);
        std::uniform_int_distribution<int> cls(0, p.V - 1);
        std::uniform_real_distribution<float> u(0.0f, 1.0f);
        for (int& t : host_targets) t = u(rng) < 0.12f ? kCrossEntropyIgnoreIndex : cls(rng);
        CUDA_CHECK(cudaMemcpy(targets, host_targets.data(), p.N * sizeof(int), cudaMemcpyHostToDevice));
    }
};

// Runs one variant on fresh logits and checks the sampled rows (all rows when N <= 256).
template <typename T> bool validate(const Variant<T>& variant, Buffers<T>& b, std::mt19937_64& rng) {
    const Problem& p = b.p;
    std::printf("  [%s] %s N=%d V=%d Vp=%d eps=%.2f write_grad=%d\n", variant.name, precision_name<T>(), p.N, p.V,
                p.Vp, p.label_smoothing, p.write_grad);
    b.set_targets(rng);
    const uint64_t seed = rng();
    b.fill(seed);
    std::vector<int> rows;
    for (int r = 0; r < p.N; r += std::max(1, p.N / 256)) rows.push_back(r);
    if (rows.back() != p.N - 1) rows.push_back(p.N - 1);
    auto download_rows = [&] {
        std::vector<T> values;
        for (int r : rows) {
            const std::vector<T> row = download_raw(b.logits + size_t(r) * p.Vp, p.Vp);
            values.insert(values.end(), row.begin(), row.end());
        }
        return values;
    };
    const std::vector<T> before = download_rows();
    variant.launch(b.logits, b.losses, b.targets, p);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<T> after = download_rows();
    const std::vector<float> losses = workbench::download(b.losses, p.N);

    // Second run on identical inputs: bit-identical losses and gradients.
    b.fill(seed);
    variant.launch(b.logits, b.losses, b.targets, p);
    CUDA_CHECK(cudaDeviceSynchronize());
    const bool deterministic = same_bits(download_rows(), after) && same_bits(workbench::download(b.losses, p.N), losses);

    std::vector<float> loss_out, grad_target, grad_other;
    std::vector<double> loss_ref, grad_target_ref, grad_other_ref;
    bool padded_zero = true, ignored_zero = true;
    for (size_t i = 0; i < rows.size(); ++i) {
        const int r = rows[i], t = b.host_targets[r];
        const T* x_raw = &before[i * p.Vp];
        const T* g_raw = &after[i * p.Vp];
        if (t == kCrossEntropyIgnoreIndex) {
            loss_out.push_back(losses[r]);
            loss_ref.push_back(0.0);
            if (p.write_grad)
                for (int c = 0; c < p.Vp; ++c) ignored_zero &= to_float(g_raw[c]) == 0.0f;
            continue;
        }
        double max = -1e300, sum = 0.0, logit_sum = 0.0;
        for (int c = 0; c < p.V; ++c) max = std::max(max, double(to_float(x_raw[c])));
        for (int c = 0; c < p.V; ++c) {
            sum += std::exp(double(to_float(x_raw[c])) - max);
            logit_sum += to_float(x_raw[c]);
        }
        const double lse = max + std::log(sum), eps = p.label_smoothing;
        loss_out.push_back(losses[r]);
        loss_ref.push_back((1.0 - eps) * (lse - to_float(x_raw[t])) + eps * (lse - logit_sum / p.V));
        if (!p.write_grad) continue;
        for (int c = 0; c < p.V; ++c) {
            const double g = (std::exp(double(to_float(x_raw[c])) - lse) - eps / p.V - (c == t ? 1.0 - eps : 0.0)) *
                             p.grad_scale;
            (c == t ? grad_target : grad_other).push_back(to_float(g_raw[c]));
            (c == t ? grad_target_ref : grad_other_ref).push_back(g);
        }
        for (int c = p.V; c < p.Vp; ++c) padded_zero &= to_float(g_raw[c]) == 0.0f;
    }
    bool ok = workbench::report_check("loss", workbench::compare(loss_out, loss_ref), 1e-5);
    if (p.write_grad) {
        ok &= workbench::report_check("grad, target columns", workbench::compare(grad_target, grad_target_ref),
                                      storage_tolerance<T>());
        ok &= workbench::report_check("grad, other columns", workbench::compare(grad_other, grad_other_ref),
                                      storage_tolerance<T>());
        std::printf("  %-28s %s\n", "padded columns == 0", padded_zero ? "ok" : "FAIL");
        std::printf("  %-28s %s\n", "ignored rows == 0", ignored_zero ? "ok" : "FAIL");
        ok &= padded_zero && ignored_zero;
    } else {
        // Bitwise, padded NaNs included: nothing was written.
        const bool untouched = same_bits(before, after);
        std::printf("  %-28s %s\n", "logits untouched", untouched ? "ok" : "FAIL");
        ok &= untouched;
    }
    std::printf("  %-28s %s\n", "second run bit-identical", deterministic ? "ok" : "FAIL");
    return ok && deterministic;
}

// An out-of-range target (not -100) must surface as a NaN loss rather than a silent read.
template <typename T> bool validate_bad_target(const Variant<T>& variant) {
    Buffers<T> b({4, 1000, 1024, 0.0f, 1.0f, true});
    b.fill(1);
    b.host_targets = {0, 1000, kCrossEntropyIgnoreIndex, -5};
    CUDA_CHECK(cudaMemcpy(b.targets, b.host_targets.data(), 4 * sizeof(int), cudaMemcpyHostToDevice));
    variant.launch(b.logits, b.losses, b.targets, b.p);
    const std::vector<float> losses = workbench::download(b.losses, 4);
    const bool ok = std::isfinite(losses[0]) && std::isnan(losses[1]) && losses[2] == 0.0f && std::isnan(losses[3]);
    std::printf("  [%s] %-28s %s\n", variant.name, "bad target -> NaN loss", ok ? "ok" : "FAIL");
    return ok;
}

template <typename T> bool validate_all(bool quick, std::mt19937_64& rng) {
    std::vector<Problem> problems = {{200, 1000, 1024, 0.0f, 1024.0f, true},
                                     {200, 1000, 1024, 0.1f, 1024.0f, true},
                                     {64, 1000, 1152, 0.1f, 1024.0f, false},
                                     {24, 50257, 50304, 0.1f, 1024.0f, true},
                                     {24, 50257, 50304, 0.0f, 1024.0f, true}};
    if (!quick) problems.push_back({32768, 50257, 50304, 0.1f, 1024.0f, true});
    bool ok = true;
    for (const Variant<T>& variant : variants<T>()) {
        ok &= validate_bad_target(variant);
        for (const Problem& p : problems) {
            if (!variant.supports(p.Vp)) continue;
            Buffers<T> b(p);
            ok &= validate(variant, b, rng);
        }
    }
    return ok;
}

template <typename T>
void benchmark(double copy_gbs, const std::vector<workbench::BaselineTiming>& torch, std::mt19937_64& rng) {
    const Problem p{32768, 50257, 50304, 0.1f, 1.0f / 32768, true};
    Buffers<T> b(p);
    b.set_targets(rng);
    b.fill(rng());
    // Bytes that must move: the logits read once and the gradient written once, targets, losses.
    const double bytes = 2.0 * p.N * p.Vp * sizeof(T) + p.N * (sizeof(int) + sizeof(float));
    auto row = [&](const char* name, double ms) {
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        std::printf("| %-5s | %-32s | %8.3f | %7.0f | %5.1f%% |\n", precision_name<T>(), name, ms, gbs,
                    100.0 * gbs / copy_gbs);
    };
    for (const Variant<T>& variant : variants<T>()) {
        if (!variant.supports(p.Vp)) continue;
        // Repeated runs see gradients instead of logits: same work, same bytes.
        row(variant.name, workbench::median_ms([&] { variant.launch(b.logits, b.losses, b.targets, p); }));
    }
    for (const auto& t : torch)
        if (t.name.find(std::string(".") + precision_name<T>() + ".") != std::string::npos) row(t.name.c_str(), t.ms);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = workbench::parse_options(argc, argv, /*accepts_no_torch=*/false).quick;
    const workbench::DeviceInfo device = workbench::device_info();
    std::printf("cross-entropy workbench on %s (%d SMs)\n", device.name.c_str(), device.sm_count);
    std::mt19937_64 rng(std::random_device{}());
    bool ok = validate_all<__nv_bfloat16>(quick, rng);
    ok &= validate_all<__half>(quick, rng);

    if (!quick) {
        const double copy_gbs = workbench::measured_copy_bandwidth_gbs();
        std::printf("\nPyTorch baseline (F.cross_entropy forward + backward, eager and torch.compile)...\n");
        const auto torch = workbench::run_torch_baseline(
            "dev/cuda/crossentropy.py --N 32768 --V 50257 --Vp 50304 --label-smoothing 0.1");
        std::printf("\n%s, N=32768 rows, V=50257, Vp=50304, label smoothing 0.1; measured copy bandwidth %.0f GB/s.\n"
                    "GB/s counts the bytes that must move: logits read once + gradient written once (+ targets, "
                    "losses);\nPyTorch is charged the same bytes although it moves more.\n",
                    device.name.c_str(), copy_gbs);
        std::printf("| dtype | variant                          |       ms |    GB/s |  of copy |\n");
        benchmark<__nv_bfloat16>(copy_gbs, torch, rng);
        benchmark<__half>(copy_gbs, torch, rng);
        const double saved = 65536.0 * 50304 * 2;
        std::printf("\nIn-place gradient: no second (N, Vp) buffer. For gpt2s at device batch 64 (N = 64*1024 = "
                    "65536, Vp = 50304, 16-bit): %.2f GB (%.2f GiB) saved.\n",
                    saved / 1e9, saved / (1u << 30));
    }
    std::printf("crossentropy: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
