#!/usr/bin/env bash
# Multi-node training from a hostfile: one process per GPU on every host.
#
#   scripts/launch_multinode.sh --hostfile hosts.txt [--gpus-per-node N] [--mode mpi|ssh]
#                               [--rendezvous PATH] [--dry-run] -- ./train_gpt2cu -e gpt2xl ...
#
# hostfile: one host name per line; '#' comments, blank lines and a "slots=N" after the name are
# ignored (every host runs --gpus-per-node ranks, default: the GPUs nvidia-smi lists here).
# Every host runs the command in this directory, so it must be on a filesystem all hosts share.
#
# --mode mpi (the default when mpirun is on PATH): one mpirun for the whole job; the trainer must
#   be built with MPI (mpicxx present at `make` time). NCCL's id is shared with MPI_Bcast.
# --mode ssh: no MPI anywhere. `ssh HOST` starts `COMMAND --nproc N` on each host with NNODES and
#   NODE_RANK set; the launchers' ranks meet through a rendezvous file (--rendezvous PATH, default
#   ./.gpt2cu-rendezvous/<unique name>) that must be on the shared filesystem. Needs password-less
#   ssh. If one host's launcher fails, the others' ssh sessions are ended; ranks that outlive
#   their ssh session stop at the NCCL watchdog's timeout (--nccl-timeout) at the latest.
# --dry-run prints the command(s) instead of running them.
set -euo pipefail

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "launch_multinode.sh: $*" >&2; exit 2; }

hostfile="" gpus="" mode="" rendezvous="" dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hostfile) [ $# -ge 2 ] || die "--hostfile needs a file"; hostfile=$2; shift 2 ;;
        --gpus-per-node) [ $# -ge 2 ] || die "--gpus-per-node needs a number"; gpus=$2; shift 2 ;;
        --mode) [ $# -ge 2 ] || die "--mode needs mpi or ssh"; mode=$2; shift 2 ;;
        --rendezvous) [ $# -ge 2 ] || die "--rendezvous needs a path"; rendezvous=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (the training command goes after --; see --help)" ;;
    esac
done
[ $# -gt 0 ] || die "no command: put the training command after --, e.g. -- ./train_gpt2cu -e gpt2xl"
[ -n "$hostfile" ] || die "--hostfile is required (one host name per line)"
[ -r "$hostfile" ] || die "cannot read hostfile '$hostfile'"

mapfile -t hosts < <(sed -e 's/#.*//' "$hostfile" | awk 'NF { print $1 }')
[ "${#hosts[@]}" -gt 0 ] || die "hostfile '$hostfile' lists no host"
if [ -z "$gpus" ]; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "$gpus" -gt 0 ] || die "cannot count GPUs here with nvidia-smi: pass --gpus-per-node N"
fi
[[ "$gpus" =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node must be a positive integer, got '$gpus'"
if [ -z "$mode" ]; then
    if command -v mpirun >/dev/null; then mode=mpi; else mode=ssh; fi
fi
nodes=${#hosts[@]}
world=$((nodes * gpus))

case "$mode" in
mpi)
    mpi_hostfile=$(mktemp "${TMPDIR:-/tmp}/gpt2cu-hosts-XXXXXX")
    trap 'rm -f "$mpi_hostfile"' EXIT
    for host in "${hosts[@]}"; do echo "$host slots=$gpus"; done >"$mpi_hostfile"
    # NVLS (multicast) is never used; the NCCL_*/GPT_* settings of this shell reach every rank.
    exports=(-x NCCL_NVLS_ENABLE=0 -x PATH -x LD_LIBRARY_PATH)
    while IFS='=' read -r name _; do
        [ "$name" = NCCL_NVLS_ENABLE ] || exports+=(-x "$name")
    done < <(env | grep -E '^(NCCL|GPT)_[A-Za-z0-9_]*=' || true)
    command=(mpirun -np "$world" --hostfile "$mpi_hostfile" --map-by "ppr:$gpus:node" --bind-to none
             "${exports[@]}" "$@")
    echo "launch_multinode.sh: $nodes node(s) x $gpus GPU(s) = $world ranks with mpirun" >&2
    if [ "$dry_run" = 1 ]; then echo "${command[*]}"; exit 0; fi
    "${command[@]}"
    ;;
ssh)
    if [ -z "$rendezvous" ]; then
        rendezvous=$PWD/.gpt2cu-rendezvous/run-$(date +%Y%m%d-%H%M%S)-$$
    fi
    mkdir -p "$(dirname "$rendezvous")"
    rm -f "$rendezvous"
    remote_command=$(printf '%q ' "$@")
    echo "launch_multinode.sh: $nodes node(s) x $gpus GPU(s) = $world ranks over ssh, rendezvous $rendezvous" >&2
    pids=()
    for node_rank in "${!hosts[@]}"; do
        line="cd $(printf '%q' "$PWD") && exec env NNODES=$nodes NODE_RANK=$node_rank"
        line+=" GPT_RENDEZVOUS=$(printf '%q' "$rendezvous") NCCL_NVLS_ENABLE=0 $remote_command--nproc $gpus"
        if [ "$dry_run" = 1 ]; then echo "ssh ${hosts[$node_rank]} $line"; continue; fi
        ssh -o BatchMode=yes "${hosts[$node_rank]}" "$line" &
        pids+=($!)
    done
    [ "$dry_run" = 1 ] && exit 0
    status=0
    for _ in "${pids[@]}"; do
        if ! wait -n; then
            status=1
            echo "launch_multinode.sh: a node's launcher failed; ending the other ssh sessions" >&2
            kill "${pids[@]}" 2>/dev/null || true
            break
        fi
    done
    wait || true
    exit $status
    ;;
*) die "--mode must be mpi or ssh, got '$mode'" ;;
esac
