#!/usr/bin/env bash
#SBATCH --job-name=train_gpt2cu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
# Slurm training job: one task per GPU on every node of the job.
#
#   sbatch --nodes=4 scripts/launch_slurm.sh -- ./train_gpt2cu -e gpt3xl ...
#   (inside salloc: bash scripts/launch_slurm.sh -- ./train_gpt2cu ...)
#   options before --: --mpi | --no-mpi, --dry-run
#
# Nodes with other than 8 GPUs: sbatch --ntasks-per-node=G --gpus-per-node=G ...
# The job runs in the submission directory, which must be on a filesystem all nodes share.
#
# --mpi: srun --mpi=$SRUN_MPI (default pmix) and the trainer's MPI discovery; the trainer must be
#   built with MPI. --no-mpi: plain srun; every task reads SLURM_PROCID / SLURM_STEP_NUM_TASKS /
#   SLURM_LOCALID and the tasks meet through the rendezvous file GPT_RENDEZVOUS (default
#   $SLURM_SUBMIT_DIR/.gpt2cu-rendezvous/job-<id>-<time>). Default: --mpi when the command's
#   binary links libmpi, else --no-mpi.
# srun --kill-on-bad-exit=1 ends every task as soon as one fails; the NCCL watchdog
# (--nccl-timeout) bounds a hang that does not end a task.
set -euo pipefail

die() { echo "launch_slurm.sh: $*" >&2; exit 2; }

use_mpi="" dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mpi) use_mpi=1; shift ;;
        --no-mpi) use_mpi=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '7,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (the training command goes after --)" ;;
    esac
done
[ $# -gt 0 ] || die "no command: put the training command after --, e.g. -- ./train_gpt2cu -e gpt2xl"
[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a Slurm job: submit with sbatch [--nodes=N] $0 -- COMMAND (or run inside salloc)"

# sbatch runs a copy of this script from Slurm's spool directory: work where the job was submitted.
cd "${SLURM_SUBMIT_DIR:-$PWD}"
if [ -z "$use_mpi" ]; then
    binary=$(command -v "$1" || true)
    if [ -n "$binary" ] && ldd "$binary" 2>/dev/null | grep -q 'libmpi'; then use_mpi=1; else use_mpi=0; fi
fi

export NCCL_NVLS_ENABLE=0
srun_options=(--kill-on-bad-exit=1)
if [ "$use_mpi" = 1 ]; then
    srun_options+=("--mpi=${SRUN_MPI:-pmix}")
    how="MPI (srun --mpi=${SRUN_MPI:-pmix})"
else
    export GPT_RENDEZVOUS=${GPT_RENDEZVOUS:-$PWD/.gpt2cu-rendezvous/job-$SLURM_JOB_ID-$(date +%Y%m%d-%H%M%S)}
    mkdir -p "$(dirname "$GPT_RENDEZVOUS")"
    how="rendezvous file $GPT_RENDEZVOUS"
fi
echo "launch_slurm.sh: job $SLURM_JOB_ID, ${SLURM_NNODES:-?} node(s) x ${SLURM_NTASKS_PER_NODE:-?} task(s), $how" >&2
if [ "$dry_run" = 1 ]; then
    echo "srun ${srun_options[*]} $*"
    exit 0
fi
exec srun "${srun_options[@]}" "$@"
