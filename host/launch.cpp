// The launcher and the environment discovery; see launch.h.
#include "host/launch.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/rendezvous.h"
#include "host/stop_request.h"

extern char** environ;

namespace distributed {

void fatal(const char* format, ...) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: ");
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fprintf(stderr, "\n");
    std::exit(EXIT_FAILURE);
}

// ---------------------------------------------------------------------------------------------
// Discovery.

std::optional<int> env_int(const char* name, int min_value, int max_value) {
    const char* text = std::getenv(name);
    if (!text) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || value < min_value || value > max_value)
        fatal("environment variable %s='%s' is not an integer in [%d, %d]", name, text, min_value, max_value);
    return static_cast<int>(value);
}

int slurm_uniform_tasks_per_node(const char* text) {
    if (!text || std::strchr(text, ',')) return 0;
    const int count = std::atoi(text);
    return count > 0 ? count : 0;
}

bool started_by_mpi_launcher() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
}

LaunchInfo launch_info_from_variables(const char* rank_var, const char* world_var, const char* local_var,
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

LaunchInfo launch_info_from_environment() {
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
// The --nproc launcher.

int parse_nproc(const char* text) {
    char* end = nullptr;
    errno = 0;
    const long value = text ? std::strtol(text, &end, 10) : 0;
    if (!text || *text == '\0' || *end != '\0' || errno == ERANGE || value < 1 || value > 1024)
        fatal("--nproc: expected the number of local processes to start (one per GPU, 1..1024), got '%s'",
              text ? text : "(nothing)");
    return static_cast<int>(value);
}

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "stopped (status " + std::to_string(status) + ")";
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return EXIT_FAILURE;
}

namespace {

// The launcher's wait loop polls; this records each SIGINT/SIGTERM/SIGHUP/SIGUSR1 sent to it so
// that it forwards the stop to its ranks instead of leaving them orphaned. A signal handler can
// only reach static storage.
volatile sig_atomic_t launcher_signal = 0;           // the latest one
volatile sig_atomic_t launcher_signals_received = 0;  // how many so far
void record_launcher_signal(int signal_number) {
    launcher_signal = signal_number;
    launcher_signals_received = launcher_signals_received + 1;
}

constexpr int kForwardedSignals[4] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
constexpr int kNumForwarded = 4;
// A rank asked to stop finishes its step and writes a checkpoint (host/stop_request.h), which
// for a large model takes a while; it is killed only after this, or on the next signal.
constexpr auto kStopGrace = std::chrono::minutes(15);

// What every rank's execve needs, built before fork(): after it, the child only calls
// async-signal-safe functions. The pointer arrays point into the strings, so it stays in place.
struct WorkerExec {
    std::vector<char*> argv;
    std::vector<std::vector<std::string>> env_strings;  // per local rank
    std::vector<std::vector<char*>> env;                // per local rank, pointing into env_strings
    std::string exec_failed;                            // the child's message when execve fails

    WorkerExec(const std::string& program, int nproc, int node_rank, int world_size, const std::string& rendezvous,
               const std::vector<std::string>& worker_args) {
        const char* overridden[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "GPT_RENDEZVOUS="};
        std::vector<std::string> base_env;
        for (char** entry = environ; *entry; ++entry) {
            bool keep = true;
            for (const char* prefix : overridden) keep = keep && std::strncmp(*entry, prefix, std::strlen(prefix)) != 0;
            if (keep) base_env.push_back(*entry);
        }
        for (const std::string& arg : worker_args) argv.push_back(const_cast<char*>(arg.c_str()));
        argv.push_back(nullptr);
        env_strings.assign(nproc, base_env);
        env.resize(nproc);
        for (int local = 0; local < nproc; ++local) {
            std::vector<std::string>& strings = env_strings[local];
            strings.push_back("RANK=" + std::to_string(node_rank * nproc + local));
            strings.push_back("WORLD_SIZE=" + std::to_string(world_size));
            strings.push_back("LOCAL_RANK=" + std::to_string(local));
            strings.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
            strings.push_back("GPT_RENDEZVOUS=" + rendezvous);
            for (std::string& entry : strings) env[local].push_back(entry.data());
            env[local].push_back(nullptr);
        }
        exec_failed = "[launcher] execve(" + program + ") failed in a child\n";
    }
    WorkerExec(const WorkerExec&) = delete;
    WorkerExec& operator=(const WorkerExec&) = delete;
};

}  // namespace

int launch_workers(const std::string& program, int nproc, const std::vector<std::string>& worker_args) {
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
    const WorkerExec exec(program, nproc, node_rank, world_size, rendezvous, worker_args);

    launcher_signal = 0;
    launcher_signals_received = 0;
    struct sigaction action {};
    action.sa_handler = record_launcher_signal;
    sigemptyset(&action.sa_mask);
    struct sigaction previous[kNumForwarded];
    for (int i = 0; i < kNumForwarded; ++i) sigaction(kForwardedSignals[i], &action, &previous[i]);

    const pid_t launcher_pid = getpid();
    std::map<pid_t, int> running;  // pid -> local index
    auto stop_all = [&](int signal_number) {
        for (const auto& [pid, local] : running) kill(pid, signal_number);
    };
    // The stop signals stay blocked from before each fork until the child has reset their
    // handlers: one arriving in between (the launcher stops the others as soon as one rank fails)
    // would otherwise run the launcher's handler in the child and be lost, leaving the rank to be
    // killed only by the SIGKILL later. A blocked signal waits and then takes its default action.
    sigset_t forwarded, unblocked;
    sigemptyset(&forwarded);
    for (int i = 0; i < kNumForwarded; ++i) sigaddset(&forwarded, kForwardedSignals[i]);
    for (int local = 0; local < nproc; ++local) {
        sigprocmask(SIG_BLOCK, &forwarded, &unblocked);
        const pid_t pid = fork();
        if (pid != 0) sigprocmask(SIG_SETMASK, &unblocked, nullptr);
        if (pid < 0) {
            std::fprintf(stderr, "[launcher] fork failed for rank %d: %s\n", node_rank * nproc + local, std::strerror(errno));
            stop_all(SIGKILL);
            break;
        }
        if (pid == 0) {
            // A rank must not outlive its launcher (killed with SIGKILL, it cannot stop them).
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != launcher_pid) _exit(EXIT_FAILURE);
            // The launcher's stop signals must end a rank even before its execve: default
            // actions first, then unblocked (a signal that came meanwhile is delivered now).
            for (int i = 0; i < kNumForwarded; ++i) signal(kForwardedSignals[i], SIG_DFL);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, nullptr);
            execve(program.c_str(), exec.argv.data(), exec.env[local].data());
            ssize_t ignored = write(STDERR_FILENO, exec.exec_failed.data(), exec.exec_failed.size());
            (void)ignored;
            _exit(127);
        }
        running[pid] = local;
    }
    const bool all_started = static_cast<int>(running.size()) == nproc;

    int result = all_started ? 0 : EXIT_FAILURE;
    bool stopping = !all_started;
    // Stopping on request (a signal, or a rank that stopped on one): every rank should exit with
    // kExitStopped after its checkpoint, and the launcher then returns it too.
    bool stop_requested = false;
    bool all_stopped_cleanly = true;
    int signals_handled = 0;
    auto kill_deadline = std::chrono::steady_clock::now() + kStopGrace;
    while (!running.empty()) {
        int status = 0;
        const pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            const auto found = running.find(pid);
            if (found == running.end()) continue;
            const int rank = node_rank * nproc + found->second;
            running.erase(found);
            const bool stopped_on_request = WIFEXITED(status) && WEXITSTATUS(status) == kExitStopped;
            all_stopped_cleanly = all_stopped_cleanly && stopped_on_request;
            if (stopped_on_request && !stopping) {  // a signal reached the ranks, not the launcher
                stopping = stop_requested = true;
                kill_deadline = std::chrono::steady_clock::now() + kStopGrace;
                continue;
            }
            const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            if (failed && !stopped_on_request && (!stopping || stop_requested)) {
                std::fprintf(stderr, "[launcher] rank %d (pid %d) %s; stopping the other %zu rank(s)\n", rank,
                             static_cast<int>(pid), describe_exit(status).c_str(), running.size());
                result = exit_code_of(status);
                if (result == 0) result = EXIT_FAILURE;
                stopping = true;
                stop_requested = false;
                // The others cannot finish a step without it (SIGTERM would only ask them to try,
                // host/stop_request.h), so they end now.
                stop_all(SIGKILL);
            }
            continue;
        }
        if (pid < 0 && errno != EINTR) break;  // ECHILD: nothing left to wait for
        const int received_count = launcher_signals_received;
        if (received_count != signals_handled) {
            signals_handled = received_count;
            const int received = launcher_signal;
            // The ranks see the same request (SIGHUP as SIGTERM); a second one makes them exit at once.
            const int forward = received == SIGHUP ? SIGTERM : received;
            std::fprintf(stderr, "[launcher] received signal %d (%s); %s the %zu rank(s)\n", received,
                         strsignal(received), stop_requested ? "passing it on to" : "stopping", running.size());
            if (!stopping) {
                result = 128 + received;
                stopping = stop_requested = true;
                kill_deadline = std::chrono::steady_clock::now() + kStopGrace;
            }
            stop_all(forward);
        }
        if (stopping && std::chrono::steady_clock::now() > kill_deadline) {
            stop_all(SIGKILL);
            kill_deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (int i = 0; i < kNumForwarded; ++i) sigaction(kForwardedSignals[i], &previous[i], nullptr);
    if (stop_requested && all_stopped_cleanly && all_started) result = kExitStopped;

    if (!rendezvous_dir.empty()) {
        std::remove(rendezvous.c_str());  // present only when a rank died before the communicator was up
        rmdir(rendezvous_dir.c_str());
    }
    if (result == kExitStopped)
        std::fprintf(stderr, "[launcher] every rank stopped on request after its checkpoint (exit status %d)\n", result);
    else if (result != 0)
        std::fprintf(stderr, "[launcher] run failed (exit status %d)\n", result);
    return result;
}

int launch_local_workers(int nproc, const std::vector<std::string>& worker_args) {
    return launch_workers("/proc/self/exe", nproc, worker_args);
}

std::optional<int> launch_local_workers_if_requested(int argc, char** argv) {
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

}  // namespace distributed
