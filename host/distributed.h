// Distributed runtime: how the processes of one run find each other, which GPU each one drives,
// and the NCCL collectives the trainer calls (data-parallel gradient all-reduce; reduce-scatter
// and all-gather for ZeRO-1, reduce to the owning rank and all-gather for ZeRO-2; scalar
// all-reduces for loss and gradient norm).
//
// One process per GPU. A process learns its place (rank, world size, local rank) in this order:
//   1. Started by mpirun, or by srun --mpi=pmix, in a build with MPI (USE_MPI): MPI_Init; the
//      NCCL unique id is broadcast with MPI_Bcast.
//   2. The environment: RANK / WORLD_SIZE / LOCAL_RANK [/ LOCAL_WORLD_SIZE] (set by the --nproc
//      launcher below, or by any other launcher); else srun's SLURM_PROCID / SLURM_STEP_NUM_TASKS
//      / SLURM_LOCALID; else, in a build without MPI, mpirun's OMPI_COMM_WORLD_*. The NCCL unique
//      id travels through a rendezvous file (--rendezvous PATH or GPT_RENDEZVOUS) on a filesystem
//      every rank sees: rank 0 writes PATH.tmp.<pid> and renames it to PATH, so a reader never
//      sees half a file; the others poll for PATH; rank 0 deletes it once the communicator is up.
//   3. None of these: a single process (no NCCL communicator; collectives become local copies,
//      so single-GPU training never depends on NCCL).
//
// `train_gpt2cu --nproc N ...` starts N local ranks: launch_local_workers_if_requested(), called
// first thing in main(), re-executes the program N times with RANK/WORLD_SIZE/LOCAL_RANK and a
// fresh rendezvous file in the environment (the --nproc flag removed from their arguments), waits
// for them, and when one fails stops the others and exits nonzero, naming the rank. With NNODES
// and NODE_RANK in the environment, one such launcher per node starts ranks NODE_RANK*N ..
// NODE_RANK*N+N-1 of NNODES*N, meeting through GPT_RENDEZVOUS on a shared filesystem.
//
// Failure handling (a rank that dies or hangs must not hang the others):
//   - The NCCL communicator is nonblocking (ncclConfig_t.blocking = 0): no NCCL call blocks the
//     host; a call that answers ncclInProgress is polled with ncclCommGetAsyncError up to the
//     timeout (--nccl-timeout, default 300 s). This bounds communicator setup too.
//   - Every collective is followed by an event on the communication stream. A watchdog thread
//     polls the oldest unfinished one (cudaEventQuery never blocks) and the communicator's
//     asynchronous error state. When a collective has been pending longer than the timeout, or
//     NCCL reports an error (a peer's connection closed), the watchdog prints which rank and
//     which operation, calls ncclCommAbort (which also stops the NCCL kernels that spin waiting
//     for the dead peer), and exits the process with status 1. Whatever the main thread was
//     blocked in (a stream synchronization, a device-to-host copy) does not matter. ncclCommAbort
//     itself is given 30 s (it has hung in some NCCL versions); then the process exits anyway.
//     So a dead peer stops every other rank within timeout + 1 s polling + 30 s at worst.
//   - Under the --nproc launcher, mpirun or srun, the launcher usually kills the other ranks as
//     soon as one dies; the watchdog covers hangs and launchers that do not.
//   - The timeout must exceed the longest time one rank can legitimately wait for the others at a
//     collective (e.g. a rank-0-only evaluation or checkpoint write between two collectives).
//
// NVLink SHARP (NVLS, multicast objects) is never used: NCCL_NVLS_ENABLE=0 is forced before the
// first NCCL call.
//
// Header-only; included by train_gpt2.cu and test programs compiled with nvcc. NCCL is used when
// USE_NCCL is defined, MPI when USE_MPI is defined (both come from the Makefile).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "kernels/common.cuh"

#ifdef USE_NCCL
#include <nccl.h>
#endif
#ifdef USE_MPI
// Only MPI's C API is used; its deprecated C++ bindings do not compile warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

extern char** environ;

namespace distributed {

// ---------------------------------------------------------------------------------------------
// Errors. Messages say which rank (when known), what went wrong and what to do.

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fatal(const char* format, ...) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: ");
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fprintf(stderr, "\n");
    std::exit(EXIT_FAILURE);
}

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

// ---------------------------------------------------------------------------------------------
// Where this process stands in the run, from its environment (discovery steps 2 and 3 above;
// step 1 needs MPI_Init and happens in DistributedContext).

enum class Launcher { SingleProcess, Mpi, Environment };

struct LaunchInfo {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;  // index of this process's GPU among the node's visible GPUs
    int local_size = 1;  // processes on this node; 0 when the launcher does not say
    Launcher launcher = Launcher::SingleProcess;
    std::string source = "single process";  // which variables said so, for the start-up table
};

// An integer environment variable, or nothing when unset. Rejects non-integers and values
// outside [min_value, max_value], naming the variable.
inline std::optional<int> env_int(const char* name, int min_value = 0, int max_value = INT_MAX) {
    const char* text = std::getenv(name);
    if (!text) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || value < min_value || value > max_value)
        fatal("environment variable %s='%s' is not an integer in [%d, %d]", name, text, min_value, max_value);
    return static_cast<int>(value);
}

// SLURM_STEP_TASKS_PER_NODE looks like "8", "8(x2)" or "8,4"; only a uniform count is a local size.
inline int slurm_uniform_tasks_per_node(const char* text) {
    if (!text || std::strchr(text, ',')) return 0;
    const int count = std::atoi(text);
    return count > 0 ? count : 0;
}

// True when an MPI launcher started this process (OpenMPI's mpirun, or PMIx/PMI under srun
// --mpi=... or MPICH's mpiexec).
inline bool started_by_mpi_launcher() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
}

// Reads rank / world size / local rank from the variables of one launcher family; fails with a
// message naming the variable when the set is incomplete or inconsistent.
inline LaunchInfo launch_info_from_variables(const char* rank_var, const char* world_var, const char* local_var,
                                             const char* source) {
    LaunchInfo info;
    const std::optional<int> world = env_int(world_var, 1);
    if (!world) fatal("%s is set but %s is not: a launcher must set both (the run's number of processes)", rank_var, world_var);
    const std::optional<int> rank = env_int(rank_var, 0, *world - 1);
    if (!rank) fatal("%s is set but %s is not: set %s to this process's index in [0, %d)", world_var, rank_var, rank_var, *world);
    const std::optional<int> local_rank = env_int(local_var, 0);
    if (!local_rank && *world > 1)
        fatal("%s=%d is set but %s is not: set %s to the index of this process's GPU on its node", rank_var, *rank,
              local_var, local_var);
    info.rank = *rank;
    info.world_size = *world;
    info.local_rank = local_rank.value_or(0);
    info.local_size = 0;
    info.launcher = Launcher::Environment;
    info.source = source;
    return info;
}

// Discovery without MPI: RANK/WORLD_SIZE, then srun's variables, then (only meaningful in a
// build without MPI) mpirun's, else a single process.
inline LaunchInfo launch_info_from_environment() {
    if (std::getenv("RANK") || std::getenv("WORLD_SIZE")) {
        LaunchInfo info = launch_info_from_variables("RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK/WORLD_SIZE/LOCAL_RANK");
        info.local_size = env_int("LOCAL_WORLD_SIZE", 1).value_or(0);
        return info;
    }
    // SLURM_STEP_NUM_TASKS exists only inside an srun step: a batch script's own environment
    // also has SLURM_PROCID=0 and SLURM_NTASKS, but is not one of the run's processes.
    if (std::getenv("SLURM_STEP_NUM_TASKS") && std::getenv("SLURM_PROCID")) {
        LaunchInfo info = launch_info_from_variables("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "srun (SLURM_PROCID)");
        info.local_size = slurm_uniform_tasks_per_node(std::getenv("SLURM_STEP_TASKS_PER_NODE"));
        return info;
    }
    if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
        LaunchInfo info = launch_info_from_variables("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                                     "OMPI_COMM_WORLD_LOCAL_RANK", "mpirun environment (build without MPI)");
        info.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1).value_or(0);
        return info;
    }
    return LaunchInfo{};
}

// ---------------------------------------------------------------------------------------------
// Shared-file rendezvous: rank 0 publishes a small payload (the NCCL unique id); every other rank
// waits for it. File layout: 8-byte magic, int32 world size, int32 payload size, the payload.

constexpr char kRendezvousMagic[8] = {'G', 'P', 'T', 'R', 'D', 'Z', 'V', '1'};

inline std::string rendezvous_path_from(const std::string& flag_value) {
    if (!flag_value.empty()) return flag_value;
    const char* env = std::getenv("GPT_RENDEZVOUS");
    return env ? env : "";
}

inline std::vector<char> read_whole_file(const std::string& path, bool* exists) {
    std::vector<char> bytes;
    FILE* file = std::fopen(path.c_str(), "rb");
    *exists = file != nullptr;
    if (!file) return bytes;
    char buffer[4096];
    size_t got = 0;
    while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + got);
    std::fclose(file);
    return bytes;
}

// Rank 0: writes `payload` to `path` atomically and returns it. Other ranks: poll `path` every
// 50 ms for up to timeout_s seconds and return the payload rank 0 wrote. A file left over from
// an earlier run would hand out a stale id, so rank 0 refuses to start when `path` exists.
inline std::vector<char> rendezvous_broadcast(const std::string& path, int rank, int world_size,
                                              const std::vector<char>& payload, double timeout_s) {
    const size_t header_bytes = sizeof kRendezvousMagic + 2 * sizeof(int32_t);
    if (rank == 0) {
        struct stat existing;
        if (stat(path.c_str(), &existing) == 0)
            fatal("rank 0: rendezvous file %s already exists (left over from an earlier run?): delete it, or give each "
                  "run its own path with --rendezvous / GPT_RENDEZVOUS",
                  path.c_str());
        const std::string temporary = path + ".tmp." + std::to_string(getpid());
        FILE* file = std::fopen(temporary.c_str(), "wb");
        if (!file)
            fatal("rank 0: cannot create rendezvous file %s: %s (its directory must exist and be writable, on a "
                  "filesystem every rank sees)",
                  temporary.c_str(), std::strerror(errno));
        const int32_t sizes[2] = {world_size, static_cast<int32_t>(payload.size())};
        const bool written = std::fwrite(kRendezvousMagic, sizeof kRendezvousMagic, 1, file) == 1 &&
                             std::fwrite(sizes, sizeof sizes, 1, file) == 1 &&
                             (payload.empty() || std::fwrite(payload.data(), payload.size(), 1, file) == 1);
        if (std::fclose(file) != 0 || !written || std::rename(temporary.c_str(), path.c_str()) != 0) {
            const int error = errno;
            std::remove(temporary.c_str());
            fatal("rank 0: cannot write rendezvous file %s: %s", path.c_str(), std::strerror(error));
        }
        return payload;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        bool exists = false;
        const std::vector<char> bytes = read_whole_file(path, &exists);
        if (exists && bytes.size() >= header_bytes) {
            if (std::memcmp(bytes.data(), kRendezvousMagic, sizeof kRendezvousMagic) != 0)
                fatal("rank %d: %s is not a rendezvous file written by this program: choose another --rendezvous path",
                      rank, path.c_str());
            int32_t sizes[2];
            std::memcpy(sizes, bytes.data() + sizeof kRendezvousMagic, sizeof sizes);
            if (sizes[0] != world_size)
                fatal("rank %d: rendezvous file %s was written by a run of %d processes, but this one has WORLD_SIZE=%d: "
                      "every rank must get the same world size (or delete the stale file)",
                      rank, path.c_str(), sizes[0], world_size);
            if (bytes.size() == header_bytes + static_cast<size_t>(sizes[1]))
                return std::vector<char>(bytes.begin() + header_bytes, bytes.end());
        }
        if (std::chrono::steady_clock::now() > deadline)
            fatal("rank %d: rank 0 did not publish the rendezvous file %s within %.0f s: check that rank 0 started, that "
                  "every rank was given the same path, and that the path is on a filesystem all nodes share "
                  "(--nccl-timeout sets the limit)",
                  rank, path.c_str(), timeout_s);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The --nproc launcher.

// Parses the value of --nproc; fails naming the flag.
inline int parse_nproc(const char* text) {
    char* end = nullptr;
    errno = 0;
    const long value = text ? std::strtol(text, &end, 10) : 0;
    if (!text || *text == '\0' || *end != '\0' || errno == ERANGE || value < 1 || value > 1024)
        fatal("--nproc: expected the number of local processes to start (one per GPU, 1..1024), got '%s'",
              text ? text : "(nothing)");
    return static_cast<int>(value);
}

namespace detail {

// The launcher's wait loop polls; these record a SIGINT/SIGTERM/SIGHUP sent to it so that it
// forwards the stop to its ranks instead of leaving them orphaned.
inline volatile sig_atomic_t& launcher_signal() {
    static volatile sig_atomic_t received = 0;
    return received;
}
inline void record_launcher_signal(int signal_number) { launcher_signal() = signal_number; }

inline std::string describe_exit(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "stopped (status " + std::to_string(status) + ")";
}

inline int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return EXIT_FAILURE;
}

}  // namespace detail

// Starts ranks node_rank*nproc .. node_rank*nproc+nproc-1 of nnodes*nproc by re-executing this
// program (/proc/self/exe) with `worker_args` (argv without --nproc) and RANK / WORLD_SIZE /
// LOCAL_RANK / LOCAL_WORLD_SIZE / GPT_RENDEZVOUS in their environment. Returns 0 when every rank
// exits 0. When a rank fails, prints which, stops the others (SIGTERM, SIGKILL 10 s later) and
// returns the failed rank's exit status (128 + signal for a signal).
inline int launch_local_workers(int nproc, const std::vector<std::string>& worker_args) {
    if (std::getenv("NODE_RANK") && !std::getenv("NNODES"))
        fatal("--nproc: NODE_RANK is set but NNODES is not: set NNODES to the number of nodes (one launcher each)");
    const int nnodes = env_int("NNODES", 1, 4096).value_or(1);
    const int node_rank = env_int("NODE_RANK", 0, nnodes - 1).value_or(0);
    const int world_size = nnodes * nproc;

    // One node: a fresh private rendezvous file. Several: the shared path every launcher got.
    std::string rendezvous_dir;
    std::string rendezvous = rendezvous_path_from("");
    if (nnodes > 1 && rendezvous.empty())
        fatal("--nproc with NNODES=%d: set GPT_RENDEZVOUS to a file path on a filesystem all nodes share, the same "
              "for every node and fresh for each run",
              nnodes);
    if (rendezvous.empty()) {
        const char* tmpdir = std::getenv("TMPDIR");
        std::string pattern = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/gpt2cu-rendezvous-XXXXXX";
        if (!mkdtemp(pattern.data()))
            fatal("--nproc: cannot create a rendezvous directory %s: %s (set TMPDIR to a writable directory)",
                  pattern.c_str(), std::strerror(errno));
        rendezvous_dir = pattern;
        rendezvous = rendezvous_dir + "/nccl_id";
    }

    // Everything a child needs is built before fork(): after it, the child only calls
    // async-signal-safe functions.
    const char* overridden[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "GPT_RENDEZVOUS="};
    std::vector<std::string> base_env;
    for (char** entry = environ; *entry; ++entry) {
        bool keep = true;
        for (const char* prefix : overridden) keep = keep && std::strncmp(*entry, prefix, std::strlen(prefix)) != 0;
        if (keep) base_env.push_back(*entry);
    }
    std::vector<char*> argv_pointers;
    for (const std::string& arg : worker_args) argv_pointers.push_back(const_cast<char*>(arg.c_str()));
    argv_pointers.push_back(nullptr);
    std::vector<std::vector<std::string>> env_strings(nproc, base_env);
    std::vector<std::vector<char*>> env_pointers(nproc);
    for (int local = 0; local < nproc; ++local) {
        std::vector<std::string>& env = env_strings[local];
        env.push_back("RANK=" + std::to_string(node_rank * nproc + local));
        env.push_back("WORLD_SIZE=" + std::to_string(world_size));
        env.push_back("LOCAL_RANK=" + std::to_string(local));
        env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
        env.push_back("GPT_RENDEZVOUS=" + rendezvous);
        for (std::string& entry : env) env_pointers[local].push_back(entry.data());
        env_pointers[local].push_back(nullptr);
    }

    struct sigaction action {};
    action.sa_handler = detail::record_launcher_signal;
    sigemptyset(&action.sa_mask);
    struct sigaction previous[3];
    const int forwarded_signals[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; ++i) sigaction(forwarded_signals[i], &action, &previous[i]);

    const pid_t launcher_pid = getpid();
    std::map<pid_t, int> running;  // pid -> local index
    auto stop_all = [&](int signal_number) {
        for (const auto& [pid, local] : running) kill(pid, signal_number);
    };
    for (int local = 0; local < nproc; ++local) {
        const pid_t pid = fork();
        if (pid < 0) {
            std::fprintf(stderr, "[launcher] fork failed for rank %d: %s\n", node_rank * nproc + local, std::strerror(errno));
            stop_all(SIGKILL);
            break;
        }
        if (pid == 0) {
            // A rank must not outlive its launcher (killed with SIGKILL, it cannot stop them).
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != launcher_pid) _exit(EXIT_FAILURE);
            // The launcher's stop signals must end a rank even before its execve.
            for (int i = 0; i < 3; ++i) signal(forwarded_signals[i], SIG_DFL);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, nullptr);
            execve("/proc/self/exe", argv_pointers.data(), env_pointers[local].data());
            const char message[] = "[launcher] execve(/proc/self/exe) failed in a child\n";
            ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
            (void)ignored;
            _exit(127);
        }
        running[pid] = local;
    }
    const bool all_started = static_cast<int>(running.size()) == nproc;

    int result = all_started ? 0 : EXIT_FAILURE;
    bool stopping = !all_started;
    auto kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!running.empty()) {
        int status = 0;
        const pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            const auto found = running.find(pid);
            if (found == running.end()) continue;
            const int rank = node_rank * nproc + found->second;
            running.erase(found);
            const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            if (failed && !stopping) {
                std::fprintf(stderr, "[launcher] rank %d (pid %d) %s; stopping the other %zu rank(s)\n", rank,
                             static_cast<int>(pid), detail::describe_exit(status).c_str(), running.size());
                result = detail::exit_code_of(status);
                if (result == 0) result = EXIT_FAILURE;
                stopping = true;
                kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                stop_all(SIGTERM);
            }
            continue;
        }
        if (pid < 0 && errno != EINTR) break;  // ECHILD: nothing left to wait for
        if (detail::launcher_signal() != 0 && !stopping) {
            std::fprintf(stderr, "[launcher] received signal %d (%s); stopping the %zu rank(s)\n",
                         static_cast<int>(detail::launcher_signal()), strsignal(detail::launcher_signal()), running.size());
            result = 128 + detail::launcher_signal();
            stopping = true;
            kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            stop_all(SIGTERM);
        }
        if (stopping && std::chrono::steady_clock::now() > kill_deadline) {
            stop_all(SIGKILL);
            kill_deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (int i = 0; i < 3; ++i) sigaction(forwarded_signals[i], &previous[i], nullptr);

    if (!rendezvous_dir.empty()) {
        std::remove(rendezvous.c_str());  // present only when a rank died before the communicator was up
        rmdir(rendezvous_dir.c_str());
    }
    if (result != 0) std::fprintf(stderr, "[launcher] run failed (exit status %d)\n", result);
    return result;
}

// Call first thing in main(): `if (auto code = distributed::launch_local_workers_if_requested(argc, argv)) return *code;`
// With `--nproc N` (or --nproc=N) in argv, runs the launcher above and returns its exit status;
// otherwise returns nothing and this process is a rank (or the only process).
inline std::optional<int> launch_local_workers_if_requested(int argc, char** argv) {
    std::optional<int> nproc;
    std::vector<std::string> worker_args;
    for (int i = 0; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i > 0 && arg == "--nproc") {
            nproc = parse_nproc(i + 1 < argc ? argv[i + 1] : nullptr);
            ++i;
        } else if (i > 0 && arg.rfind("--nproc=", 0) == 0) {
            nproc = parse_nproc(arg.c_str() + std::strlen("--nproc="));
        } else {
            worker_args.push_back(arg);
        }
    }
    if (!nproc) return std::nullopt;
    if (std::getenv("RANK") || std::getenv("WORLD_SIZE") || started_by_mpi_launcher() ||
        env_int("SLURM_STEP_NUM_TASKS", 1).value_or(1) > 1)
        fatal("--nproc starts its own local processes; it cannot be combined with mpirun, with srun of several "
              "tasks, or with RANK/WORLD_SIZE in the environment: drop --nproc, or launch a single process");
    return launch_local_workers(*nproc, worker_args);
}

// ---------------------------------------------------------------------------------------------
// Sharding a flat array over ranks (ZeRO-1 and ZeRO-2).
//
// NCCL's reduce-scatter and all-gather move equal counts per rank, so the array is padded up to
// a multiple of world_size * alignment elements and every rank owns an equal shard; `alignment`
// (in elements) keeps every shard's start aligned for 16-byte vector access and NCCL's fast
// paths. Callers allocate padded_count elements and keep the padding zero.
struct Shard {
    size_t padded_count = 0;  // total elements including padding, a multiple of world_size * alignment
    size_t shard_count = 0;   // padded_count / world_size
    size_t begin = 0;         // this rank's range in the padded array: [begin, end)
    size_t end = 0;
    size_t valid_end = 0;     // min(end, count): elements past it (if any) are padding
};

inline Shard shard_of(size_t count, int rank, int world_size, size_t alignment = 128) {
    REQUIRE(world_size >= 1 && rank >= 0 && rank < world_size && alignment >= 1,
            "shard_of: rank %d of world size %d, alignment %zu", rank, world_size, alignment);
    Shard shard;
    const size_t granule = static_cast<size_t>(world_size) * alignment;
    shard.padded_count = (count + granule - 1) / granule * granule;
    shard.shard_count = shard.padded_count / world_size;
    shard.begin = static_cast<size_t>(rank) * shard.shard_count;
    shard.end = shard.begin + shard.shard_count;
    shard.valid_end = std::max(shard.begin, std::min(shard.end, count));
    return shard;
}

// ---------------------------------------------------------------------------------------------
// The runtime context.

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

// Writes everything buffered on stdout without waiting on a lock another thread might hold.
inline void flush_stdout_if_possible() {
    if (ftrylockfile(stdout) == 0) {
        fflush_unlocked(stdout);
        funlockfile(stdout);
    }
}

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
        select_device();
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
            create_communicator(options);
            watchdog_ = std::thread([this] { watchdog_loop(); });
        }
    }

    DistributedContext(const DistributedContext&) = delete;
    DistributedContext& operator=(const DistributedContext&) = delete;

    ~DistributedContext() {
        synchronize();
        if (watchdog_.joinable()) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                stopping_ = true;
            }
            wake_watchdog_.notify_all();
            watchdog_.join();
        }
#ifdef USE_NCCL
        if (comm) {
            wait_for_nccl(ncclCommFinalize(comm), "ncclCommFinalize", __FILE__, __LINE__);
            ncclCommDestroy(comm);
        }
#endif
        for (const Pending& pending : pending_) cudaEventDestroy(pending.event);
        for (cudaEvent_t event : free_events_) cudaEventDestroy(event);
        cudaEventDestroy(compute_done_);
        cudaEventDestroy(comm_done_);
        cudaFreeHost(host_scalar_);
        cudaFree(device_scalar_);
        cudaStreamDestroy(comm_stream);
#ifdef USE_MPI
        if (initialized_mpi_) MPI_Finalize();
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
    // recv == send + rank * recv_count. See shard_of() for the padding.
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
        std::lock_guard<std::mutex> lock(mutex_);
        cudaEvent_t event = nullptr;
        if (free_events_.empty()) {
            CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        } else {
            event = free_events_.back();
            free_events_.pop_back();
        }
        CUDA_CHECK(cudaEventRecord(event, stream));
        pending_.push_back({event, what, std::chrono::steady_clock::now()});
    }

  private:
    struct Pending {
        cudaEvent_t event;
        std::string what;
        std::chrono::steady_clock::time_point enqueued;
    };

    cudaEvent_t compute_done_ = nullptr;  // recorded on the compute stream, waited on by comm_stream
    cudaEvent_t comm_done_ = nullptr;     // recorded on comm_stream, waited on by the compute stream
    float* host_scalar_ = nullptr;        // pinned (1)
    float* device_scalar_ = nullptr;      // (1)
    bool initialized_mpi_ = false;
    int group_depth_ = 0;  // > 0 between group_begin() and group_end()

    std::thread watchdog_;
    std::mutex mutex_;  // guards pending_, free_events_, stopping_
    std::condition_variable wake_watchdog_;
    std::deque<Pending> pending_;  // in enqueue order; comm_stream completes them in that order
    std::vector<cudaEvent_t> free_events_;
    bool stopping_ = false;
    std::atomic<bool> aborting_{false};

    template <typename T> void local_copy(const T* send, T* recv, size_t count) {
        if (send != recv && count > 0)
            CUDA_CHECK(cudaMemcpyAsync(recv, send, count * sizeof(T), cudaMemcpyDeviceToDevice, comm_stream));
    }

    void discover_ranks() {
#ifdef USE_MPI
        if (started_by_mpi_launcher()) {
            discover_ranks_with_mpi();
            return;
        }
#endif
        launch = launch_info_from_environment();
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

#ifdef USE_MPI
    void discover_ranks_with_mpi() {
        // The local rank from the launcher's environment lets the device be chosen before
        // MPI_Init (a CUDA-aware MPI may create a context on the current device).
        for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
            if (const std::optional<int> launcher_rank = env_int(name, 0)) {
                rank = *launcher_rank;  // for messages until MPI says
                break;
            }
        }
        for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
            if (const std::optional<int> local = env_int(name, 0)) {
                local_rank = *local;
                select_device();
                break;
            }
        }
        // FUNNELED: only the main thread calls MPI, but NCCL and the watchdog run threads too.
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        initialized_mpi_ = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world_size);
        MPI_Comm node_comm;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm);
        MPI_Comm_rank(node_comm, &local_rank);
        MPI_Comm_size(node_comm, &local_size);
        MPI_Comm_free(&node_comm);
        const int slurm_tasks = env_int("SLURM_STEP_NUM_TASKS", 1).value_or(1);
        if (world_size == 1 && slurm_tasks > 1)
            fatal("srun started %d tasks but MPI sees each as a single process: use srun --mpi=pmix (or the MPI "
                  "plugin your cluster's OpenMPI was built for), or run without MPI through GPT_RENDEZVOUS",
                  slurm_tasks);
        launch.rank = rank;
        launch.world_size = world_size;
        launch.local_rank = local_rank;
        launch.local_size = local_size;
        launch.launcher = Launcher::Mpi;
        launch.source = "MPI";
#ifndef USE_NCCL
        if (world_size > 1)
            fatal("rank %d of %d (MPI): this build has no NCCL, so it runs on one GPU only: install NCCL (or set "
                  "NCCL_HOME) and rebuild with make",
                  rank, world_size);
#endif
    }
#endif

    // Every rank drives GPU local_rank of its node; done before anything else touches CUDA.
    void select_device() {
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
        device = local_rank;
        CUDA_CHECK(cudaSetDevice(device));
    }

    void create_communicator(const DistributedOptions& options) {
#ifdef USE_NCCL
        ncclUniqueId id;
        if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
        if (launch.launcher == Launcher::Mpi) {
#ifdef USE_MPI
            MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
        } else {
            const std::string path = rendezvous_path_from(options.rendezvous_path);
            if (path.empty())
                fatal("rank %d of %d (%s): the ranks need a rendezvous to exchange the NCCL id: pass --rendezvous PATH "
                      "(or set GPT_RENDEZVOUS) to a fresh file path on a filesystem all ranks share, the same for "
                      "every rank; or launch with mpirun, or with --nproc on one node",
                      rank, world_size, launch.source.c_str());
            std::vector<char> payload;
            if (rank == 0) payload.assign(id.internal, id.internal + sizeof id.internal);
            payload = rendezvous_broadcast(path, rank, world_size, payload, timeout_s);
            if (payload.size() != sizeof id.internal)
                fatal("rank %d: rendezvous file %s holds %zu bytes, not an NCCL id (%zu bytes): delete it and restart",
                      rank, path.c_str(), payload.size(), sizeof id.internal);
            std::memcpy(id.internal, payload.data(), sizeof id.internal);
        }
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        wait_for_nccl(ncclCommInitRankConfig(&comm, world_size, id, rank, &config),
                      "communicator setup (ncclCommInitRankConfig): not every rank joined", __FILE__, __LINE__);
        if (rank == 0 && launch.launcher != Launcher::Mpi)
            std::remove(rendezvous_path_from(options.rendezvous_path).c_str());
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
                abort_and_exit(reason);
            }
            if (now - start < std::chrono::milliseconds(2)) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(50));
            if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) result = ncclInternalError;
        }
        if (result != ncclSuccess) {
            char reason[768];
            std::snprintf(reason, sizeof reason, "NCCL error in %s: %s (%s) at %s:%d", what,
                          ncclGetErrorString(result), ncclGetLastError(comm), file, line);
            abort_and_exit(reason);
        }
    }
#endif

    // Runs on its own thread for the life of a multi-rank context: see the top of this file.
    void watchdog_loop() {
        cudaSetDevice(device);
        // A CUDA graph captured in the global mode by the main thread forbids "unsafe" calls on
        // every thread in that mode; an event query of unrelated work is safe, so this thread opts out.
        cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&relaxed);
        const auto poll_interval = std::chrono::duration<double>(std::min(1.0, timeout_s / 10));
        std::unique_lock<std::mutex> lock(mutex_);
        while (!stopping_) {
            wake_watchdog_.wait_for(lock, poll_interval);
            if (aborting_) return;  // the main thread is aborting the communicator: hands off it
            while (!pending_.empty()) {
                const cudaError_t status = cudaEventQuery(pending_.front().event);
                if (status == cudaErrorNotReady) break;
                if (status != cudaSuccess) {
                    const std::string reason = "CUDA error while \"" + pending_.front().what +
                                               "\" was in flight: " + cudaGetErrorString(status);
                    lock.unlock();
                    abort_and_exit(reason.c_str());
                }
                free_events_.push_back(pending_.front().event);
                pending_.pop_front();
            }
#ifdef USE_NCCL
            ncclResult_t async_error = ncclSuccess;
            ncclCommGetAsyncError(comm, &async_error);
            if (async_error != ncclSuccess && async_error != ncclInProgress) {
                const std::string reason = std::string("NCCL reported ") + ncclGetErrorString(async_error) + " (" +
                                           ncclGetLastError(comm) + ")" +
                                           (pending_.empty() ? "" : " during \"" + pending_.front().what + "\"") +
                                           ": a peer rank probably failed";
                lock.unlock();
                abort_and_exit(reason.c_str());
            }
#endif
            if (!pending_.empty()) {
                const double waited =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - pending_.front().enqueued).count();
                if (waited > timeout_s) {
                    char reason[512];
                    std::snprintf(reason, sizeof reason,
                                  "\"%s\" did not complete within %.0f s: another rank probably died or hung",
                                  pending_.front().what.c_str(), timeout_s);
                    lock.unlock();
                    abort_and_exit(reason);
                }
            }
        }
    }

    // Ends this process after an unrecoverable communication failure (from any thread, once).
    [[noreturn]] void abort_and_exit(const char* reason) {
        if (aborting_.exchange(true)) {
            for (;;) pause();  // another thread is already aborting and will end the process
        }
        flush_stdout_if_possible();
        std::fprintf(stderr,
                     "[rank %d] distributed failure: %s\n"
                     "[rank %d] aborting the NCCL communicator and exiting; look at the other ranks' output for the "
                     "first failure, then resume from the last checkpoint (--nccl-timeout sets the limit, now %.0f s)\n",
                     rank, reason, rank, timeout_s);
        std::thread([rank = rank] {
            std::this_thread::sleep_for(std::chrono::seconds(30));
            std::fprintf(stderr, "[rank %d] ncclCommAbort did not return within 30 s; exiting anyway\n", rank);
            _exit(EXIT_FAILURE);
        }).detach();
#ifdef USE_NCCL
        if (comm) ncclCommAbort(comm);
#endif
        _exit(EXIT_FAILURE);
    }
};

}  // namespace distributed
