// Workbench for train/nccl_context.cuh: the collectives the trainer uses, validated across all
// local GPUs, then their bus bandwidth, then the failure path (a hung rank must stop the others).
//
//   build/dev/cuda/nccl_allreduce            validation + benchmark + watchdog test
//   build/dev/cuda/nccl_allreduce --quick    validation only, small sizes (what `make test-gpu` runs)
//   mpirun -np 4 build/dev/cuda/nccl_allreduce --quick    the same through MPI discovery
//
// Unless it already is a rank (mpirun, srun, RANK/WORLD_SIZE), the program starts one rank per
// visible GPU through the --nproc launcher (one rank in a build without NCCL: the single-process
// fallback, where collectives are local copies, is validated instead).
//
// Validation, on every rank, compared exactly (tolerance 0) unless stated: the inputs are small
// multiples of 0.25 (fp32) or small integers (16-bit types), so every partial sum NCCL can form,
// in any order, is exactly representable and the result does not depend on the algorithm.
//   - all-reduce: fp32 sum out of place, bf16 sum in place, fp16 max, fp32 average (tolerance
//     1e-6 relative: ncclAvg may multiply each term by 1/R before summing, one rounding per term,
//     so the error is at most ~R/2 ulp = 2.4e-7 for R = 8);
//   - reduce-scatter fp32 over a shard_of() layout with an odd element count (padding must come
//     back zero) and all-gather bf16 in place and fp32 out of place;
//   - a ZeRO step in one NCCL group: reduce-scatter of gradients + all-gather of parameters;
//   - stream ordering: a slow kernel on the compute stream writes the input; comm_waits_for() must
//     hold the all-reduce back until it finishes, and compute_waits_for_comm() must hold a later
//     compute kernel until the all-reduce finishes (without either wait the result is wrong);
//   - the same sequence captured in a CUDA graph (global capture mode, watchdog thread running);
//   - host scalar all-reduce (sum, max) and barrier.
// Benchmark (without --quick): all-reduce fp32 / bf16, reduce-scatter fp32, all-gather bf16 from
// 1 MiB to 1 GiB; time = the slowest rank's median of 20; bus bandwidth as nccl-tests defines it
// (all-reduce: algbw * 2(R-1)/R; reduce-scatter, all-gather: algbw * (R-1)/R).
// Watchdog test (without --quick, 2+ GPUs): the program re-runs itself with rank 1 hanging
// (it stops calling collectives) and --nccl-timeout 10; the other ranks must report the stuck
// operation and exit nonzero within 10 s + 1 s polling + 30 s abort grace + 60 s for start-up.
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "host/rank_shard.h"
#include "train/nccl_context.cuh"

namespace {

using distributed::DistributedContext;
using distributed::ReduceOp;

struct Options {
    bool quick = false;
    double timeout_s = 300.0;
    int hang_rank = -1;  // internal: the watchdog test's rank that stops participating
};

// ---------------------------------------------------------------------------------------------
// Device helpers for the stream-ordering checks.

// Spins for about `spin_ns` nanoseconds, then writes `value` to every element: a producer slow
// enough that a missing stream wait would let the consumer read stale data.
__global__ void slow_fill_kernel(float* out, size_t n, float value, unsigned spin_ns) {
    for (unsigned waited = 0; waited < spin_ns; waited += 1000) __nanosleep(1000);
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x)
        out[i] = value;
}
void slow_fill(float* out, size_t n, float value, unsigned spin_ns, cudaStream_t stream) {
    slow_fill_kernel<<<128, 256, 0, stream>>>(out, n, value, spin_ns);
    CUDA_CHECK_LAUNCH();
}

__global__ void copy_kernel(float* out, const float* in, size_t n) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x)
        out[i] = in[i];
}
void copy_on(float* out, const float* in, size_t n, cudaStream_t stream) {
    copy_kernel<<<128, 256, 0, stream>>>(out, in, n);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Exact input patterns (see the tolerances above).

float quarter_pattern(int rank, size_t j) { return 0.25f * static_cast<float>((rank + 1) * 3 + static_cast<int>(j % 17)); }
float small_int_pattern(int rank, size_t j) { return static_cast<float>(rank + static_cast<int>(j % 5)); }
float signed_pattern(int rank, size_t j) { return static_cast<float>(static_cast<int>((rank * 5 + j) % 11) - 5); }

template <typename T> T* upload(const std::vector<float>& values) {
    T* device = workbench::device_alloc<T>(std::max<size_t>(values.size(), 1));
    workbench::upload_rounded(device, values);
    return device;
}

using workbench::Tally;

// Largest |out - expected| / max(|expected|, 1) over the elements; prints one line on rank 0
// (other ranks print only failures).
bool check(const char* what, const std::vector<float>& out, const std::vector<double>& expected, double tolerance,
           const DistributedContext& ctx, Tally& tally) {
    double worst = 0.0;
    bool finite = out.size() == expected.size();
    for (size_t i = 0; i < expected.size() && finite; ++i) {
        finite = std::isfinite(out[i]);
        worst = std::max(worst, std::fabs(out[i] - expected[i]) / std::max(std::fabs(expected[i]), 1.0));
    }
    const bool pass = finite && worst <= tolerance;
    (pass ? tally.passed : tally.failed)++;
    if (ctx.is_main() || !pass)
        std::printf("  %s%-52s max rel.err %.2e (tolerance %.0e)%s  %s\n",
                    ctx.is_main() ? "" : ("[rank " + std::to_string(ctx.rank) + "] ").c_str(), what, worst, tolerance,
                    finite ? "" : "  NON-FINITE/WRONG SIZE", pass ? "ok" : "FAIL");
    return pass;
}

// ---------------------------------------------------------------------------------------------
// Validation

void validate_all_reduce(DistributedContext& ctx, size_t n, Tally& tally) {
    const int R = ctx.world_size;
    std::vector<float> a(n), b(n), c(n);
    std::vector<double> sum_a(n, 0.0), sum_b(n, 0.0), max_c(n, -1e30);
    for (size_t j = 0; j < n; ++j) {
        a[j] = quarter_pattern(ctx.rank, j);
        b[j] = small_int_pattern(ctx.rank, j);
        c[j] = signed_pattern(ctx.rank, j);
        for (int r = 0; r < R; ++r) {
            sum_a[j] += quarter_pattern(r, j);
            sum_b[j] += small_int_pattern(r, j);
            max_c[j] = std::max<double>(max_c[j], signed_pattern(r, j));
        }
    }
    float* a_in = upload<float>(a);
    float* a_out = workbench::device_alloc<float>(n);
    workbench::poison(a_out, n);
    __nv_bfloat16* b_dev = upload<__nv_bfloat16>(b);
    __half* c_dev = upload<__half>(c);
    float* avg_out = workbench::device_alloc<float>(n);
    CUDA_CHECK(cudaDeviceSynchronize());  // uploads were on the legacy stream; comm_stream does not wait for it

    ctx.all_reduce(a_in, a_out, n, ReduceOp::Sum, "validate all-reduce fp32 sum");
    ctx.all_reduce(b_dev, n, ReduceOp::Sum, "validate all-reduce bf16 sum in place");
    ctx.all_reduce(c_dev, n, ReduceOp::Max, "validate all-reduce fp16 max in place");
    ctx.all_reduce(a_in, avg_out, n, ReduceOp::Average, "validate all-reduce fp32 average");
    ctx.synchronize();

    std::vector<double> avg(n);
    for (size_t j = 0; j < n; ++j) avg[j] = sum_a[j] / R;
    const std::string size = " (n=" + std::to_string(n) + ")";
    check(("all-reduce fp32 sum, out of place" + size).c_str(), workbench::download(a_out, n), sum_a, 0.0, ctx, tally);
    check(("all-reduce bf16 sum, in place" + size).c_str(), workbench::download(b_dev, n), sum_b, 0.0, ctx, tally);
    check(("all-reduce fp16 max, in place" + size).c_str(), workbench::download(c_dev, n), max_c, 0.0, ctx, tally);
    check(("all-reduce fp32 average" + size).c_str(), workbench::download(avg_out, n), avg, 1e-6, ctx, tally);
    check(("all-reduce leaves its fp32 input unchanged" + size).c_str(), workbench::download(a_in, n),
          std::vector<double>(a.begin(), a.end()), 0.0, ctx, tally);
    for (void* p : {static_cast<void*>(a_in), static_cast<void*>(a_out), static_cast<void*>(b_dev),
                    static_cast<void*>(c_dev), static_cast<void*>(avg_out)})
        CUDA_CHECK(cudaFree(p));
}

// ZeRO layout: a flat array of `count` elements, sharded with shard_of(). Gradients are
// reduce-scattered (fp32), parameters all-gathered (bf16 in place, fp32 out of place); with
// `grouped`, the reduce-scatter and the bf16 all-gather run in one NCCL group.
void validate_sharded(DistributedContext& ctx, size_t count, bool grouped, Tally& tally) {
    const int R = ctx.world_size;
    const distributed::Shard shard = distributed::shard_of(count, ctx.rank, R);
    const size_t padded = shard.padded_count, per_rank = shard.shard_count;

    // Gradients: element j of rank r is quarter_pattern(r, j); padding is zero on every rank.
    std::vector<float> grads(padded, 0.0f);
    for (size_t j = 0; j < count; ++j) grads[j] = quarter_pattern(ctx.rank, j);
    std::vector<double> expected_shard(per_rank, 0.0);
    for (size_t i = 0; i < per_rank; ++i)
        if (shard.begin + i < count)
            for (int r = 0; r < R; ++r) expected_shard[i] += quarter_pattern(r, shard.begin + i);

    // Parameters: each rank owns its shard's values, small_int_pattern(owner, j), padding zero.
    auto param_value = [&](size_t j) {
        return j < count ? small_int_pattern(static_cast<int>(j / per_rank), j) : 0.0f;
    };
    std::vector<float> params_bf16(padded, -1.0f);  // other ranks' blocks hold garbage until gathered
    std::vector<float> my_block(per_rank);
    std::vector<double> gathered(padded);
    for (size_t j = 0; j < padded; ++j) gathered[j] = param_value(j);
    for (size_t i = 0; i < per_rank; ++i) {
        my_block[i] = param_value(shard.begin + i);
        params_bf16[shard.begin + i] = my_block[i];
    }

    float* grads_dev = upload<float>(grads);
    float* grad_shard = workbench::device_alloc<float>(per_rank);
    workbench::poison(grad_shard, per_rank);
    __nv_bfloat16* params_dev = upload<__nv_bfloat16>(params_bf16);
    float* block_dev = upload<float>(my_block);
    float* params_fp32 = workbench::device_alloc<float>(padded);
    workbench::poison(params_fp32, padded);
    CUDA_CHECK(cudaDeviceSynchronize());

    if (grouped) ctx.group_begin();
    ctx.reduce_scatter(grads_dev, grad_shard, per_rank, ReduceOp::Sum, "validate reduce-scatter fp32");
    ctx.all_gather(params_dev + shard.begin, params_dev, per_rank, "validate all-gather bf16 in place");
    if (grouped) ctx.group_end("validate grouped reduce-scatter + all-gather");
    ctx.all_gather(block_dev, params_fp32, per_rank, "validate all-gather fp32");
    ctx.synchronize();

    const std::string how = std::string(grouped ? " [one NCCL group]" : "") + " (n=" + std::to_string(count) +
                            ", padded " + std::to_string(padded) + ")";
    check(("reduce-scatter fp32 sum, padding zero" + how).c_str(), workbench::download(grad_shard, per_rank),
          expected_shard, 0.0, ctx, tally);
    check(("all-gather bf16 in place" + how).c_str(), workbench::download(params_dev, padded), gathered, 0.0, ctx, tally);
    check(("all-gather fp32 out of place" + how).c_str(), workbench::download(params_fp32, padded), gathered, 0.0, ctx,
          tally);
    for (void* p : {static_cast<void*>(grads_dev), static_cast<void*>(grad_shard), static_cast<void*>(params_dev),
                    static_cast<void*>(block_dev), static_cast<void*>(params_fp32)})
        CUDA_CHECK(cudaFree(p));
}

// The overlap pattern of the backward pass: producer kernel on the compute stream, all-reduce on
// comm_stream, consumer kernel on the compute stream. Run eagerly, or captured as a CUDA graph
// and launched twice (the watchdog is then given the graph's stream with watch()).
void validate_stream_order(DistributedContext& ctx, size_t n, bool as_graph, Tally& tally) {
    cudaStream_t compute;
    CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    float* grads = workbench::device_alloc<float>(n);
    float* consumed = workbench::device_alloc<float>(n);
    CUDA_CHECK(cudaMemsetAsync(grads, 0, n * sizeof(float), compute));
    const float value = 0.5f * (ctx.rank + 1);  // the sum over ranks is 0.25 R (R + 1)
    const unsigned spin_ns = 2000000;           // 2 ms: far longer than launching the all-reduce

    auto enqueue = [&] {
        slow_fill(grads, n, value, spin_ns, compute);
        ctx.comm_waits_for(compute);
        ctx.all_reduce(grads, n, ReduceOp::Sum, "validate stream order all-reduce");
        ctx.compute_waits_for_comm(compute);
        copy_on(consumed, grads, n, compute);
    };
    if (as_graph) {
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CUDA_CHECK(cudaStreamSynchronize(compute));
        CUDA_CHECK(cudaStreamBeginCapture(compute, cudaStreamCaptureModeGlobal));
        enqueue();
        CUDA_CHECK(cudaStreamEndCapture(compute, &graph));
        CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        for (int launch = 0; launch < 2; ++launch) CUDA_CHECK(cudaGraphLaunch(exec, compute));
        ctx.watch(compute, "validate graph with all-reduce");
        CUDA_CHECK(cudaStreamSynchronize(compute));
        CUDA_CHECK(cudaGraphExecDestroy(exec));
        CUDA_CHECK(cudaGraphDestroy(graph));
    } else {
        enqueue();
        CUDA_CHECK(cudaStreamSynchronize(compute));
    }
    const double sum = 0.25 * ctx.world_size * (ctx.world_size + 1);
    check(as_graph ? "stream order in a CUDA graph: producer -> all-reduce -> consumer"
                   : "stream order: producer -> all-reduce -> consumer",
          workbench::download(consumed, n), std::vector<double>(n, sum), 0.0, ctx, tally);
    CUDA_CHECK(cudaFree(grads));
    CUDA_CHECK(cudaFree(consumed));
    CUDA_CHECK(cudaStreamDestroy(compute));
}

void validate_host_scalars(DistributedContext& ctx, Tally& tally) {
    const int R = ctx.world_size;
    const float sum = ctx.all_reduce_host(static_cast<float>(ctx.rank + 1), ReduceOp::Sum);
    const float max = ctx.all_reduce_host(static_cast<float>(ctx.rank), ReduceOp::Max);
    ctx.barrier();
    check("host scalar all-reduce: sum of rank+1, max of rank", {sum, max}, {0.5 * R * (R + 1), double(R - 1)}, 0.0,
          ctx, tally);
}

// ---------------------------------------------------------------------------------------------
// Benchmark

enum class BenchKind { AllReduceFp32, AllReduceBf16, ReduceScatterFp32, AllGatherBf16 };
struct BenchOp {
    BenchKind kind;
    const char* name;
    size_t element_bytes;
    double bus_factor_numerator;  // bus bandwidth = algbw * numerator * (R-1)/R
};

void benchmark(DistributedContext& ctx) {
    const int R = ctx.world_size;
    const size_t max_bytes = size_t(1) << 30;
    char* send = workbench::device_alloc<char>(max_bytes);
    char* recv = workbench::device_alloc<char>(max_bytes);
    CUDA_CHECK(cudaMemset(send, 0, max_bytes));
    CUDA_CHECK(cudaMemset(recv, 0, max_bytes));
    CUDA_CHECK(cudaDeviceSynchronize());
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));

    const BenchOp ops[] = {{BenchKind::AllReduceFp32, "all-reduce fp32", 4, 2.0},
                           {BenchKind::AllReduceBf16, "all-reduce bf16", 2, 2.0},
                           {BenchKind::ReduceScatterFp32, "reduce-scatter fp32", 4, 1.0},
                           {BenchKind::AllGatherBf16, "all-gather bf16", 2, 1.0}};
    if (ctx.is_main()) {
        std::printf("\nBenchmark: %d rank(s) on %s; size = the whole array (nccl-tests' convention)\n", R,
                    workbench::device_info().name.c_str());
        std::printf("  %-20s %10s %12s %12s %12s\n", "operation", "size", "time us", "algbw GB/s", "busbw GB/s");
    }
    for (const BenchOp& op : ops) {
        for (size_t bytes = size_t(1) << 20; bytes <= max_bytes; bytes <<= 2) {
            const size_t count = bytes / op.element_bytes;
            const size_t per_rank = count / R;
            float* send32 = reinterpret_cast<float*>(send);
            float* recv32 = reinterpret_cast<float*>(recv);
            __nv_bfloat16* send16 = reinterpret_cast<__nv_bfloat16*>(send);
            __nv_bfloat16* recv16 = reinterpret_cast<__nv_bfloat16*>(recv);
            auto launch = [&] {
                switch (op.kind) {
                    case BenchKind::AllReduceFp32: ctx.all_reduce(send32, recv32, count, ReduceOp::Sum, op.name); break;
                    case BenchKind::AllReduceBf16: ctx.all_reduce(send16, recv16, count, ReduceOp::Sum, op.name); break;
                    case BenchKind::ReduceScatterFp32:
                        ctx.reduce_scatter(send32, recv32, per_rank, ReduceOp::Sum, op.name);
                        break;
                    case BenchKind::AllGatherBf16: ctx.all_gather(send16, recv16, per_rank, op.name); break;
                }
            };
            for (int i = 0; i < 3; ++i) launch();
            std::vector<float> times;
            for (int i = 0; i < 20; ++i) {
                CUDA_CHECK(cudaEventRecord(start, ctx.comm_stream));
                launch();
                CUDA_CHECK(cudaEventRecord(stop, ctx.comm_stream));
                CUDA_CHECK(cudaEventSynchronize(stop));
                float ms = 0.0f;
                CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
                times.push_back(ms);
            }
            std::sort(times.begin(), times.end());
            const float slowest_median_ms = ctx.all_reduce_host(times[times.size() / 2], ReduceOp::Max, "benchmark timing");
            if (ctx.is_main()) {
                const double algbw = bytes / (slowest_median_ms * 1e-3) / 1e9;
                char busbw[32] = "n/a (1 rank)";
                if (R > 1) std::snprintf(busbw, sizeof busbw, "%.1f", algbw * op.bus_factor_numerator * (R - 1) / R);
                std::printf("  %-20s %7zu MiB %12.1f %12.1f %12s\n", op.name, bytes >> 20, slowest_median_ms * 1e3,
                            algbw, busbw);
            }
        }
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    CUDA_CHECK(cudaFree(send));
    CUDA_CHECK(cudaFree(recv));
}

// ---------------------------------------------------------------------------------------------
// One rank's work.

int run_rank(const Options& options) {
    DistributedContext ctx({"", options.timeout_s});
    if (options.hang_rank >= 0) {
        // The watchdog test: every rank all-reduces in a loop; hang_rank stops after 3 rounds,
        // as a rank stuck in a deadlock or a dead node would. The others must not wait forever.
        for (int round = 0;; ++round) {
            if (ctx.rank == options.hang_rank && round == 3) {
                std::printf("[rank %d] hanging on purpose (watchdog test)\n", ctx.rank);
                std::fflush(stdout);
                sleep(600);
            }
            ctx.all_reduce_host(1.0f, ReduceOp::Sum, "watchdog test all-reduce");
        }
    }
    if (ctx.is_main()) {
#ifdef USE_NCCL
        int version = 0;
        NCCL_CHECK(ncclGetVersion(&version));
        std::printf("NCCL %d, ", version);
#else
        std::printf("built without NCCL (single-process fallback), ");
#endif
        std::printf("%d rank(s) [%s], rank 0 on GPU %d: %s\n", ctx.world_size, ctx.launch.source.c_str(), ctx.device,
                    workbench::device_info().name.c_str());
        std::printf("\nValidation (exact unless a tolerance is given; every rank checks its own results)\n");
    }
    Tally tally;
    const std::vector<size_t> sizes = options.quick ? std::vector<size_t>{1, 4099} : std::vector<size_t>{1, 4099, 1000003};
    for (size_t n : sizes) validate_all_reduce(ctx, n, tally);
    for (size_t n : sizes) validate_sharded(ctx, n, false, tally);
    validate_sharded(ctx, sizes.back(), true, tally);
    validate_stream_order(ctx, size_t(1) << 20, false, tally);
    validate_stream_order(ctx, size_t(1) << 20, true, tally);
    validate_host_scalars(ctx, tally);

    const float failures = ctx.all_reduce_host(static_cast<float>(tally.failed), ReduceOp::Sum, "failure count");
    if (ctx.is_main())
        std::printf("  %d check(s) on rank 0, %d failed; %d failed on all ranks together\n", tally.passed + tally.failed,
                    tally.failed, static_cast<int>(failures));
    if (!options.quick && failures == 0) benchmark(ctx);
    return failures == 0 ? 0 : 1;
}

// The watchdog test, from the top-level process: re-runs this program with a hanging rank.
bool watchdog_test(const std::string& self, int nproc) {
    const double timeout_s = 10.0, bound_s = timeout_s + 1 + 30 + 60;
    const std::string command =
        "'" + self + "' --hang-rank 1 --nccl-timeout 10 --nproc " + std::to_string(nproc) + " 2>&1";
    std::printf("\nWatchdog test: rank 1 of %d stops participating; the others must exit within %.0f s\n", nproc, bound_s);
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
        std::printf("  cannot run `%s`  FAIL\n", command.c_str());
        return false;
    }
    char line[1024];
    bool reported = false;
    while (std::fgets(line, sizeof line, pipe)) {
        std::printf("  | %s", line);
        reported = reported || std::strstr(line, "did not complete within") != nullptr;
    }
    const int status = pclose(pipe);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const bool failed_run = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const bool pass = failed_run && reported && elapsed < bound_s;
    std::printf("  run exited %s after %.1f s, stuck operation %s  %s\n", failed_run ? "nonzero" : "with 0 (WRONG)",
                elapsed, reported ? "reported" : "NOT reported", pass ? "ok" : "FAIL");
    return pass;
}

}  // namespace

int main(int argc, char** argv) {
    if (std::optional<int> code = distributed::launch_local_workers_if_requested(argc, argv)) return *code;
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick") {
            options.quick = true;
        } else if (arg == "--nccl-timeout" && i + 1 < argc) {
            options.timeout_s = std::atof(argv[++i]);
        } else if (arg == "--hang-rank" && i + 1 < argc) {
            options.hang_rank = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr,
                         "%s: unknown option '%s'\nusage: %s [--quick] [--nccl-timeout S] [--nproc N]\n"
                         "  --quick           validation only, small sizes (the test suite)\n"
                         "  --nccl-timeout S  the watchdog's limit on any collective (default 300)\n"
                         "  --nproc N         ranks to start (default: one per visible GPU)\n",
                         argv[0], argv[i], argv[0]);
            return 2;
        }
    }
    const bool is_rank = std::getenv("RANK") || distributed::started_by_mpi_launcher() || std::getenv("SLURM_STEP_NUM_TASKS");
    if (is_rank) return run_rank(options);

    // Top level: one rank per visible GPU through the launcher, then the watchdog test.
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
        std::printf("FAIL: nccl_allreduce found no CUDA GPU\n");
        return 1;
    }
#ifdef USE_NCCL
    const int nproc = gpus;
#else
    const int nproc = 1;
#endif
    std::vector<std::string> args(argv, argv + argc);
    const int status = distributed::launch_local_workers(nproc, args);
    bool ok = status == 0;
    bool watchdog_ran = false;
    if (ok && !options.quick && nproc >= 2 && options.hang_rank < 0) {
        char self[4096] = {};
        const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
        ok = length > 0 && watchdog_test(std::string(self, length), nproc);
        watchdog_ran = true;
    }
    std::printf("\n%s: nccl_allreduce on %d rank(s)%s%s\n", ok ? "PASS" : "FAIL", nproc,
                status == 0 ? "" : ": a rank failed validation or crashed (see above)",
                watchdog_ran ? ", watchdog test included"
                             : (options.quick ? "" : " (watchdog test needs 2+ GPUs and NCCL: skipped)"));
    return ok ? 0 : 1;
}
