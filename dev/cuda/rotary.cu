// Workbench for kernels/rotary.cuh: rotary position embedding applied in place to the q and k
// of the packed QKV, forward and backward (inverse rotation).
//
//   build/dev/cuda/rotary             validate everything, then benchmark (with PyTorch baselines)
//   build/dev/cuda/rotary --quick     validation only, small shapes (what `make test-gpu` runs)
//   build/dev/cuda/rotary --no-torch  full run without the PyTorch baselines
// Run from the repository root: the baselines are dev/cuda/rotary.py.
//
// Variants are the production kernel at each vector width (elements per access): 1 and 2 are
// the scalar-ish history and the fallback for rotary dims such as 10; 4 is 8-byte access; 8 is
// the 16-byte access the launcher picks whenever the layout allows it.
//
// Validation per shape, layout, width and precision: forward and backward against a CPU
// reference in double that uses the same fp32 angles; backward(forward(x)) == x within
// rounding; and every element outside the rotary dims of q and k (the rest of each head, all
// of v) bit-for-bit unchanged.
#include <cstring>
#include <string>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/rotary.cuh"

namespace {

constexpr float kBase = 10000.0f;

struct RotaryShape {
    int B, T, NH, HD, rotary_dim;
    size_t elements() const { return size_t(B) * T * 3 * NH * HD; }
};

// Tolerance on ||out - ref|| / ||ref|| over the rotated elements. Each output is one fp32
// rotation of exact inputs rounded once to T: RMS relative error about 2e-3 (bf16) or 3e-4
// (fp16); cos/sin add ~1e-6. The round trip rounds twice (x1.4). Tolerances are ~5x that.
template <typename T> double tolerance();
template <> double tolerance<__nv_bfloat16>() { return 1e-2; }
template <> double tolerance<__half>() { return 2e-3; }

using workbench::DeviceArray;
using workbench::Tally;

// Index of element (position p, head h of the 3*NH heads, dim d) in (B*T, 3, NH, HD).
size_t element_index(const RotaryShape& s, long long p, int head, int d) {
    return (size_t(p) * 3 * s.NH + head) * s.HD + d;
}

// Rotates q and k by sign * angle in double, with the kernel's fp32 angles fp32(t) * inv_freq.
std::vector<double> reference_rotary(const std::vector<float>& qkv, const RotaryShape& s, bool interleaved,
                                     double sign) {
    const rotary_detail::InverseFrequencies inv_freq = rotary_detail::inverse_frequencies(s.rotary_dim, kBase);
    std::vector<double> out(qkv.begin(), qkv.end());
    const int half = s.rotary_dim / 2;
    for (long long p = 0; p < static_cast<long long>(s.B) * s.T; ++p) {
        const int t = static_cast<int>(p % s.T);
        for (int i = 0; i < half; ++i) {
            const float angle = static_cast<float>(t) * inv_freq.values[i];
            const double c = std::cos(static_cast<double>(angle)), sn = sign * std::sin(static_cast<double>(angle));
            for (int head = 0; head < 2 * s.NH; ++head) {
                const size_t ia = element_index(s, p, head, interleaved ? 2 * i : i);
                const size_t ib = element_index(s, p, head, interleaved ? 2 * i + 1 : i + half);
                const double a = qkv[ia], b = qkv[ib];
                out[ia] = a * c - b * sn;
                out[ib] = a * sn + b * c;
            }
        }
    }
    return out;
}

// Splits a tensor into its rotated elements (dims < rotary_dim of q and k) and the rest.
template <typename V> void split_rotated(const RotaryShape& s, const std::vector<V>& all, std::vector<V>& rotated,
                                         std::vector<V>& untouched) {
    rotated.clear();
    untouched.clear();
    for (long long p = 0; p < static_cast<long long>(s.B) * s.T; ++p)
        for (int head = 0; head < 3 * s.NH; ++head)
            for (int d = 0; d < s.HD; ++d) {
                const V v = all[element_index(s, p, head, d)];
                (head < 2 * s.NH && d < s.rotary_dim ? rotated : untouched).push_back(v);
            }
}

// Checks `out` (downloaded) against `ref` on the rotated elements and bit-for-bit against
// `original` elsewhere.
bool check_rotary(const char* what, const RotaryShape& s, const std::vector<float>& out,
                  const std::vector<double>& ref, const std::vector<float>& original, double tol, Tally& tally) {
    std::vector<float> out_rotated, out_rest, original_rotated, original_rest;
    std::vector<double> ref_rotated, ref_rest;
    split_rotated(s, out, out_rotated, out_rest);
    split_rotated(s, ref, ref_rotated, ref_rest);
    split_rotated(s, original, original_rotated, original_rest);
    bool ok = workbench::report_check(what, workbench::compare(out_rotated, ref_rotated), tol);
    const bool rest_ok = out_rest.size() == original_rest.size() &&
                         std::memcmp(out_rest.data(), original_rest.data(), out_rest.size() * sizeof(float)) == 0;
    std::printf("  %-28s %s  %s\n", "  dims >= rotary_dim, v", rest_ok ? "unchanged" : "MODIFIED", rest_ok ? "ok" : "FAIL");
    ok = ok && rest_ok;
    tally.add(ok);
    return ok;
}

template <typename T>
void validate(const RotaryShape& s, bool interleaved, int width, bool production, std::mt19937_64& rng, Tally& tally) {
    std::printf("%s %s B=%d T=%d NH=%d HD=%d rotary_dim=%d, width %d%s\n", precision_name<T>(),
                interleaved ? "interleaved" : "rotate-half", s.B, s.T, s.NH, s.HD, s.rotary_dim, width,
                production ? " (public launchers)" : "");
    DeviceArray<T> qkv(s.elements());
    const std::vector<float> x = workbench::upload_rounded(qkv.ptr, workbench::random_vector(s.elements(), rng));
    auto run = [&](float sin_sign) {
        if (production) {
            (sin_sign > 0 ? rotary_forward<T> : rotary_backward<T>)(qkv.ptr, s.B, s.T, s.NH, s.HD, s.rotary_dim,
                                                                    kBase, interleaved, nullptr);
        } else {
            rotary_detail::launch_rotary(width, qkv.ptr, s.B, s.T, s.NH, s.HD, s.rotary_dim, kBase, interleaved,
                                         sin_sign, nullptr);
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        return workbench::download(qkv.ptr, s.elements());
    };
    const std::vector<float> y = run(1.0f);
    check_rotary("forward", s, y, reference_rotary(x, s, interleaved, 1.0), x, tolerance<T>(), tally);
    const std::vector<float> round_trip = run(-1.0f);
    check_rotary("backward(forward(x)) == x", s, round_trip, std::vector<double>(x.begin(), x.end()), x,
                 tolerance<T>(), tally);
    workbench::upload_rounded(qkv.ptr, x);
    check_rotary("backward", s, run(-1.0f), reference_rotary(x, s, interleaved, -1.0), x, tolerance<T>(), tally);
}

bool width_fits(const RotaryShape& s, bool interleaved, int width) {
    const int span = interleaved ? s.rotary_dim : s.rotary_dim / 2;
    return s.HD % width == 0 && span % width == 0 && (!interleaved || width >= 2);
}

template <typename T> void validate_all(const std::vector<RotaryShape>& shapes, std::mt19937_64& rng, Tally& tally) {
    for (const RotaryShape& s : shapes)
        for (bool interleaved : {false, true}) {
            validate<T>(s, interleaved, rotary_detail::launch_width(s.HD, s.rotary_dim, interleaved, sizeof(T)), true,
                        rng, tally);
            for (int width : {1, 2, 4, 8})
                if (width_fits(s, interleaved, width)) validate<T>(s, interleaved, width, false, rng, tally);
        }
}

// ---------------------------------------------------------------------------------------------
// Benchmark

struct BenchmarkShape {
    int NH, HD;
};
constexpr int kBenchB = 16, kBenchT = 2048;  // 32768 positions, the gpt3 presets' sequence length
const BenchmarkShape kBenchShapes[] = {{12, 64}, {16, 96}, {16, 128}, {32, 80}};  // gpt3s, l, xl, 2.7B

double find_ms(const std::vector<workbench::BaselineTiming>& timings, const std::string& name) {
    for (const auto& t : timings)
        if (t.name == name) return t.ms;
    return -1.0;
}

void print_row(const char* impl, const char* dtype, const char* direction, double ms, double bytes, double copy_gbs) {
    if (ms < 0) {
        std::printf("    %-16s %-5s %-4s %9s\n", impl, dtype, direction, "-");
        return;
    }
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("    %-16s %-5s %-4s %9.4f %8.0f %6.1f%%\n", impl, dtype, direction, ms, gbs, 100.0 * gbs / copy_gbs);
}

template <typename T>
void benchmark_ours(const RotaryShape& s, bool interleaved, std::mt19937_64& rng, double bytes, double copy_gbs) {
    DeviceArray<T> qkv(s.elements());
    // Filled on the GPU: up to 250M elements per shape, which the host generator took seconds for
    // (timing does not depend on the values).
    workbench::fill_uniform(qkv.ptr, s.elements(), rng());
    const int chosen = rotary_detail::launch_width(s.HD, s.rotary_dim, interleaved, sizeof(T));
    for (int width : {1, 2, 4, 8}) {
        if (!width_fits(s, interleaved, width)) continue;
        const float ms = workbench::median_ms([&] {
            rotary_detail::launch_rotary(width, qkv.ptr, s.B, s.T, s.NH, s.HD, s.rotary_dim, kBase, interleaved, 1.0f,
                                         nullptr);
        });
        const std::string name = "ours width " + std::to_string(width) + (width == chosen ? " *" : "");
        print_row(name.c_str(), precision_name<T>(), "fwd", ms, bytes, copy_gbs);
    }
    const float backward_ms = workbench::median_ms([&] {
        rotary_backward(qkv.ptr, s.B, s.T, s.NH, s.HD, s.rotary_dim, kBase, interleaved, nullptr);
    });
    print_row("ours *", precision_name<T>(), "bwd", backward_ms, bytes, copy_gbs);
}

void benchmark(bool with_torch, std::mt19937_64& rng) {
    const workbench::DeviceInfo device = workbench::device_info();
    const double copy_gbs = workbench::measured_copy_bandwidth_gbs();
    std::printf("\nBenchmark on %s (%d SMs): B=%d T=%d, rotary_dim = HD/2, base %.0f; measured copy bandwidth %.0f GB/s\n",
                device.name.c_str(), device.sm_count, kBenchB, kBenchT, kBase, copy_gbs);
    std::printf("GB/s counts the bytes that must move: the rotary dims of q and k, read and written.\n");
    std::printf("'*' = what the public launchers use. PyTorch: bf16, fp32 cos/sin tables precomputed, in place.\n");

    std::vector<workbench::BaselineTiming> torch_timings;
    if (with_torch) {
        std::string heads;
        for (const BenchmarkShape& b : kBenchShapes)
            heads += (heads.empty() ? "" : ",") + std::to_string(b.NH) + "x" + std::to_string(b.HD);
        torch_timings = workbench::run_torch_baseline("dev/cuda/rotary.py --B " + std::to_string(kBenchB) + " --T " +
                                                      std::to_string(kBenchT) + " --heads " + heads);
    }
    for (const BenchmarkShape& b : kBenchShapes)
        for (bool interleaved : {false, true}) {
            const RotaryShape s{kBenchB, kBenchT, b.NH, b.HD, b.HD / 2};
            const double bytes_16bit = 2.0 * s.B * s.T * 2 * s.NH * s.rotary_dim * 2;  // (read + write) * 2 bytes
            std::printf("\n  NH=%d HD=%d rotary_dim=%d %s\n    %-16s %-5s %-4s %9s %8s %7s\n", s.NH, s.HD,
                        s.rotary_dim, interleaved ? "interleaved (GPT-J)" : "rotate-half (GPT-NeoX)", "impl", "dtype",
                        "dir", "ms", "GB/s", "%copy");
            benchmark_ours<__nv_bfloat16>(s, interleaved, rng, bytes_16bit, copy_gbs);
            benchmark_ours<__half>(s, interleaved, rng, bytes_16bit, copy_gbs);
            if (!with_torch) continue;
            const std::string key = std::string(interleaved ? "gptj" : "neox") + "_" + std::to_string(b.NH) + "x" +
                                    std::to_string(b.HD);
            print_row("torch eager", "bf16", "fwd", find_ms(torch_timings, "eager_" + key), bytes_16bit, copy_gbs);
            print_row("torch.compile", "bf16", "fwd", find_ms(torch_timings, "compile_" + key), bytes_16bit, copy_gbs);
        }
    // rotary_dim = HD/2 reads and writes half of every head's 64-256 bytes; rotating the whole
    // head touches whole lines. The difference says how much the half-line pattern costs.
    std::printf("\n  For comparison, the whole head rotated (rotary_dim = HD), rotate-half, ours:\n");
    for (const BenchmarkShape& b : kBenchShapes) {
        const RotaryShape s{kBenchB, kBenchT, b.NH, b.HD, b.HD};
        const double bytes_16bit = 2.0 * s.B * s.T * 2 * s.NH * s.rotary_dim * 2;
        std::printf("  NH=%d HD=%d rotary_dim=%d\n", s.NH, s.HD, s.rotary_dim);
        benchmark_ours<__nv_bfloat16>(s, false, rng, bytes_16bit, copy_gbs);
    }
    std::printf("\n(backward is the same kernel with the angle negated; PyTorch's backward is its forward with "
                "-sin, so only forward is timed there.)\n");
}

}  // namespace

int main(int argc, char** argv) {
    const workbench::Options options = workbench::parse_options(argc, argv, /*accepts_no_torch=*/true);
    const bool quick = options.quick, with_torch = options.with_torch;
    std::mt19937_64 rng(20261127);
    Tally tally;

    // Every head size of the presets at rotary_dim = HD/2 (the -rotary presets) and HD, odd
    // half-widths (10 -> width 1) and positions up to 8191 (angles in the thousands of radians).
    std::vector<RotaryShape> shapes = {
        {2, 37, 3, 64, 32}, {1, 50, 2, 80, 40}, {2, 17, 5, 96, 48}, {1, 33, 4, 128, 64},
        {1, 20, 3, 64, 64}, {1, 9, 2, 64, 10},  {1, 21, 1, 80, 2},  {1, 8192, 1, 128, 64},
    };
    // The benchmark's head shapes, at a quarter of its sequence length: the CPU reference of every
    // launch width at full length took minutes, and positions up to 8191 are covered above.
    if (!quick)
        for (const BenchmarkShape& b : kBenchShapes) shapes.push_back({1, kBenchT / 4, b.NH, b.HD, b.HD / 2});
    std::printf("Validation (tolerance: relative L2 error over the rotated elements)\n");
    validate_all<__nv_bfloat16>(shapes, rng, tally);
    validate_all<__half>(shapes, rng, tally);

    if (!quick) benchmark(with_torch, rng);

    const bool ok = tally.failed == 0;
    std::printf("\n%s: rotary %d checks passed, %d failed\n", ok ? "PASS" : "FAIL", tally.passed, tally.failed);
    return ok ? 0 : 1;
}
