// Causal attention (FlashAttention, kernels/attention.cuh): kernel variants, validation against the
// CPU reference (dev/cuda/attention_problem.cuh), benchmark against PyTorch's FlashAttention-2 and
// cuDNN backends.
//
//   build/dev/cuda/attention               validate every variant, cross-check the benchmark shapes,
//                                          benchmark (run from the repository root for PyTorch figures)
//   build/dev/cuda/attention --quick       validation only, small shapes (what `make test-gpu` runs)
//   build/dev/cuda/attention --variant N   only variant N (or N,M: a list);  --no-torch  skip the
//                                          PyTorch baselines;  --no-sweep  skip the tile sweep
//   build/dev/cuda/attention --list-variants   the numbers of the variants this GPU and build run,
//                                          one a line (make sanitize runs each alone under racecheck)
//   build/dev/cuda/attention --max-seq-len N   validate only the cases of at most N tokens (make
//                                          sanitize: variant 1 under racecheck, see there)
//
// Variants, in the order they were written:
//   1  fp32 CUDA cores: 32 x 32 tiles, online softmax (AttentionKernel::CudaCores, the fallback)
//   2  FlashAttention-2 style: mma.sync m16n8k16 with ldmatrix operands and cp.async double
//      buffering; deterministic two-kernel backward (AttentionKernel::TensorCores, production)
//   3  FlashAttention-3 style forward and backward on sm_90a: TMA tile copies on mbarriers, a
//      producer warp, two consumer warpgroups on wgmma, setmaxnreg (AttentionKernel::Hopper);
//      tiles of head dim 64 and 128 (80 and 96 on the 128-wide tiles). Only on a compute capability
//      9.0 GPU with a GPU_ARCH=90 build; skipped elsewhere.
// The benchmark also sweeps the tile shapes of variant 2's and variant 3's kernels.
//
// Exit status: 0 when every check passed, 1 otherwise.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>

#include "dev/cuda/attention_problem.cuh"
#include "dev/cuda/workbench.cuh"
#include "kernels/attention.cuh"

namespace {

using namespace attention_workbench;

struct Variant {
    int number;
    AttentionKernel kernel;
    const char* description;
};
const Variant kVariants[] = {
    {1, AttentionKernel::CudaCores, "fp32 CUDA cores, 32x32 tiles"},
    {2, AttentionKernel::TensorCores, "mma.sync + ldmatrix + cp.async"},
    {3, AttentionKernel::Hopper, "wgmma + TMA forward and backward, warp-specialized"},
};
const char* short_name(AttentionKernel kernel) {
    switch (kernel) {
        case AttentionKernel::TensorCores: return "mma.sync";
        case AttentionKernel::Hopper: return "wgmma+TMA";
        case AttentionKernel::CudaCores: break;
    }
    return "fp32 CUDA cores";
}

using workbench::Tally;

// ---------------------------------------------------------------------------------------------
// Validation against the CPU reference on fresh random inputs.

struct ValidationCase {
    Shape shape;
    float scale_multiplier;  // softmax_scale = multiplier / sqrt(HD): < 1 as in deep layers, > 1 peaked
    float dropout;
};

template <typename T>
void validate_case(const ValidationCase& c, const std::vector<Variant>& variants, std::mt19937_64& rng, Tally& tally) {
    const Shape& s = c.shape;
    Buffers<T> buf(s);
    const std::vector<float> qkv = workbench::upload_rounded(buf.qkv, workbench::random_vector(buf.qkv_count, rng));
    const std::vector<float> dout = workbench::upload_rounded(buf.dout, workbench::random_vector(buf.out_count, rng));
    const float scale = c.scale_multiplier / std::sqrt(static_cast<float>(s.HD));
    const DropoutParams drop{c.dropout, rng(), rng() >> 16};
    const Reference ref = attention_reference(qkv, dout, s, scale, drop);
    for (const Variant& v : variants) {
        buf.poison_outputs();
        buf.forward(v.kernel, scale, drop);
        buf.backward(v.kernel, scale, drop);
        const Outputs got = download_outputs(buf);
        // Determinism: a second backward must reproduce every bit.
        workbench::poison(buf.dqkv, buf.qkv_count);
        buf.backward(v.kernel, scale, drop);
        const Outputs again = download_outputs(buf);
        const bool deterministic = std::memcmp(got.dqkv.data(), again.dqkv.data(), got.dqkv.size() * sizeof(float)) == 0;
        char label[96];
        std::snprintf(label, sizeof label, "v%d %s B=%d NH=%d T=%d HD=%d s=%.2f/sqrt(HD) p=%.1f", v.number,
                      precision_name<T>(), s.B, s.NH, s.T, s.HD, c.scale_multiplier, c.dropout);
        const bool ok = compare_outputs<T>(label, got, ref.out, ref.lse, ref.dqkv, s,
                                           deterministic ? "  bitwise-repeatable" : "  NOT REPEATABLE(!)");
        tally.add(ok && deterministic);
    }
}

// Dropout mask test: every kernel's mask is read back exactly and compared with attention_keep
// element for element (which also checks the causal mask). Q = 0 makes every score 0, so P[q][k]
// = 1/(q+1) for keys 0..q; c is the kept values' scale; T < HD.
//   Forward, V one-hot (v_k = e_k): O[q][k] = keep(q,k) c / (q+1).
//   Backward, K one-hot (k_k = e_k), v_k = e_{HD-1} for every key, dO_q = e_q + e_{HD-1}: then
//   dP[q][k] = keep(q,k) c, so dV[k][q] = Pd[q][k] = keep(q,k) c / (q+1) (the dK/dV kernel's
//   mask) and dQ[q][k] = s (keep(q,k) c - D_q) / (q+1), D_q = c kept_q / (q+1) with kept_q the
//   kept keys of row q (the dQ kernel's mask: kept and dropped values lie s c / (q+1) apart).
// O is rounded once (within 2u relative), dV twice (Pd, then dV: 3u); dQ carries the rounding of
// D and dS, so it is classified by the nearer of its two expected values and checked within
// 4u s c / (q+1). The keep rate over n elements must lie within 5 standard deviations
// sqrt(r(1-r)/n) of 1-r, r = threshold / 65536 the effective drop rate: a correct generator fails
// this with probability below 1e-6. offset_on_device: the kernels get the offset as a pass replayed
// from a CUDA graph does, part of it in a device word (DropoutParams::offset_base), and must
// produce the mask of the whole offset.
template <typename T>
void validate_dropout_mask(const Variant& v, const Shape& s, float p, bool offset_on_device, std::mt19937_64& rng,
                           Tally& tally) {
    REQUIRE(s.T < s.HD, "validate_dropout_mask: the read-back needs T < HD");
    Buffers<T> buf(s);
    const DropoutParams drop{p, rng(), rng() >> 16};  // the expected mask's
    DropoutParams launched = drop;
    workbench::DeviceArray<uint64_t> pass_share(1);
    if (offset_on_device) {  // two large parts, so that a kernel missing either gets another mask
        const uint64_t share = drop.offset / 2;
        CUDA_CHECK(cudaMemcpy(pass_share.ptr, &share, sizeof share, cudaMemcpyHostToDevice));
        launched.offset = drop.offset - share;
        launched.offset_base = pass_share.ptr;
    }
    const AttentionDropoutRate rate = attention_dropout_rate(p);
    const double drop_rate = rate.threshold / 65536.0, c = rate.scale;
    const float softmax_scale = 1.0f / std::sqrt(static_cast<float>(s.HD));
    const double u = std::is_same<T, __half>::value ? 1.0 / 2048 : 1.0 / 256;
    const size_t row = static_cast<size_t>(s.NH) * s.HD;  // one of q, k, v, or a row of out / dout
    auto head_row = [&](const std::vector<float>& x, size_t row_stride, int b, int t, int part, int h) {
        return &x[(static_cast<size_t>(b) * s.T + t) * row_stride + part * row + static_cast<size_t>(h) * s.HD];
    };
    // qkv with Q = 0 and the given K and V (functions of (key, dim)); forward, then optionally backward.
    auto run = [&](auto k_value, auto v_value, bool backward) {
        std::vector<float> qkv(buf.qkv_count, 0.0f);
        for (size_t bt = 0; bt < static_cast<size_t>(s.B) * s.T; ++bt)
            for (int h = 0; h < s.NH; ++h)
                for (int d = 0; d < s.HD; ++d) {
                    const int t = static_cast<int>(bt % s.T);
                    qkv[bt * 3 * row + row + static_cast<size_t>(h) * s.HD + d] = k_value(t, d);
                    qkv[bt * 3 * row + 2 * row + static_cast<size_t>(h) * s.HD + d] = v_value(t, d);
                }
        workbench::upload_rounded(buf.qkv, qkv);
        buf.poison_outputs();
        buf.forward(v.kernel, softmax_scale, launched);
        if (backward) buf.backward(v.kernel, softmax_scale, launched);
        return download_outputs(buf);
    };
    std::vector<float> dout(buf.out_count, 0.0f);
    for (size_t bt = 0; bt < static_cast<size_t>(s.B) * s.T; ++bt)
        for (int h = 0; h < s.NH; ++h) {
            dout[bt * row + static_cast<size_t>(h) * s.HD + bt % s.T] = 1.0f;
            dout[bt * row + static_cast<size_t>(h) * s.HD + s.HD - 1] = 1.0f;
        }
    workbench::upload_rounded(buf.dout, dout);
    const Outputs fwd = run([](int, int) { return 0.0f; }, [](int t, int d) { return d == t ? 1.0f : 0.0f; }, false);
    const Outputs bwd = run([](int t, int d) { return d == t ? 1.0f : 0.0f; },
                            [&](int, int d) { return d == s.HD - 1 ? 1.0f : 0.0f; }, true);

    long long total = 0, kept = 0, value_mismatches = 0;
    long long mask_mismatches[3] = {0, 0, 0};  // forward, dK/dV, dQ
    for (int b = 0; b < s.B; ++b)
        for (int h = 0; h < s.NH; ++h)
            for (int q = 0; q < s.T; ++q) {
                int kept_in_row = 0;
                for (int k = 0; k <= q; ++k) kept_in_row += attention_keep(drop, b, h, s.NH, s.T, q, k);
                const double d_row = c * kept_in_row / (q + 1.0);
                for (int k = 0; k < s.T; ++k) {
                    const float o = head_row(fwd.out, row, b, q, 0, h)[k];
                    const float dv = head_row(bwd.dqkv, 3 * row, b, k, 2, h)[q];
                    const float dq = head_row(bwd.dqkv, 3 * row, b, q, 0, h)[k];
                    if (!std::isfinite(o) || !std::isfinite(dv) || !std::isfinite(dq)) {  // unwritten (poisoned) or NaN
                        ++value_mismatches;
                        continue;
                    }
                    if (k > q) {  // causal: nothing from later keys
                        mask_mismatches[0] += o != 0.0f;
                        mask_mismatches[1] += dv != 0.0f;
                        mask_mismatches[2] += dq != 0.0f;
                        continue;
                    }
                    const bool keep = attention_keep(drop, b, h, s.NH, s.T, q, k);
                    const double expected = keep ? c / (q + 1.0) : 0.0;
                    const double dq_kept = softmax_scale * (c - d_row) / (q + 1.0);
                    const double dq_dropped = -softmax_scale * d_row / (q + 1.0);
                    const double dq_expected = keep ? dq_kept : dq_dropped;
                    ++total;
                    kept += keep;
                    mask_mismatches[0] += (o != 0.0f) != keep;
                    mask_mismatches[1] += (dv != 0.0f) != keep;
                    mask_mismatches[2] += (std::fabs(dq - dq_kept) < std::fabs(dq - dq_dropped)) != keep;
                    value_mismatches += std::fabs(o - expected) > 2 * u * expected;
                    value_mismatches += std::fabs(dv - expected) > 3 * u * expected;
                    value_mismatches += std::fabs(dq - dq_expected) > 4 * u * softmax_scale * c / (q + 1.0);
                }
            }
    const double keep_rate = static_cast<double>(kept) / total;
    const double sigma = std::sqrt(drop_rate * (1.0 - drop_rate) / total);
    const bool rate_ok = std::fabs(keep_rate - (1.0 - drop_rate)) <= 5 * sigma;
    const bool ok = mask_mismatches[0] == 0 && mask_mismatches[1] == 0 && mask_mismatches[2] == 0 &&
                    value_mismatches == 0 && rate_ok && total > 0;
    std::printf("  v%d %s dropout mask B=%d NH=%d T=%d p=%.2f%s: %lld elements, mask mismatches fwd %lld dK/dV "
                "%lld dQ %lld, value mismatches %lld, keep rate %.5f (expected %.5f +- %.5f)  %s\n",
                v.number, precision_name<T>(), s.B, s.NH, s.T, p, offset_on_device ? " (offset on device)" : "",
                total, mask_mismatches[0], mask_mismatches[1],
                mask_mismatches[2], value_mismatches, keep_rate, 1.0 - drop_rate, 5 * sigma, ok ? "ok" : "FAIL");
    tally.add(ok);
}

template <typename T>
void validate_all(const std::vector<Variant>& variants, bool quick, int max_seq_len, std::mt19937_64& rng,
                  Tally& tally) {
    std::vector<ValidationCase> cases = {
        {{2, 3, 1, 64}, 1.0f, 0.0f},    {{1, 2, 7, 80}, 1.0f, 0.0f},      {{2, 2, 100, 96}, 1.0f, 0.0f},
        {{2, 2, 64, 64}, 1.0f, 0.0f},   {{1, 2, 1000, 128}, 1.0f, 0.0f},  {{1, 2, 200, 96}, 3.0f, 0.0f},
        {{1, 3, 257, 64}, 0.25f, 0.1f}, {{1, 2, 130, 128}, 1.0f, 0.1f},   {{1, 2, 333, 80}, 1.0f, 0.2f},
    };
    if (!quick) {
        const std::vector<ValidationCase> larger = {
            {{2, 4, 1024, 64}, 1.0f, 0.0f}, {{1, 2, 2048, 128}, 1.0f, 0.1f}, {{1, 2, 1000, 80}, 0.5f, 0.1f},
            {{2, 2, 777, 96}, 1.0f, 0.0f},
        };
        cases.insert(cases.end(), larger.begin(), larger.end());
    }
    const size_t all_cases = cases.size();
    cases.erase(std::remove_if(cases.begin(), cases.end(),
                               [&](const ValidationCase& c) { return c.shape.T > max_seq_len; }),
                cases.end());
    std::printf("== Validation, %s (tolerances: O dQ dK dV %.1e, lse %.0e; relative Frobenius error)\n",
                precision_name<T>(), output_tolerance<T>(), kLseTolerance);
    if (cases.size() < all_cases)
        std::printf("  %zu of %zu cases skipped: longer than --max-seq-len %d\n", all_cases - cases.size(), all_cases,
                    max_seq_len);
    for (const ValidationCase& c : cases) validate_case<T>(c, variants, rng, tally);
    for (const Variant& v : variants) {
        validate_dropout_mask<T>(v, {2, 4, 100, 128}, 0.1f, false, rng, tally);
        validate_dropout_mask<T>(v, {2, 4, 127, 128}, 0.5f, false, rng, tally);
        validate_dropout_mask<T>(v, {1, 3, 64, 128}, 0.25f, false, rng, tally);
        validate_dropout_mask<T>(v, {2, 2, 100, 128}, 0.1f, true, rng, tally);
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark shapes (B, H, T, D) of the issue; bf16.

// The issue's four shapes, then the head dims that run on padded Hopper tiles, at the shapes of
// the presets that use them (gpt3l: 16 heads of 96; gpt3-2.7B: 32 heads of 80).
const Shape kBenchmarkShapes[] = {{32, 12, 1024, 64}, {16, 16, 2048, 64}, {8, 16, 2048, 128}, {4, 32, 4096, 128},
                                  {8, 16, 2048, 96},  {4, 32, 2048, 80}};

double forward_flops(const Shape& s) { return 2.0 * s.B * s.NH * static_cast<double>(s.T) * s.T * s.HD; }
double tflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }
std::string shape_key(const Shape& s) {
    return std::to_string(s.B) + "x" + std::to_string(s.NH) + "x" + std::to_string(s.T) + "x" + std::to_string(s.HD);
}

// Benchmark-sized inputs, generated on the GPU: uniform in [-sqrt(3), sqrt(3)) has unit variance,
// like the normal inputs of the validation, so the scores have the same spread.
template <typename T> void fill_benchmark_inputs(Buffers<T>& buf, std::mt19937_64& rng) {
    workbench::fill_uniform(buf.qkv, buf.qkv_count, rng(), std::sqrt(3.0f));
    workbench::fill_uniform(buf.dout, buf.out_count, rng(), std::sqrt(3.0f));
}

// Too slow to check against the CPU: on the benchmark shapes every variant is checked against
// the first one run (variant 1, or variant 2 when 1 is not selected), which the validation above
// checked against the CPU. Each carries about u of rounding error, so their difference is within 2u.
// The head-dim-128 shapes run with dropout, so the masks are compared too.
void cross_check_benchmark_shapes(const std::vector<Variant>& variants, std::mt19937_64& rng, Tally& tally) {
    using T = __nv_bfloat16;
    const Variant& trusted_variant = variants.front();
    std::printf("== Cross-check on the benchmark shapes: the other variants against variant %d (bf16, tolerance %.1e)\n",
                trusted_variant.number, output_tolerance<T>());
    for (const Shape& s : kBenchmarkShapes) {
        Buffers<T> buf(s);
        fill_benchmark_inputs(buf, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.HD));
        const DropoutParams drop{s.HD == 64 ? 0.0f : 0.1f, rng(), rng() >> 16};
        Outputs trusted;
        for (const Variant& v : variants) {
            buf.poison_outputs();
            buf.forward(v.kernel, scale, drop);
            buf.backward(v.kernel, scale, drop);
            if (v.number == trusted_variant.number) {
                trusted = download_outputs(buf);
                continue;
            }
            const Outputs got = download_outputs(buf);
            const auto as_double = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
            char label[96];
            std::snprintf(label, sizeof label, "v%d vs v%d (%d,%d,%d,%d) p=%.1f", v.number, trusted_variant.number, s.B,
                          s.NH, s.T, s.HD, drop.p);
            tally.add(compare_outputs<T>(label, got, as_double(trusted.out), as_double(trusted.lse),
                                         as_double(trusted.dqkv), s, ""));
        }
    }
}

struct Timing {
    double fwd, bwd, both;
};

template <typename Forward, typename Backward>
Timing time_pass(Forward&& forward, Backward&& backward, int repeats) {
    Timing t;
    t.fwd = workbench::median_ms(forward, repeats, 2);
    forward();
    t.bwd = workbench::median_ms(backward, repeats, 2);
    t.both = workbench::median_ms([&] { forward(), backward(); }, repeats, 2);
    return t;
}

void print_timing_row(const char* shape_label, const char* name, const Timing& t, const Shape& s) {
    const double f = forward_flops(s);
    std::printf("%-20s %-34s %9.3f %7.1f %9.3f %7.1f %9.3f %7.1f\n", shape_label, name, t.fwd, tflops(f, t.fwd), t.bwd,
                tflops(2.5 * f, t.bwd), t.both, tflops(3.5 * f, t.both));
}

// Tile-shape sweep of variant 2's kernels and variant 3's forward and dK/dV, timed one kernel at a time. Each
// configuration's result is compared with variant 2's production configuration's, so a broken
// shape cannot hide here.
enum class SweptKernel { Forward, DkDv, Dq };

template <int HD> struct Sweep {
    using T = __nv_bfloat16;
    template <int W, int BK> static void forward(Buffers<T>& b, float scale, DropoutParams d) {
        attention_detail::tensor_cores::forward<T, HD, W, BK>(b.out, b.lse, b.qkv, b.shape.B, b.shape.T, b.shape.NH,
                                                               scale, d, 0);
    }
    template <int W, int BK> static void dq(Buffers<T>& b, float scale, DropoutParams d) {
        attention_detail::tensor_cores::backward_dq<T, HD, W, BK>(b.dqkv, b.scratch, b.dout, b.qkv, b.lse, b.shape.B,
                                                                   b.shape.T, b.shape.NH, scale, d, 0);
    }
    template <int W, int BQ> static void dkdv(Buffers<T>& b, float scale, DropoutParams d) {
        attention_detail::tensor_cores::backward_dkdv<T, HD, W, BQ>(b.dqkv, b.scratch, b.dout, b.qkv, b.lse, b.shape.B,
                                                                     b.shape.T, b.shape.NH, scale, d, 0);
    }
    template <int STAGES, bool PIPELINED, int CONSUMERS = 2>
    static void hopper_forward(Buffers<T>& b, float scale, DropoutParams d) {
        using Shape = attention_detail::hopper::ForwardShape<HD, STAGES, PIPELINED, CONSUMERS>;
        attention_detail::hopper::forward<T, HD, Shape>(b.out, b.lse, b.qkv, b.shape.B, b.shape.T, b.shape.NH, HD,
                                                        scale, d, 0);
    }
    template <int QUERIES, int STAGES, bool PIPELINED>
    static void hopper_dkdv(Buffers<T>& b, float scale, DropoutParams d) {
        using Shape = attention_detail::hopper::DkdvShape<HD, QUERIES, STAGES, PIPELINED>;
        attention_detail::hopper::backward_dkdv<T, HD, Shape>(b.dqkv, b.scratch, b.dout, b.qkv, b.lse, b.shape.B,
                                                              b.shape.T, b.shape.NH, HD, scale, d, 0);
    }
    template <int KEYS, int STAGES> static void hopper_dq(Buffers<T>& b, float scale, DropoutParams d) {
        using Shape = attention_detail::hopper::DqShape<HD, KEYS, STAGES>;
        attention_detail::hopper::backward_dq<T, HD, Shape>(b.dqkv, b.scratch, b.dout, b.qkv, b.lse, b.shape.B,
                                                            b.shape.T, b.shape.NH, HD, scale, d, 0);
    }
    struct Entry {
        SweptKernel kernel;
        const char* config;
        void (*run)(Buffers<T>&, float, DropoutParams);
        bool hopper = false;  // variant 3's kernels: only where attention_hopper_available()
    };
    // Variant 3's shapes; the first of each kernel is production (attention_detail::hopper::ForwardConfig,
    // DkdvConfig, DqConfig).
    static std::vector<Entry> hopper_entries() {
        using K = SweptKernel;
        std::vector<Entry> list = {{K::Forward, "wgmma 2 stages, pipelined", hopper_forward<2, true>, true},
                                   {K::Forward, "wgmma 3 stages, pipelined", hopper_forward<3, true>, true},
                                   {K::Forward, "wgmma 2 stages, in turn", hopper_forward<2, false>, true}};
        if constexpr (HD == 64) {  // three consumer warpgroups (192 queries) fit the registers at HD 64 only
            list.push_back({K::Forward, "wgmma 3 WG, 2 stages, pipelined", hopper_forward<2, true, 3>, true});
            list.push_back({K::Forward, "wgmma 3 WG, 3 stages, pipelined", hopper_forward<3, true, 3>, true});
        }
        list.push_back({K::DkDv, "wgmma 64 queries, 2 stages, in turn", hopper_dkdv<64, 2, false>, true});
        list.push_back({K::DkDv, "wgmma 64 queries, 3 stages, in turn", hopper_dkdv<64, 3, false>, true});
        if constexpr (HD == 64) {  // at HD 128 these exceed the consumers' 240 registers
            list.push_back({K::DkDv, "wgmma 64 queries, 2 stages, pipelined", hopper_dkdv<64, 2, true>, true});
            list.push_back({K::Dq, "wgmma 128 keys, 2 stages", hopper_dq<128, 2>, true});
        }
        list.push_back({K::Dq, "wgmma 64 keys, 2 stages", hopper_dq<64, 2>, true});
        list.push_back({K::Dq, "wgmma 64 keys, 3 stages", hopper_dq<64, 3>, true});
        return list;
    }
    // The first entry of each kernel is the production shape (attention_detail::tensor_cores::Config).
    static std::vector<Entry> entries() {
        using K = SweptKernel;
        std::vector<Entry> list;
        if constexpr (HD == 64)
            list = {{K::Forward, "4 warps x 64 keys", forward<4, 64>},   {K::Forward, "8 warps x 64 keys", forward<8, 64>},
                    {K::Forward, "4 warps x 128 keys", forward<4, 128>}, {K::DkDv, "4 warps x 64 queries", dkdv<4, 64>},
                    {K::DkDv, "8 warps x 32 queries", dkdv<8, 32>},      {K::DkDv, "4 warps x 32 queries", dkdv<4, 32>},
                    {K::Dq, "4 warps x 64 keys", dq<4, 64>},             {K::Dq, "8 warps x 32 keys", dq<8, 32>},
                    {K::Dq, "4 warps x 32 keys", dq<4, 32>}};
        else
            list = {{K::Forward, "4 warps x 64 keys", forward<4, 64>},   {K::Forward, "8 warps x 64 keys", forward<8, 64>},
                    {K::Forward, "4 warps x 32 keys", forward<4, 32>},   {K::DkDv, "4 warps x 32 queries", dkdv<4, 32>},
                    {K::DkDv, "8 warps x 32 queries", dkdv<8, 32>},      {K::DkDv, "8 warps x 16 queries", dkdv<8, 16>},
                    {K::Dq, "4 warps x 32 keys", dq<4, 32>},             {K::Dq, "8 warps x 32 keys", dq<8, 32>},
                    {K::Dq, "8 warps x 16 keys", dq<8, 16>}};
        const std::vector<Entry> hopper = hopper_entries();
        list.insert(list.end(), hopper.begin(), hopper.end());
        return list;
    }
};

// The part of the outputs a swept kernel writes: out (forward), the k and v slices of dqkv
// (dK/dV) or its q slice (dQ).
std::vector<float> swept_part(SweptKernel kernel, const Outputs& o, const Shape& s) {
    if (kernel == SweptKernel::Forward) return o.out;
    if (kernel == SweptKernel::Dq) return qkv_slice(o.dqkv, 0, s);
    std::vector<float> kv = qkv_slice(o.dqkv, 1, s);
    const std::vector<float> v = qkv_slice(o.dqkv, 2, s);
    kv.insert(kv.end(), v.begin(), v.end());
    return kv;
}

template <int HD> void sweep_tiles(Buffers<__nv_bfloat16>& buf, float scale, Tally& tally) {
    using T = __nv_bfloat16;
    const Shape& s = buf.shape;
    const DropoutParams no_drop{};
    const double f = forward_flops(s);
    buf.forward(AttentionKernel::TensorCores, scale, no_drop);
    buf.backward(AttentionKernel::TensorCores, scale, no_drop);  // also leaves D in scratch for the backward kernels
    const Outputs production = download_outputs(buf);
    for (const auto& e : Sweep<HD>::entries()) {
        if (e.hopper && !attention_hopper_available()) continue;
        const bool is_forward = e.kernel == SweptKernel::Forward;
        if (is_forward) {
            workbench::poison(buf.out, buf.out_count);
        } else {
            workbench::poison(buf.dqkv, buf.qkv_count);
        }
        e.run(buf, scale, no_drop);
        const std::vector<float> expected = swept_part(e.kernel, production, s);
        const workbench::CheckResult diff = workbench::compare(
            swept_part(e.kernel, download_outputs(buf), s), std::vector<double>(expected.begin(), expected.end()));
        const bool ok = diff.all_finite && diff.relative_error <= output_tolerance<T>();
        tally.add(ok);
        const float ms = workbench::median_ms([&] { e.run(buf, scale, no_drop); }, 10, 2);
        // Matmuls of the forward's size per kernel: forward 2 (Q K^T, P V), dK/dV 4, dQ 3.
        const double matmuls = is_forward ? 2 : e.kernel == SweptKernel::Dq ? 3 : 4;
        std::printf("  (%d,%d,%d,%d) %-8s %-32s %8.3f ms %7.1f TFLOP/s  diff vs production %.1e  %s\n", s.B, s.NH,
                    s.T, s.HD, is_forward ? "forward" : e.kernel == SweptKernel::Dq ? "dQ" : "dK,dV", e.config, ms,
                    tflops(matmuls / 2 * f, ms), diff.relative_error, ok ? "ok" : "FAIL");
    }
}

void benchmark(const std::vector<Variant>& variants, bool with_torch, bool with_sweep, std::mt19937_64& rng,
               Tally& tally) {
    using T = __nv_bfloat16;
    const workbench::DeviceInfo device = workbench::device_info();
    std::map<std::string, double> torch_ms;
    if (with_torch) {
        if (std::ifstream("dev/cuda/attention.py").good()) {
            std::string args = "dev/cuda/attention.py";
            for (const Shape& s : kBenchmarkShapes) args += " " + shape_key(s);
            for (const auto& t : workbench::run_torch_baseline(args)) torch_ms[t.name] = t.ms;
        } else {
            std::printf("  (PyTorch baselines skipped: dev/cuda/attention.py not found; run from the repository root)\n");
        }
    }
    std::printf("== Benchmark on %s (%d SMs): bf16, causal; TFLOP/s counts fwd 2*B*H*T^2*D, bwd 2.5x, fwd+bwd 3.5x\n",
                device.name.c_str(), device.sm_count);
    std::printf("%-20s %-34s %9s %7s %9s %7s %9s %7s\n", "(B,H,T,D)", "implementation", "fwd ms", "TFLOP/s", "bwd ms",
                "TFLOP/s", "f+b ms", "TFLOP/s");
    for (const Shape& s : kBenchmarkShapes) {
        char shape_label[32];
        std::snprintf(shape_label, sizeof shape_label, "(%d,%d,%d,%d)", s.B, s.NH, s.T, s.HD);
        Buffers<T> buf(s);
        fill_benchmark_inputs(buf, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.HD));
        for (const Variant& v : variants) {
            for (float p : {0.0f, 0.1f}) {
                if (p > 0.0f && v.kernel == AttentionKernel::CudaCores) continue;
                const DropoutParams drop{p, 1234, 0};
                const int repeats = v.kernel == AttentionKernel::CudaCores ? 3 : 20;
                const Timing t = time_pass([&] { buf.forward(v.kernel, scale, drop); },
                                           [&] { buf.backward(v.kernel, scale, drop); }, repeats);
                char name[64];
                std::snprintf(name, sizeof name, "%d %s%s", v.number, short_name(v.kernel), p > 0 ? ", dropout 0.1" : "");
                print_timing_row(shape_label, name, t, s);
            }
        }
        for (const char* backend : {"flash", "cudnn"}) {
            const std::string key = shape_key(s);
            const auto fwd = torch_ms.find(std::string(backend) + "_fwd_" + key);
            const auto bwd = torch_ms.find(std::string(backend) + "_bwd_" + key);
            const auto both = torch_ms.find(std::string(backend) + "_fwdbwd_" + key);
            if (fwd == torch_ms.end() || bwd == torch_ms.end() || both == torch_ms.end()) continue;
            print_timing_row(shape_label, std::strcmp(backend, "flash") == 0 ? "PyTorch SDPA flash (FA2)" : "PyTorch SDPA cuDNN",
                             {fwd->second, bwd->second, both->second}, s);
        }
    }
    if (!with_sweep) return;
    std::printf("== Tile-shape sweep of variant 2 and variant 3's forward and dK/dV (bf16, no dropout; kernels timed alone)\n");
    for (const Shape& s : kBenchmarkShapes) {
        Buffers<T> buf(s);
        fill_benchmark_inputs(buf, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.HD));
        if (s.HD == 64) sweep_tiles<64>(buf, scale, tally);
        if (s.HD == 128) sweep_tiles<128>(buf, scale, tally);
    }
}

// Whether this GPU and build run the variant: the Hopper kernels need compute capability 9.0 and a
// GPU_ARCH=90 build.
bool runs_here(const Variant& v) { return v.kernel != AttentionKernel::Hopper || attention_hopper_available(); }

void print_usage() {
    std::printf("usage: attention [--quick] [--variant N[,M...]] [--no-torch] [--no-sweep] [--list-variants]\n"
                "                 [--max-seq-len N]\n"
                "  --quick      validation only, small shapes (for the test suite)\n"
                "  --variant N  run only variant N, or the listed ones (1: fp32 CUDA cores, 2: mma.sync tensor\n"
                "               cores, 3: Hopper wgmma + TMA); the cross-check needs two\n"
                "               (the first listed, 1 or 2, is the trusted one)\n"
                "  --no-torch   skip the PyTorch SDPA baselines in the benchmark\n"
                "  --no-sweep   skip the tile-shape sweep in the benchmark\n"
                "  --list-variants  print the numbers of the variants this GPU and build run, one a line\n"
                "  --max-seq-len N  validate only the cases of at most N tokens\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false, with_torch = true, with_sweep = true, list_variants = false;
    int max_seq_len = std::numeric_limits<int>::max();
    std::vector<Variant> variants(std::begin(kVariants), std::end(kVariants));
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick") {
            quick = true;
        } else if (arg == "--no-torch") {
            with_torch = false;
        } else if (arg == "--no-sweep") {
            with_sweep = false;
        } else if (arg == "--list-variants") {
            list_variants = true;
        } else if (arg == "--max-seq-len" && i + 1 < argc) {
            char* end = nullptr;
            const long value = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || value < 1 || value > std::numeric_limits<int>::max()) {
                std::fprintf(stderr, "attention: --max-seq-len %s: expected a whole number of tokens, at least 1\n",
                             argv[i]);
                return 2;
            }
            max_seq_len = static_cast<int>(value);
        } else if (arg == "--variant" && i + 1 < argc) {
            const std::string list = argv[++i];
            variants.clear();
            for (const Variant& v : kVariants)
                if (("," + list + ",").find("," + std::to_string(v.number) + ",") != std::string::npos)
                    variants.push_back(v);
            if (variants.empty()) {
                std::fprintf(stderr, "attention: --variant %s: no such variant (1, 2 or 3)\n", argv[i]);
                return 2;
            }
        } else if (arg == "--help" || arg == "-h") {
            print_usage();
            return 0;
        } else {
            std::fprintf(stderr, "attention: unknown argument '%s'\n", arg.c_str());
            print_usage();
            return 2;
        }
    }
    if (list_variants) {
        for (const Variant& v : kVariants)
            if (runs_here(v)) std::printf("%d\n", v.number);
        return 0;
    }
    std::printf("attention workbench on %s\n", workbench::device_info().name.c_str());
    for (const Variant& v : variants)
        if (!runs_here(v))
            std::printf("  variant %d skipped: needs a compute capability 9.0 GPU and a GPU_ARCH=90 build\n", v.number);
    variants.erase(std::remove_if(variants.begin(), variants.end(), [](const Variant& v) { return !runs_here(v); }),
                   variants.end());
    if (variants.empty()) return 2;
    for (const Variant& v : variants)
        std::printf("  variant %d: %s (%s)\n", v.number, v.description, attention_kernel_name(v.kernel));

    std::mt19937_64 rng(20261127);
    Tally tally;
    validate_all<__nv_bfloat16>(variants, quick, max_seq_len, rng, tally);
    validate_all<__half>(variants, quick, max_seq_len, rng, tally);
    if (!quick) {
        if (variants.size() > 1 && variants.front().kernel != AttentionKernel::Hopper)
            cross_check_benchmark_shapes(variants, rng, tally);
        benchmark(variants, with_torch, with_sweep, rng, tally);
    }
    std::printf("attention: %d checks, %d failed: %s\n", tally.checks(), tally.failed, tally.failed ? "FAIL" : "PASS");
    return tally.failed ? 1 : 0;
}
