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
// the backward keeps in flight (which sets its rows per block). The backward has numbered
// kernels (BackwardKernel): 1 the row-team kernel, 2 the prefetching kernel (the next row's loads
// in flight while the current row is computed), 3 the same with two rows per step, 4-6 the rows
// ahead (one, two, three) in shared memory, copied there by cp.async. The benchmark
// prints every kernel's backward for every form and width; the public launchers' choice is
// marked '*'; every variant is validated before it is timed.
//
// Validation: a CPU reference in double computes the same math with the same dropout mask
// (DropoutParams::keep on the host); outputs are poisoned first; the backward's incoming
// gradient is poisoned when it must be ignored; dweight/dbias/d_sublayer_bias start from random
// values to check that they accumulate; a second backward on the same inputs must be
// bit-identical; a third stores them (GradWrite::store, a step's first micro-step) into poisoned
// storage and must give the reference without the initial values. d_sublayer_bias (the column
// sums of dx: the bias gradient of the linear layer whose output x is) is checked against the
// column sums of dx as the GPU stored it, which is what it promises to equal (the stored dx is
// checked against the exact reference on its own).
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "dev/cuda/layernorm_problem.cuh"
#include "dev/cuda/workbench.cuh"
#include "kernels/layernorm.cuh"

namespace {

using namespace layernorm_workbench;

constexpr float kBenchmarkDropout = 0.1f;  // the presets' residual dropout
constexpr int kBenchmarkRows = 32768;
const int kBenchmarkC[] = {768, 1280, 1600, 2048, 2560};

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

// The backward kernels by their workbench numbers.
struct NumberedKernel {
    int number;
    BackwardKernel kernel;
    const char* name;
};
const NumberedKernel kBackwardKernels[] = {
    {1, BackwardKernel::row_team, "row team"},
    {2, BackwardKernel::prefetch, "prefetch"},
    {3, BackwardKernel::prefetch_pairs, "prefetch pairs"},
    {4, BackwardKernel::staged2, "staged x2"},
    {5, BackwardKernel::staged3, "staged x3"},
    {6, BackwardKernel::staged4, "staged x4"},
};
std::string label(const NumberedKernel& k) { return "bwd " + std::to_string(k.number) + " " + k.name; }

// Warps the validation's few-block backward grids aim for: at 77 to 1021 rows every team walks
// several rows (the prefetching kernels' pipeline over many steps, odd counts for pairs) and the
// teams of the last block stop at different rows.
constexpr int kValidationWarps = 48;

// A backward kernel at the row-team shape its launcher picks: one wave of blocks for the case's
// types (target_warps 0, what is timed) or target_warps in all.
Variant backward_kernel_variant(const NumberedKernel& k, int C, int target_warps,
                                const RowTeamShape& shape) {
    using namespace layernorm_detail;
    const bool is_default = k.kernel == kDefaultBackwardKernel && target_warps == 0 &&
                            shape.teams_per_block == backward_row_team_shape(k.kernel, C).teams_per_block &&
                            shape.chunks_per_thread == backward_row_team_shape(k.kernel, C).chunks_per_thread;
    const std::string grid = target_warps > 0 ? std::to_string(target_warps) + " warps" : "one wave";
    return {label(k) + " " + describe(shape) + ", " + grid + (is_default ? " *" : ""), false,
            row_team_shape(C, kForwardMaxChunksPerThread), k.kernel, shape, target_warps};
}
Variant backward_kernel_variant(const NumberedKernel& k, int C, int target_warps) {
    return backward_kernel_variant(k, C, target_warps, layernorm_detail::backward_row_team_shape(k.kernel, C));
}

// Every backward kernel at its launcher's shape, one wave and a few blocks, and the prefetching
// kernels also at two chunks per thread, which the sweep times (validation).
std::vector<Variant> backward_kernel_variants(int C) {
    using namespace layernorm_detail;
    const RowTeamShape two_chunks = prefetch_row_team_shape(C, kPrefetchBackwardBlockThreads, 2);
    std::vector<Variant> variants;
    for (const NumberedKernel& k : kBackwardKernels) {
        for (int target_warps : {0, kValidationWarps}) variants.push_back(backward_kernel_variant(k, C, target_warps));
        if (k.kernel != BackwardKernel::row_team && two_chunks.chunks_per_thread == 2 &&
            two_chunks.chunks_per_thread != backward_row_team_shape(k.kernel, C).chunks_per_thread)
            variants.push_back(backward_kernel_variant(k, C, kValidationWarps, two_chunks));
    }
    return variants;
}

// Forward variants (with the default backward), then backward variants (with the default forward):
// kernel 1's shapes at fixed warp counts and one wave; the prefetching kernels (2, 3) at one wave
// with 128, 256 and 512 threads per block (512: the launchers'), one and two chunks per thread.
std::vector<Variant> variants_for(int C) {
    using namespace layernorm_detail;
    const RowTeamShape forward_default = row_team_shape(C, kForwardMaxChunksPerThread);
    const RowTeamShape backward_default = backward_row_team_shape(kDefaultBackwardKernel, C);
    std::vector<Variant> variants;
    for (int chunks = 1; chunks <= kForwardMaxChunksPerThread; ++chunks) {
        const RowTeamShape shape = shape_with(C, chunks);
        if (shape.block_threads() > kMaxBlockThreads) continue;
        const bool is_default = shape.warps_per_team == forward_default.warps_per_team &&
                                shape.chunks_per_thread == forward_default.chunks_per_thread;
        variants.push_back({"fwd " + describe(shape) + (is_default ? " *" : ""), true, shape, kDefaultBackwardKernel,
                            backward_default, 0});
    }
    const NumberedKernel& row_team = kBackwardKernels[0];
    for (int chunks = 1; chunks <= kBackwardMaxChunksPerThread; ++chunks) {
        const RowTeamShape shape = shape_with(C, chunks);
        if (shape.block_threads() > kMaxBlockThreads) continue;
        for (int warps : {1024, 2048, 4096}) variants.push_back(backward_kernel_variant(row_team, C, warps, shape));
        const RowTeamShape launcher_shape = backward_row_team_shape(row_team.kernel, C);
        if (shape.warps_per_team == launcher_shape.warps_per_team &&
            shape.chunks_per_thread == launcher_shape.chunks_per_thread)
            variants.push_back(backward_kernel_variant(row_team, C, 0, shape));
    }
    for (const NumberedKernel& k : kBackwardKernels) {
        if (k.kernel == BackwardKernel::row_team) continue;
        for (int chunks = 1; chunks <= kBackwardMaxChunksPerThread; ++chunks) {
            int previous_teams = 0;
            for (int block_threads : {128, 256, 512}) {
                const RowTeamShape shape = prefetch_row_team_shape(C, block_threads, chunks);
                if (shape.chunks_per_thread != chunks) break;  // the row needs more chunks a thread
                if (shape.teams_per_block == previous_teams) continue;  // wide rows: one team per block
                previous_teams = shape.teams_per_block;
                variants.push_back(backward_kernel_variant(k, C, 0, shape));
            }
        }
    }
    return variants;
}

// Whether the variant's backward fits this GPU's shared memory with these types (the staged kernels
// hold rows of every input there; wide rows with an fp32 residual may not fit).
template <typename T, typename R> bool fits_here(const Variant* variant) {
    return variant == nullptr || variant->varies_forward ||
           layernorm_detail::backward_fits<T, R>(variant->backward_kernel, variant->backward);
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

template <typename T, typename R>
void validate(int N, int C, const CaseConfig& config, const Variant* variant, std::mt19937_64& rng, Tally& tally) {
    std::printf("%s/%s %s N=%d C=%d%s%s\n", precision_name<T>(), precision_name<R>(), config.name, N, C,
                variant ? ", variant " : "", variant ? variant->name.c_str() : "");
    if (!fits_here<T, R>(variant)) {
        std::printf("  skipped: its shared memory exceeds this GPU's\n");
        return;
    }
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

    // Stored, not added: the poison (NaN) the parameter gradients hold must not reach them.
    c.prepare_backward();
    workbench::poison(c.dweight.ptr, C);
    workbench::poison(c.dbias.ptr, C);
    workbench::poison(c.d_sublayer_bias.ptr, C);
    c.backward(nullptr, GradWrite::store);
    CUDA_CHECK(cudaDeviceSynchronize());
    using workbench::without_initial;
    check("backward dweight (=)", workbench::download(c.dweight.ptr, C), without_initial(bwd.dweight, c.dweight_init),
          tolerance<float>());
    check("backward dbias (=)", workbench::download(c.dbias.ptr, C), without_initial(bwd.dbias, c.dbias_init),
          tolerance<float>());
    if (config.sublayer_bias)
        check("backward d_sublayer_bias (=)", workbench::download(c.d_sublayer_bias.ptr, C),
              without_initial(reference_dx_column_sums(c, first.dx), c.d_sublayer_bias_init), tolerance<float>());
}

// Every precision combination of one (N, C): pre-norm with R = T and R = fp32, post-norm; through
// the public launchers (variant nullptr) or a variant.
template <typename T>
void validate_forms(int N, int C, const Variant* variant, std::mt19937_64& rng, Tally& tally) {
    validate<T, T>(N, C, kPreNorm, variant, rng, tally);
    validate<T, float>(N, C, kPreNorm, variant, rng, tally);
    validate<T, T>(N, C, kPostNorm, variant, rng, tally);
}
// The public launchers and every backward kernel (one wave and a few blocks), bf16 and fp16.
void validate_all_forms(int N, int C, std::mt19937_64& rng, Tally& tally) {
    validate_forms<__nv_bfloat16>(N, C, nullptr, rng, tally);
    validate_forms<__half>(N, C, nullptr, rng, tally);
    for (const Variant& variant : backward_kernel_variants(C)) {
        validate_forms<__nv_bfloat16>(N, C, &variant, rng, tally);
        validate_forms<__half>(N, C, &variant, rng, tally);
    }
}

// The first layer's forms (no residual_in, no incoming gradient, p = 0, no d_sublayer_bias; one
// row; odd C) through the public launchers (k nullptr) or kernel k at a few blocks.
template <typename T, typename R>
void validate_with_kernel(int N, int C, const CaseConfig& config, const NumberedKernel* k, std::mt19937_64& rng,
                          Tally& tally) {
    if (k == nullptr) return validate<T, R>(N, C, config, nullptr, rng, tally);
    const Variant variant = backward_kernel_variant(*k, C, kValidationWarps);
    validate<T, R>(N, C, config, &variant, rng, tally);
}
void validate_first_layer_forms(const NumberedKernel* k, std::mt19937_64& rng, Tally& tally) {
    validate_with_kernel<__nv_bfloat16, __nv_bfloat16>(300, 768, kPreNormFirst, k, rng, tally);
    validate_with_kernel<__half, float>(300, 2560, kPreNormFirst, k, rng, tally);
    validate_with_kernel<__nv_bfloat16, __nv_bfloat16>(1, 1280, kPostNormFirst, k, rng, tally);
    validate_with_kernel<__half, __half>(300, 1600, kPostNormFirst, k, rng, tally);
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
    const std::string form = std::string(config.post_norm ? "post-norm " : "pre-norm ") + precision_name<T>() +
                             (config.post_norm ? "" : std::string(", residual ") + precision_name<R>());
    print_row("ours  " + form, ours.forward_ms, forward_bytes, ours.backward_ms, backward_bytes, copy_gbs);
    for (const NumberedKernel& k : kBackwardKernels) {  // the other backward kernels, at their launchers' shape
        if (k.kernel == layernorm_detail::kDefaultBackwardKernel) continue;
        const Variant variant = backward_kernel_variant(k, C, 0);
        if (!fits_here<T, R>(&variant)) continue;
        const Timing t = time_case<T, R>(config, C, &variant, rng, nullptr, nullptr);
        print_row("  " + label(k), -1.0, forward_bytes, t.backward_ms, backward_bytes, copy_gbs);
    }
    if (config.post_norm || !std::is_same_v<T, __nv_bfloat16> || torch_timings.empty()) return;
    for (const char* impl : {"eager", "compile"}) {
        const std::string key = std::string("_") + precision_name<R>() + "_C" + std::to_string(C);
        const double fwd = find_ms(torch_timings, std::string(impl) + "_fwd" + key);
        const double fwdbwd = find_ms(torch_timings, std::string(impl) + "_fwdbwd" + key);
        const double bwd = fwd >= 0 && fwdbwd >= 0 ? fwdbwd - fwd : -1.0;
        print_row(std::string("torch ") + impl + " " + form, fwd, forward_bytes, bwd, backward_bytes, copy_gbs);
    }
}

template <typename R>
void sweep_row(const CaseConfig& config, int C, const Variant& v, std::mt19937_64& rng, double copy_gbs) {
    if (!fits_here<__nv_bfloat16, R>(&v)) return;
    double forward_bytes = 0, backward_bytes = 0;
    const Timing t = time_case<__nv_bfloat16, R>(config, C, &v, rng, &forward_bytes, &backward_bytes);
    print_row(v.name, v.varies_forward ? t.forward_ms : -1.0, forward_bytes, v.varies_forward ? -1.0 : t.backward_ms,
              backward_bytes, copy_gbs);
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

    std::printf("\nLaunch-shape sweep (bf16, pre-norm; '*' = the public launchers' choice; bwd N = backward\n"
                "kernel N; w = warps per row, c = 8-element chunks per thread, rows = rows per block):\n");
    for (int C : kBenchmarkC) {
        print_header("C=" + std::to_string(C) + ", residual bf16");
        for (const Variant& v : variants_for(C)) sweep_row<__nv_bfloat16>(pre, C, v, rng, copy_gbs);
        print_header("C=" + std::to_string(C) + ", residual fp32");
        for (const Variant& v : variants_for(C))
            if (!v.varies_forward) sweep_row<float>(pre, C, v, rng, copy_gbs);
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
    // the limits C = 8 and 8192; every backward kernel.
    for (int C : {8, 24, 768, 1000, 1280, 1600, 2048, 2560, 8192}) validate_all_forms(77, C, rng, tally);
    validate_first_layer_forms(nullptr, rng, tally);
    for (const NumberedKernel& k : kBackwardKernels) validate_first_layer_forms(&k, rng, tally);
    if (!quick) {
        // At every benchmarked width what the benchmark times, on more rows (several blocks, a
        // partial one): the public launchers in every form on 1021 rows, each swept variant in
        // the forms its sweep times on 509. Every backward kernel in every form was validated
        // above at these widths on 77 rows; repeating that on 1021 rows cost minutes of a GPU
        // session before any timing. The CPU reference on the benchmark's 32768 rows would take
        // minutes more.
        for (int C : kBenchmarkC) {
            validate_forms<__nv_bfloat16>(1021, C, nullptr, rng, tally);
            validate_forms<__half>(1021, C, nullptr, rng, tally);
            for (const Variant& v : variants_for(C)) {
                validate<__nv_bfloat16, __nv_bfloat16>(509, C, kPreNorm, &v, rng, tally);
                if (!v.varies_forward) validate<__nv_bfloat16, float>(509, C, kPreNorm, &v, rng, tally);
            }
        }
        benchmark(with_torch, rng);
    }

    const bool ok = tally.failed == 0;
    std::printf("\n%s: layernorm %d checks passed, %d failed\n", ok ? "PASS" : "FAIL", tally.passed, tally.failed);
    return ok ? 0 : 1;
}
