// The distributed runtime of one process: which GPU it drives, the NCCL communicator, and the
// collectives the trainer calls (data-parallel gradient all-reduce; reduce-scatter and
// all-gather for ZeRO-1, reduce to the owning rank and all-gather for ZeRO-2; scalar all-reduces
// for loss and gradient norm).
//
// DistributedContext, created once in main() after launch_local_workers_if_requested():
//   - Finds its place in the run. Started by mpirun, or by srun --mpi=pmix, in a build with MPI:
//     MPI_Init, and the NCCL unique id is broadcast with MPI_Bcast. Otherwise from the environment
//     (host/launch.h: RANK/WORLD_SIZE, srun's or mpirun's variables), and the id travels through
//     the shared-file rendezvous (host/rendezvous.h); rank 0 deletes the file once the
//     communicator is up. With none of these, a single process: no NCCL communicator, the
//     collectives become local copies, so single-GPU training never depends on NCCL.
//   - Drives GPU local_rank of its node.
//   - Creates a nonblocking communicator (ncclConfig_t.blocking = 0): no NCCL call blocks the
//     host; a call that answers ncclInProgress is polled with ncclCommGetAsyncError up to the
//     timeout (--nccl-timeout, default 300 s). This bounds communicator setup too.
//   - Puts every collective under the watchdog (train/nccl_watchdog.cuh), which stops this rank
//     when a peer dies or hangs.
//   - Never uses NVLink SHARP (NVLS, multicast objects): NCCL_NVLS_ENABLE=0 is forced before the
//     first NCCL call.
//
// Header-only, compiled with nvcc. NCCL is used when USE_NCCL is defined, MPI when USE_MPI is
// defined (both come from the Makefile).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "host/cuda_check.h"
#include "host/launch.h"
#include "host/rendezvous.h"
#include "train/nccl_watchdog.cuh"

#ifdef USE_NCCL
#include <nccl.h>
#endif
#ifdef USE_MPI
// Only MPI's C API is used; its deprecated C++ bindings do not compile warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace distributed {

#ifdef USE_NCCL
// For NCCL calls outside a communicator (ncclGetUniqueId); calls on a communicator go through
// DistributedContext, which can abort it.
inline void nccl_check_impl(ncclResult_t result, const char* call, const char* file, int line) {
    if (result != ncclSuccess) {
        std::fflush(stdout);
        std::fprintf(stderr, "NCCL error: %s (%s)\n  in %s\n  at %s:%d\n", ncclGetErrorString(result),
                     ncclGetLastError(nullptr), call, file, line);
        std::exit(EXIT_FAILURE);
    }
}
#define NCCL_CHECK(call) distributed::nccl_check_impl((call), #call, __FILE__, __LINE__)
#endif

struct DistributedOptions {
    std::string rendezvous_path;  // --rendezvous; empty: GPT_RENDEZVOUS from the environment
    double timeout_s = 300.0;     // --nccl-timeout: bound on communicator setup and on any collective
};

enum class ReduceOp { Sum, Average, Max };

// Storage types the collectives accept: fp32 (gradients, optimizer shards, scalars) and the
// 16-bit parameter types.
template <typename T>
constexpr bool is_collective_type =
    std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

#ifdef USE_NCCL
template <typename T> constexpr ncclDataType_t nccl_type() {
    static_assert(is_collective_type<T>, "collectives take float, __nv_bfloat16 or __half");
    if constexpr (std::is_same_v<T, float>) return ncclFloat32;
    else if constexpr (std::is_same_v<T, __nv_bfloat16>) return ncclBfloat16;
    else return ncclFloat16;
}
inline ncclRedOp_t nccl_op(ReduceOp op) {
    return op == ReduceOp::Sum ? ncclSum : op == ReduceOp::Average ? ncclAvg : ncclMax;
}
#endif

// ---------------------------------------------------------------------------------------------
// Set-up steps of DistributedContext.

// Every rank drives GPU local_rank of its node; done before anything else touches CUDA. Returns
// the device.
inline int select_device(int rank, int local_rank) {
    int visible = 0;
    const cudaError_t status = cudaGetDeviceCount(&visible);
    if (status != cudaSuccess)
        fatal("rank %d: no usable CUDA GPU (%s): this program needs an NVIDIA GPU and driver", rank,
              cudaGetErrorString(status));
    if (local_rank >= visible) {
        const char* mask = std::getenv("CUDA_VISIBLE_DEVICES");
        fatal("rank %d: local rank %d needs GPU %d of its node, but only %d GPU(s) are visible%s%s%s: start at most "
              "%d process(es) per node (--nproc, mpirun -np / --map-by ppr:N:node, srun --ntasks-per-node), and "
              "let every process of a node see all of its GPUs",
              rank, local_rank, local_rank, visible, mask ? " (CUDA_VISIBLE_DEVICES=" : "", mask ? mask : "",
              mask ? ")" : "", visible);
    }
    CUDA_CHECK(cudaSetDevice(local_rank));
    return local_rank;
}

#ifdef USE_MPI
// Discovery step 1: MPI_Init (the caller finalizes MPI) and this process's place from MPI.
inline LaunchInfo launch_info_from_mpi() {
    // The local rank from the launcher's environment lets the device be chosen before MPI_Init
    // (a CUDA-aware MPI may create a context on the current device).
    int launcher_rank = 0;  // for messages until MPI says
    for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
        if (const std::optional<int> value = env_int(name, 0)) {
            launcher_rank = *value;
            break;
        }
    }
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
        if (const std::optional<int> local = env_int(name, 0)) {
            select_device(launcher_rank, *local);
            break;
        }
    }
    // FUNNELED: only the main thread calls MPI, but NCCL and the watchdog run threads too.
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    LaunchInfo info;
    MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &info.world_size);
    MPI_Comm node_comm;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &node_comm);
    MPI_Comm_rank(node_comm, &info.local_rank);
    MPI_Comm_size(node_comm, &info.local_size);
    MPI_Comm_free(&node_comm);
    const int slurm_tasks = env_int("SLURM_STEP_NUM_TASKS", 1).value_or(1);
    if (info.world_size == 1 && slurm_tasks > 1)
        fatal("srun started %d tasks but MPI sees each as a single process: use srun --mpi=pmix (or the MPI "
              "plugin your cluster's OpenMPI was built for), or run without MPI through GPT_RENDEZVOUS",
              slurm_tasks);
    info.launcher = Launcher::Mpi;
    info.source = "MPI";
    return info;
}
#endif

#ifdef USE_NCCL
// Rank 0's NCCL unique id, on every rank: by MPI_Bcast under MPI, else through the rendezvous file.
inline ncclUniqueId exchange_nccl_id(const LaunchInfo& launch, const std::string& rendezvous_path, double timeout_s) {
    ncclUniqueId id;
    if (launch.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (launch.launcher == Launcher::Mpi) {
#ifdef USE_MPI
        MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
        return id;
    }
    if (rendezvous_path.empty())
        fatal("rank %d of %d (%s): the ranks need a rendezvous to exchange the NCCL id: pass --rendezvous PATH "
              "(or set GPT_RENDEZVOUS) to a fresh file path on a filesystem all ranks share, the same for "
              "every rank; or launch with mpirun, or with --nproc on one node",
              launch.rank, launch.world_size, launch.source.c_str());
    std::vector<char> payload;
    if (launch.rank == 0) payload.assign(id.internal, id.internal + sizeof id.internal);
    payload = rendezvous_broadcast(rendezvous_path, launch.rank, launch.world_size, payload, timeout_s);
    if (payload.size() != sizeof id.internal)
        fatal("rank %d: rendezvous file %s holds %zu bytes, not an NCCL id (%zu bytes): delete it and restart",
              launch.rank, rendezvous_path.c_str(), payload.size(), sizeof id.internal);
    std::memcpy(id.internal, payload.data(), sizeof id.internal);
    return id;
}
#endif

// ---------------------------------------------------------------------------------------------
// The runtime context.

// One per process, created once in main() after launch_local_workers_if_requested(). Owns the
// device choice, the communicator, the communication stream and the watchdog. Not copyable.
//
// Overlap with the backward pass: after the kernels that produce a gradient bucket are enqueued
// on the compute stream, call comm_waits_for(compute) and then the collective (a bucket of
// several slices: all_reduce() each between group_begin() and group_end()); the collective
// runs on comm_stream while later backward kernels run on the compute stream. Before the
// optimizer reads the reduced gradients, call compute_waits_for_comm(compute).
class DistributedContext {
  public:
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_size = 1;  // 0 when the launcher does not say
    int device = 0;      // == local_rank
    LaunchInfo launch;
    double timeout_s = 300.0;
    cudaStream_t comm_stream = nullptr;
#ifdef USE_NCCL
    ncclComm_t comm = nullptr;  // null when world_size == 1
#endif

    explicit DistributedContext(const DistributedOptions& options = {}) : timeout_s(options.timeout_s) {
        REQUIRE(options.timeout_s > 0, "--nccl-timeout must be positive (seconds), got %g", options.timeout_s);
        // NCCL reads its environment once, at its first call: this must precede all of them.
        const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
        if (nvls && std::strcmp(nvls, "0") != 0)
            std::fprintf(stderr, "warning: NCCL_NVLS_ENABLE=%s overridden to 0 (this program never uses NVLS/multicast)\n", nvls);
        setenv("NCCL_NVLS_ENABLE", "0", 1);

        discover_ranks();
        device = select_device(rank, local_rank);
        // Highest priority: a collective enqueued while backward kernels fill the GPU gets the next
        // free SM slots, instead of waiting until the running kernel has dispatched all its blocks.
        int lowest_priority = 0, highest_priority = 0;
        CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lowest_priority, &highest_priority));
        CUDA_CHECK(cudaStreamCreateWithPriority(&comm_stream, cudaStreamNonBlocking, highest_priority));
        CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
        CUDA_CHECK(cudaMallocHost(&host_scalar_, sizeof(float)));
        CUDA_CHECK(cudaMalloc(&device_scalar_, sizeof(float)));
        if (world_size > 1) {
            watchdog_.emplace(rank, device, timeout_s);
            create_communicator(options);
            watchdog_->start();
        }
    }

    DistributedContext(const DistributedContext&) = delete;
    DistributedContext& operator=(const DistributedContext&) = delete;

    ~DistributedContext() {
        synchronize();
        if (watchdog_) watchdog_->stop();
#ifdef USE_NCCL
        if (comm) {
            wait_for_nccl(ncclCommFinalize(comm), "ncclCommFinalize", __FILE__, __LINE__);
            ncclCommDestroy(comm);
        }
#endif
        watchdog_.reset();
        cudaEventDestroy(compute_done_);
        cudaEventDestroy(comm_done_);
        cudaFreeHost(host_scalar_);
        cudaFree(device_scalar_);
        cudaStreamDestroy(comm_stream);
#ifdef USE_MPI
        if (launch.launcher == Launcher::Mpi) MPI_Finalize();
#endif
    }

    bool is_main() const { return rank == 0; }
    bool is_distributed() const { return world_size > 1; }

    // Stream ordering. Each records one event and enqueues one wait; no host synchronization.
    // Both work inside CUDA graph capture (they are the usual fork/join of a captured stream).
    // Calling them again at once (one bucket per layer) is safe: a wait binds to the event's
    // latest record when the wait is enqueued, not to later re-records.
    void comm_waits_for(cudaStream_t compute) {
        CUDA_CHECK(cudaEventRecord(compute_done_, compute));
        CUDA_CHECK(cudaStreamWaitEvent(comm_stream, compute_done_, 0));
    }
    void compute_waits_for_comm(cudaStream_t compute) {
        CUDA_CHECK(cudaEventRecord(comm_done_, comm_stream));
        CUDA_CHECK(cudaStreamWaitEvent(compute, comm_done_, 0));
    }

    // recv[i] = op over ranks of send[i], i < count; send == recv is in place. On comm_stream.
    // `what` names the operation in timeout/error messages ("gradient bucket 3").
    template <typename T>
    void all_reduce(const T* send, T* recv, size_t count, [[maybe_unused]] ReduceOp op,
                    [[maybe_unused]] const char* what) {
        static_assert(is_collective_type<T>, "collectives take float, __nv_bfloat16 or __half");
        if (world_size == 1) {
            local_copy(send, recv, count);
            return;
        }
#ifdef USE_NCCL
        wait_for_nccl(ncclAllReduce(send, recv, count, nccl_type<T>(), nccl_op(op), comm, comm_stream), what,
                      __FILE__, __LINE__);
        if (group_depth_ == 0) watch(comm_stream, what);
#endif
    }
    template <typename T> void all_reduce(T* data, size_t count, ReduceOp op, const char* what) {
        all_reduce(static_cast<const T*>(data), data, count, op, what);
    }

    // recv[i] = op over ranks of send[i], i < count, on rank `root` only (ZeRO-2 sends each
    // gradient slice to the rank that owns it); recv is untouched elsewhere. send == recv is in place.
    template <typename T>
    void reduce(const T* send, T* recv, size_t count, int root, [[maybe_unused]] ReduceOp op,
                [[maybe_unused]] const char* what) {
        static_assert(is_collective_type<T>, "collectives take float, __nv_bfloat16 or __half");
        REQUIRE(root >= 0 && root < world_size, "reduce: root %d of world size %d", root, world_size);
        if (world_size == 1) {
            local_copy(send, recv, count);
            return;
        }
#ifdef USE_NCCL
        wait_for_nccl(ncclReduce(send, recv, count, nccl_type<T>(), nccl_op(op), root, comm, comm_stream), what,
                      __FILE__, __LINE__);
        if (group_depth_ == 0) watch(comm_stream, what);
#endif
    }

    // send: (world_size * recv_count), recv: (recv_count) = this rank's block of the reduction:
    // recv[i] = op over ranks of send[rank * recv_count + i]. In place when
    // recv == send + rank * recv_count. See shard_of() (host/rank_shard.h) for the padding.
    template <typename T>
    void reduce_scatter(const T* send, T* recv, size_t recv_count, [[maybe_unused]] ReduceOp op,
                        [[maybe_unused]] const char* what) {
        static_assert(is_collective_type<T>, "collectives take float, __nv_bfloat16 or __half");
        if (world_size == 1) {
            local_copy(send, recv, recv_count);
            return;
        }
#ifdef USE_NCCL
        wait_for_nccl(ncclReduceScatter(send, recv, recv_count, nccl_type<T>(), nccl_op(op), comm, comm_stream),
                      what, __FILE__, __LINE__);
        if (group_depth_ == 0) watch(comm_stream, what);
#endif
    }

    // send: (send_count), recv: (world_size * send_count); rank r's block lands at
    // recv + r * send_count. In place when send == recv + rank * send_count.
    template <typename T>
    void all_gather(const T* send, T* recv, size_t send_count, [[maybe_unused]] const char* what) {
        static_assert(is_collective_type<T>, "collectives take float, __nv_bfloat16 or __half");
        if (world_size == 1) {
            local_copy(send, recv, send_count);
            return;
        }
#ifdef USE_NCCL
        wait_for_nccl(ncclAllGather(send, recv, send_count, nccl_type<T>(), comm, comm_stream), what, __FILE__,
                      __LINE__);
        if (group_depth_ == 0) watch(comm_stream, what);
#endif
    }

    // Several collectives between group_begin() and group_end() are launched together (one
    // kernel where NCCL can fuse them): e.g. the reduce-scatters of several buckets. NCCL
    // enqueues them only at group_end(), so that is where the watchdog starts timing them.
    void group_begin() {
#ifdef USE_NCCL
        if (comm) wait_for_nccl(ncclGroupStart(), "ncclGroupStart", __FILE__, __LINE__);
#endif
        ++group_depth_;
    }
    void group_end(const char* what = "grouped collectives") {
        REQUIRE(group_depth_ > 0, "group_end() without group_begin()");
        --group_depth_;
#ifdef USE_NCCL
        if (comm) {
            wait_for_nccl(ncclGroupEnd(), what, __FILE__, __LINE__);
            if (group_depth_ == 0) watch(comm_stream, what);
        }
#else
        (void)what;
#endif
    }

    // A host value reduced over ranks (loss for the log line, flags such as "this rank saw an
    // fp16 overflow" with Max). Blocks until done; ordered after everything on comm_stream.
    float all_reduce_host(float value, ReduceOp op, const char* what = "scalar all-reduce") {
        if (world_size == 1) return value;
        *host_scalar_ = value;
        CUDA_CHECK(cudaMemcpyAsync(device_scalar_, host_scalar_, sizeof(float), cudaMemcpyHostToDevice, comm_stream));
        all_reduce(device_scalar_, 1, op, what);
        CUDA_CHECK(cudaMemcpyAsync(host_scalar_, device_scalar_, sizeof(float), cudaMemcpyDeviceToHost, comm_stream));
        synchronize();
        return *host_scalar_;
    }

    // Rank 0's `text` on every rank (e.g. its matmul tuning record). Blocks until done.
    std::string broadcast_text_from_main(const std::string& text, const char* what) {
        if (world_size == 1) return text;
        // The length travels as a float, exact below 2^24.
        REQUIRE(!is_main() || text.size() < (size_t(1) << 24), "%s: %zu bytes are too many to broadcast", what,
                text.size());
        const size_t bytes = (size_t)all_reduce_host(is_main() ? (float)text.size() : 0.0f, ReduceOp::Max, what);
        std::string received = is_main() ? text : std::string(bytes, '\0');
#ifdef USE_NCCL
        if (bytes == 0) return received;
        char* device_text = nullptr;
        CUDA_CHECK(cudaMalloc(&device_text, bytes));
        if (is_main())
            CUDA_CHECK(cudaMemcpyAsync(device_text, text.data(), bytes, cudaMemcpyHostToDevice, comm_stream));
        wait_for_nccl(ncclBroadcast(device_text, device_text, bytes, ncclChar, 0, comm, comm_stream), what, __FILE__,
                      __LINE__);
        watch(comm_stream, what);
        CUDA_CHECK(cudaMemcpyAsync(received.data(), device_text, bytes, cudaMemcpyDeviceToHost, comm_stream));
        synchronize();
        CUDA_CHECK(cudaFree(device_text));
#endif
        return received;
    }

    // Every rank reaches this point before any leaves it (e.g. around checkpoint writes).
    void barrier() { all_reduce_host(0.0f, ReduceOp::Sum, "barrier"); }

    // Waits for everything enqueued on comm_stream; a hang here is caught by the watchdog.
    void synchronize() { CUDA_CHECK(cudaStreamSynchronize(comm_stream)); }

    // Puts the work enqueued on `stream` so far under the watchdog's timeout. The collectives do
    // this themselves; call it after launching a CUDA graph that contains collectives (inside a
    // capture, the collectives skip it: an event recorded there would become part of the graph).
    void watch(cudaStream_t stream, const char* what) {
        if (world_size == 1) return;
        cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
        CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
        if (capture != cudaStreamCaptureStatusNone) return;
        watchdog_->watch(stream, what);
    }

  private:
    cudaEvent_t compute_done_ = nullptr;  // recorded on the compute stream, waited on by comm_stream
    cudaEvent_t comm_done_ = nullptr;     // recorded on comm_stream, waited on by the compute stream
    float* host_scalar_ = nullptr;        // pinned (1)
    float* device_scalar_ = nullptr;      // (1)
    int group_depth_ = 0;  // > 0 between group_begin() and group_end()
    std::optional<CollectiveWatchdog> watchdog_;  // exactly when world_size > 1

    template <typename T> void local_copy(const T* send, T* recv, size_t count) {
        if (send != recv && count > 0)
            CUDA_CHECK(cudaMemcpyAsync(recv, send, count * sizeof(T), cudaMemcpyDeviceToDevice, comm_stream));
    }

    void discover_ranks() {
#ifdef USE_MPI
        if (started_by_mpi_launcher()) launch = launch_info_from_mpi();
        else launch = launch_info_from_environment();
#else
        launch = launch_info_from_environment();
#endif
        rank = launch.rank;
        world_size = launch.world_size;
        local_rank = launch.local_rank;
        local_size = launch.local_size;
#ifndef USE_NCCL
        if (world_size > 1)
            fatal("rank %d of %d (%s): this build has no NCCL, so it runs on one GPU only: install NCCL (or set "
                  "NCCL_HOME) and rebuild with make, or run a single process",
                  rank, world_size, launch.source.c_str());
#endif
    }

    void create_communicator(const DistributedOptions& options) {
#ifdef USE_NCCL
        const std::string rendezvous_path = rendezvous_path_from(options.rendezvous_path);
        const ncclUniqueId id = exchange_nccl_id(launch, rendezvous_path, timeout_s);
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        const ncclResult_t started = ncclCommInitRankConfig(&comm, world_size, id, rank, &config);
        watchdog_->attach(comm);
        wait_for_nccl(started, "communicator setup (ncclCommInitRankConfig): not every rank joined", __FILE__, __LINE__);
        if (rank == 0 && launch.launcher != Launcher::Mpi) std::remove(rendezvous_path.c_str());
#else
        (void)options;
#endif
    }

#ifdef USE_NCCL
    // Completes an NCCL call on the nonblocking communicator. Since NCCL 2.19 every collective
    // outside a group answers ncclInProgress and a background thread issues its kernel; the
    // state is polled (yielding for the first 2 ms: this is on the step's critical path, then
    // sleeping) until the kernel is on the stream, at most timeout_s seconds. Inside a group,
    // ncclInProgress only means "queued": group_end() waits for the whole group.
    void wait_for_nccl(ncclResult_t result, const char* what, const char* file, int line) {
        if (result == ncclInProgress && group_depth_ > 0) return;
        const auto start = std::chrono::steady_clock::now();
        const auto deadline = start + std::chrono::duration<double>(timeout_s);
        while (result == ncclInProgress) {
            const auto now = std::chrono::steady_clock::now();
            if (now > deadline) {
                char reason[512];
                std::snprintf(reason, sizeof reason, "%s did not complete within %.0f s (at %s:%d)", what, timeout_s,
                              file, line);
                watchdog_->abort_and_exit(reason);
            }
            if (now - start < std::chrono::milliseconds(2)) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(50));
            if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) result = ncclInternalError;
        }
        if (result != ncclSuccess) {
            char reason[768];
            std::snprintf(reason, sizeof reason, "NCCL error in %s: %s (%s) at %s:%d", what,
                          ncclGetErrorString(result), ncclGetLastError(comm), file, line);
            watchdog_->abort_and_exit(reason);
        }
    }
#endif
};

}  // namespace distributed
