// A request to stop training: SIGTERM, SIGINT or SIGUSR1 (Slurm's warning before a job's time
// limit, `sbatch --signal=USR1@120`) asks the trainer to finish its current step, write a
// checkpoint and exit with kExitStopped, from which `--resume auto` continues exactly. A second
// SIGTERM or SIGINT ends the process at once, for a user who will not wait for the checkpoint.
//
// A signal handler may only set a flag of type volatile sig_atomic_t: that flag is the one piece
// of process-wide state here (a signal has no other way in).
#pragma once

// The exit status of a run stopped by a signal after its checkpoint (the launcher passes it on).
constexpr int kExitStopped = 3;

namespace stop_request {
// Installs the handlers; idempotent.
void install();
// The signal that asked to stop, or 0.
int signal_number();
// Forgets a request (tests).
void clear();
}  // namespace stop_request
