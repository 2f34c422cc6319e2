// How the processes of one run are started and where each one stands in it (plain C++, no CUDA,
// NCCL or MPI; the implementation lives in launch.cpp).
//
// One process per GPU. A process learns its place (rank, world size, local rank) in this order:
//   1. Started by mpirun, or by srun --mpi=pmix, in a build with MPI: MPI_Init
//      (train/nccl_context.cuh; started_by_mpi_launcher() below tells that this is the case).
//   2. The environment (launch_info_from_environment): RANK / WORLD_SIZE / LOCAL_RANK
//      [/ LOCAL_WORLD_SIZE] (set by the --nproc launcher below, or by any other launcher); else
//      srun's SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID; else, in a build without MPI,
//      mpirun's OMPI_COMM_WORLD_*. The ranks then meet through a rendezvous file
//      (host/rendezvous.h).
//   3. None of these: a single process.
//
// `train_gpt2cu --nproc N ...` starts N local ranks: launch_local_workers_if_requested(), called
// first thing in main(), re-executes the program N times with RANK/WORLD_SIZE/LOCAL_RANK and a
// fresh rendezvous file in the environment (the --nproc flag removed from their arguments), waits
// for them, and when one fails stops the others and exits nonzero, naming the rank. With NNODES
// and NODE_RANK in the environment, one such launcher per node starts ranks NODE_RANK*N ..
// NODE_RANK*N+N-1 of NNODES*N, meeting through GPT_RENDEZVOUS on a shared filesystem.
//
// Errors in the environment or the flags end the process with a message that names the variable
// or flag and says what to do (fatal()).
#pragma once

#include <climits>
#include <optional>
#include <string>
#include <vector>

namespace distributed {

// Prints "error: <message>" to stderr (after flushing stdout) and exits with EXIT_FAILURE.
[[noreturn]] __attribute__((format(printf, 1, 2))) void fatal(const char* format, ...);

// ---------------------------------------------------------------------------------------------
// Where this process stands in the run, from its environment (discovery steps 2 and 3 above).

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
std::optional<int> env_int(const char* name, int min_value = 0, int max_value = INT_MAX);

// SLURM_STEP_TASKS_PER_NODE looks like "8", "8(x2)" or "8,4"; only a uniform count is a local
// size: returns it, or 0 (also for null or unreadable text).
int slurm_uniform_tasks_per_node(const char* text);

// True when an MPI launcher started this process (OpenMPI's mpirun, or PMIx/PMI under srun
// --mpi=... or MPICH's mpiexec).
bool started_by_mpi_launcher();

// Reads rank / world size / local rank from the variables of one launcher family; fails with a
// message naming the variable when the set is incomplete or inconsistent. local_size is 0.
LaunchInfo launch_info_from_variables(const char* rank_var, const char* world_var, const char* local_var,
                                      const char* source);

// Discovery without MPI: RANK/WORLD_SIZE, then srun's variables, then (only meaningful in a
// build without MPI) mpirun's, else a single process.
LaunchInfo launch_info_from_environment();

// ---------------------------------------------------------------------------------------------
// The --nproc launcher.

// Parses the value of --nproc (1..1024); fails naming the flag.
int parse_nproc(const char* text);

// A wait status in words ("exited with status 3", "was killed by signal 9 (Killed)"), and the
// exit code a shell would report for it (128 + signal for a signal).
std::string describe_exit(int status);
int exit_code_of(int status);

// Starts ranks node_rank*nproc .. node_rank*nproc+nproc-1 of nnodes*nproc by executing `program`
// with `worker_args` (argv, including argv[0]) and RANK / WORLD_SIZE / LOCAL_RANK /
// LOCAL_WORLD_SIZE / GPT_RENDEZVOUS in their environment (nnodes and node_rank from NNODES and
// NODE_RANK, default 1 and 0). Returns 0 when every rank exits 0. When a rank fails, prints which,
// kills the others (SIGKILL: they cannot finish a step without it) and returns the failed rank's
// exit code (128 + signal for a signal). A SIGINT/SIGTERM/SIGUSR1/SIGHUP sent to the launcher is forwarded to the
// ranks (SIGHUP as SIGTERM), which then have 15 minutes to write their checkpoint (a second
// signal is forwarded too and ends them at once); the launcher returns kExitStopped when every
// rank exited with it (host/stop_request.h), else 128 + signal. A rank that exits with
// kExitStopped on its own (it got the signal directly) is waited for in the same way. A rank
// cannot outlive its launcher.
int launch_workers(const std::string& program, int nproc, const std::vector<std::string>& worker_args);

// launch_workers() of this program itself (/proc/self/exe), argv without --nproc.
int launch_local_workers(int nproc, const std::vector<std::string>& worker_args);

// Call first thing in main(): `if (auto code = distributed::launch_local_workers_if_requested(argc, argv)) return *code;`
// With `--nproc N` (or --nproc=N) in argv, runs the launcher above and returns its exit status;
// otherwise returns nothing and this process is a rank (or the only process).
std::optional<int> launch_local_workers_if_requested(int argc, char** argv);

}  // namespace distributed
