#!/usr/bin/env bash
# CPU test of the distributed launch logic (host/launch.h, host/rendezvous.h, host/rank_shard.h),
# without a GPU, as whole processes: the --nproc launcher (start, success, failure of one rank,
# signals, orphans), environment discovery (RANK/WORLD_SIZE, srun, mpirun variables), the
# shared-file rendezvous (exchange, stale file, world-size mismatch, timeout), flag errors, the
# shard arithmetic, and the two multi-node launch scripts (ssh and srun replaced by local
# stand-ins, mpirun checked with --dry-run). tests/test_launch.cpp tests the same functions one
# by one.
#
# A small driver program (plain C++) runs everything except the CUDA/NCCL part
# (train/nccl_context.cuh); that part is exercised on GPUs by dev/cuda/nccl_allreduce.cu, and
# compiled here with nvcc, also with USE_NCCL and USE_MPI where nccl.h and mpicxx exist.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
CXX=${CXX:-g++}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
LAUNCH_SOURCES=("$REPO/host/launch.cpp" "$REPO/host/rendezvous.cpp" "$REPO/host/rank_shard.cpp")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0

pass() { passed=$((passed + 1)); echo "  ok    $1"; }
fail() {
    failed=$((failed + 1)); echo "  FAIL  $1"
    [ -f "$WORK/out" ] && sed 's/^/        | /' "$WORK/out" | tail -n 25
}

# ---------------------------------------------------------------------------------------------
# The driver: each mode prints what the trainer's start-up would learn.

cat >"$WORK/driver.cpp" <<'EOF'
#include "host/launch.h"
#include "host/rank_shard.h"
#include "host/rendezvous.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

using namespace distributed;

int main(int argc, char** argv) {
    if (std::optional<int> code = launch_local_workers_if_requested(argc, argv)) return *code;
    std::string mode = "exchange", rendezvous, fail_how;
    double timeout_s = 20;
    int fail_rank = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--mode") mode = value;
        else if (flag == "--rendezvous") rendezvous = value;
        else if (flag == "--timeout") timeout_s = std::stod(value);
        else if (flag == "--fail-rank") fail_rank = std::stoi(value);
        else if (flag == "--fail-how") fail_how = value;
        else fatal("driver: unknown flag %s", flag.c_str());
    }
    if (mode == "shards") {
        // 1000 elements over 3 ranks, alignment 128: padded to the next multiple of 3*128 = 384,
        // 1152; shards of 384; rank 2 owns [768, 1152), of which [768, 1000) is real data.
        const Shard a = shard_of(1000, 2, 3, 128);
        const Shard b = shard_of(384, 0, 3, 128);     // exact multiple: no padding
        const Shard c = shard_of(10, 3, 4, 16);       // rank 3 holds only padding
        const Shard d = shard_of(0, 0, 1, 1);
        const bool ok = a.padded_count == 1152 && a.shard_count == 384 && a.begin == 768 && a.end == 1152 &&
                        a.valid_end == 1000 && b.padded_count == 384 && b.shard_count == 128 && b.valid_end == 128 &&
                        c.padded_count == 64 && c.begin == 48 && c.end == 64 && c.valid_end == 48 &&
                        d.padded_count == 0 && d.shard_count == 0;
        std::printf("shards %s\n", ok ? "ok" : "WRONG");
        return ok ? 0 : 1;
    }
    const LaunchInfo info = launch_info_from_environment();
    std::printf("info rank=%d world=%d local_rank=%d local_size=%d source=%s pid=%d\n", info.rank, info.world_size,
                info.local_rank, info.local_size, info.source.c_str(), static_cast<int>(getpid()));
    std::fflush(stdout);
    if (mode == "info") return 0;
    const std::string path = rendezvous_path_from(rendezvous);
    if (path.empty()) fatal("driver: no rendezvous path");
    std::vector<char> payload;
    if (info.rank == 0) {
        const std::string id = "id-of-run-" + std::to_string(getpid());
        payload.assign(id.begin(), id.end());
    }
    payload = rendezvous_broadcast(path, info.rank, info.world_size, payload, timeout_s);
    std::printf("got rank=%d payload=%s\n", info.rank, std::string(payload.begin(), payload.end()).c_str());
    std::fflush(stdout);
    if (info.rank == fail_rank) {
        if (fail_how == "signal") raise(SIGKILL);
        return 7;
    }
    if (fail_rank >= 0) sleep(120);  // a healthy rank waiting for the failed one; the launcher must stop it
    return 0;
}
EOF

# Compiled, never run: every collective of the NCCL context for every storage type.
cat >"$WORK/context.cu" <<'EOF'
#include "train/nccl_context.cuh"

using distributed::DistributedContext;
using distributed::ReduceOp;

template <typename T> void use_collectives(DistributedContext& context, T* data) {
    context.all_reduce(data, 1, ReduceOp::Sum, "all_reduce in place");
    context.all_reduce(static_cast<const T*>(data), data, 1, ReduceOp::Max, "all_reduce");
    context.reduce(data, data, 1, 0, ReduceOp::Sum, "reduce");
    context.reduce_scatter(data, data, 1, ReduceOp::Average, "reduce_scatter");
    context.all_gather(data, data, 1, "all_gather");
}

int main(int argc, char** argv) {
    if (std::optional<int> code = distributed::launch_local_workers_if_requested(argc, argv)) return *code;
    DistributedContext context({"", 10.0});
    context.comm_waits_for(nullptr);
    context.group_begin();
    use_collectives<float>(context, nullptr);
    use_collectives<__nv_bfloat16>(context, nullptr);
    use_collectives<__half>(context, nullptr);
    context.group_end();
    context.compute_waits_for_comm(nullptr);
    context.watch(context.comm_stream, "graph");
    context.barrier();
    return context.is_main() && context.is_distributed() ? 0 : 1;
}
EOF

echo "compiling the driver (plain C++)..."
LAUNCH_OBJECTS=()
compile_launch_objects() {
    local source object
    for source in "${LAUNCH_SOURCES[@]}"; do
        object=$WORK/$(basename "$source" .cpp).o
        "$CXX" -std=c++17 -O1 -I"$REPO" -Wall -Wextra -Werror -c "$source" -o "$object" || return 1
        LAUNCH_OBJECTS+=("$object")
    done
}
if compile_launch_objects >"$WORK/out" 2>&1 && "$CXX" -std=c++17 -O1 -I"$REPO" -Wall -Wextra -Werror \
    "$WORK/driver.cpp" "${LAUNCH_OBJECTS[@]}" -o "$WORK/driver" >"$WORK/out" 2>&1; then
    pass "the launcher, rendezvous and shard sources compile warning-free as plain C++"
else
    fail "the launcher, rendezvous and shard sources compile warning-free as plain C++"
    echo "$passed passed, $failed failed"
    exit 1
fi
NVCC_FLAGS=(-std=c++17 -O1 -I"$REPO" -Xcompiler -Wall,-Wextra,-Werror -gencode arch=compute_80,code=sm_80)
if [ ! -x "$NVCC" ]; then
    echo "  skip  compile train/nccl_context.cuh (no nvcc found)"
else
    if "$NVCC" "${NVCC_FLAGS[@]}" "$WORK/context.cu" "${LAUNCH_OBJECTS[@]}" -o "$WORK/context" >"$WORK/out" 2>&1; then
        pass "train/nccl_context.cuh compiles and links warning-free without USE_NCCL/USE_MPI"
    else
        fail "train/nccl_context.cuh compiles and links warning-free without USE_NCCL/USE_MPI"
    fi
    if echo '#include <nccl.h>' | "$NVCC" -E -x cu - >/dev/null 2>&1 && command -v mpicxx >/dev/null; then
        if "$NVCC" "${NVCC_FLAGS[@]}" -DUSE_NCCL -DUSE_MPI $(mpicxx --showme:compile) "$WORK/context.cu" \
            "${LAUNCH_OBJECTS[@]}" -o "$WORK/context_full" -lnccl $(mpicxx --showme:link) >"$WORK/out" 2>&1; then
            pass "train/nccl_context.cuh compiles and links warning-free with USE_NCCL and USE_MPI"
        else
            fail "train/nccl_context.cuh compiles and links warning-free with USE_NCCL and USE_MPI"
        fi
    else
        echo "  skip  compile with USE_NCCL and USE_MPI (nccl.h or mpicxx not found)"
    fi
fi
DRIVER=$WORK/driver

# Runs the driver with a clean launch environment; extra VAR=value words come first.
CLEAN_ENV=(env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE -u GPT_RENDEZVOUS -u NNODES -u NODE_RANK
    -u SLURM_PROCID -u SLURM_STEP_NUM_TASKS -u SLURM_LOCALID -u SLURM_STEP_TASKS_PER_NODE
    -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_LOCAL_RANK -u PMIX_RANK -u PMI_RANK
    TMPDIR="$WORK")
run_driver() { "${CLEAN_ENV[@]}" "$@"; }

# ---------------------------------------------------------------------------------------------
# Shard arithmetic and discovery.

run_driver "$DRIVER" --mode shards >"$WORK/out" 2>&1 && grep -q "shards ok" "$WORK/out" \
    && pass "shard_of: padding to world*alignment, equal shards, valid ranges" || fail "shard_of arithmetic"

run_driver "$DRIVER" --mode info >"$WORK/out" 2>&1 && grep -q "rank=0 world=1 local_rank=0 .*source=single process" "$WORK/out" \
    && pass "no launcher variables: a single process" || fail "single-process discovery"

run_driver RANK=3 WORLD_SIZE=8 LOCAL_RANK=1 LOCAL_WORLD_SIZE=4 "$DRIVER" --mode info >"$WORK/out" 2>&1 \
    && grep -q "rank=3 world=8 local_rank=1 local_size=4" "$WORK/out" \
    && pass "RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE" || fail "RANK/WORLD_SIZE discovery"

run_driver SLURM_PROCID=5 SLURM_STEP_NUM_TASKS=16 SLURM_LOCALID=1 SLURM_STEP_TASKS_PER_NODE='4(x4)' \
    "$DRIVER" --mode info >"$WORK/out" 2>&1 && grep -q "rank=5 world=16 local_rank=1 local_size=4 source=srun" "$WORK/out" \
    && pass "srun variables (SLURM_PROCID/SLURM_STEP_NUM_TASKS/SLURM_LOCALID)" || fail "srun discovery"

# A batch script's own environment has SLURM_PROCID but no SLURM_STEP_NUM_TASKS: not a rank.
run_driver SLURM_PROCID=0 SLURM_NTASKS=8 "$DRIVER" --mode info >"$WORK/out" 2>&1 \
    && grep -q "rank=0 world=1" "$WORK/out" && pass "sbatch environment outside srun is a single process" \
    || fail "sbatch environment"

run_driver OMPI_COMM_WORLD_RANK=2 OMPI_COMM_WORLD_SIZE=4 OMPI_COMM_WORLD_LOCAL_RANK=2 OMPI_COMM_WORLD_LOCAL_SIZE=4 \
    "$DRIVER" --mode info >"$WORK/out" 2>&1 && grep -q "rank=2 world=4 local_rank=2 local_size=4" "$WORK/out" \
    && pass "mpirun variables in a build without MPI" || fail "OMPI discovery"

expect_error() {  # name pattern command...
    local name=$1 pattern=$2; shift 2
    if run_driver "$@" >"$WORK/out" 2>&1; then fail "$name (exited 0)"; return; fi
    grep -q -- "$pattern" "$WORK/out" && pass "$name" || fail "$name (message lacks: $pattern)"
}
expect_error "RANK without LOCAL_RANK is an error" "LOCAL_RANK is not" RANK=1 WORLD_SIZE=2 "$DRIVER" --mode info
expect_error "RANK without WORLD_SIZE is an error" "WORLD_SIZE is not" RANK=1 "$DRIVER" --mode info
expect_error "RANK >= WORLD_SIZE is an error" "RANK='2' is not an integer in \[0, 1\]" RANK=2 WORLD_SIZE=2 LOCAL_RANK=0 "$DRIVER" --mode info
expect_error "non-integer RANK is an error" "RANK='x'" RANK=x WORLD_SIZE=2 LOCAL_RANK=0 "$DRIVER" --mode info
expect_error "--nproc 0 is an error" "--nproc: expected" "$DRIVER" --nproc 0
expect_error "--nproc abc is an error" "got 'abc'" "$DRIVER" --nproc abc
expect_error "--nproc without a value is an error" "got '(nothing)'" "$DRIVER" --nproc
expect_error "--nproc under RANK/WORLD_SIZE is an error" "cannot be combined" RANK=0 WORLD_SIZE=1 "$DRIVER" --nproc 2
expect_error "--nproc under mpirun is an error" "cannot be combined" OMPI_COMM_WORLD_SIZE=2 "$DRIVER" --nproc 2
expect_error "NODE_RANK without NNODES is an error" "NNODES is not" NODE_RANK=1 "$DRIVER" --nproc 2
expect_error "NNODES>1 without GPT_RENDEZVOUS is an error" "set GPT_RENDEZVOUS" NNODES=2 NODE_RANK=0 "$DRIVER" --nproc 2

# ---------------------------------------------------------------------------------------------
# Rendezvous file.

expect_error "a rank waits at most the timeout for rank 0, then says so" "did not publish the rendezvous file" \
    RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 GPT_RENDEZVOUS="$WORK/never" "$DRIVER" --timeout 1
touch "$WORK/stale"
expect_error "rank 0 refuses a rendezvous file left from an earlier run" "already exists" \
    RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 "$DRIVER" --rendezvous "$WORK/stale"
printf 'something else entirely' >"$WORK/foreign"
expect_error "a file that is not a rendezvous file is rejected" "not a rendezvous file" \
    RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 "$DRIVER" --rendezvous "$WORK/foreign" --timeout 2
run_driver RANK=0 WORLD_SIZE=3 LOCAL_RANK=0 "$DRIVER" --rendezvous "$WORK/mismatch" >/dev/null 2>&1
expect_error "a world size that differs from rank 0's is rejected" "run of 3 processes, but this one has WORLD_SIZE=2" \
    RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 "$DRIVER" --rendezvous "$WORK/mismatch" --timeout 2
expect_error "rank 0 says when the rendezvous directory is missing" "cannot create rendezvous file" \
    RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 "$DRIVER" --rendezvous "$WORK/no/such/dir/id"

# Ranks started by hand, rank 1 first: it waits until rank 0 publishes.
run_driver RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 "$DRIVER" --rendezvous "$WORK/manual" >"$WORK/out1" 2>&1 &
sleep 0.5
run_driver RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 "$DRIVER" --rendezvous "$WORK/manual" >"$WORK/out0" 2>&1
wait $!
cat "$WORK/out0" "$WORK/out1" >"$WORK/out"
[ "$(grep -c '^got ' "$WORK/out")" = 2 ] && [ "$(grep '^got ' "$WORK/out" | sed 's/.*payload=//' | sort -u | wc -l)" = 1 ] \
    && pass "two ranks started by hand exchange the id through --rendezvous" || fail "manual rendezvous"

# ---------------------------------------------------------------------------------------------
# The --nproc launcher.

start=$(date +%s)
run_driver "$DRIVER" --nproc 3 >"$WORK/out" 2>&1
status=$?
ids=$(grep '^got ' "$WORK/out" | sed 's/.*payload=//' | sort -u | wc -l)
if [ $status -eq 0 ] && [ "$(grep -c '^got ' "$WORK/out")" = 3 ] && [ "$ids" = 1 ] \
    && grep -q "rank=2 world=3 local_rank=2 local_size=3" "$WORK/out" && ! ls "$WORK"/gpt2cu-rendezvous-* >/dev/null 2>&1; then
    pass "--nproc 3: three ranks, one shared id, rendezvous directory removed"
else
    fail "--nproc 3 (status $status, distinct ids $ids)"
fi

run_driver "$DRIVER" --nproc=2 --mode info >"$WORK/out" 2>&1 && [ "$(grep -c '^info ' "$WORK/out")" = 2 ] \
    && pass "--nproc=N form; the flag is removed from the ranks' arguments" || fail "--nproc=N form"

check_stops() {  # name fail-how expected-status-pattern
    local name=$1 how=$2 message=$3 start status elapsed pids alive=0
    start=$(date +%s)
    run_driver "$DRIVER" --nproc 3 --fail-rank 1 --fail-how "$how" >"$WORK/out" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - start ))
    pids=$(sed -n 's/^info .*pid=\([0-9]*\)$/\1/p' "$WORK/out")
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
    if [ $status -ne 0 ] && [ $elapsed -lt 30 ] && [ $alive -eq 0 ] && grep -q "rank 1 (pid [0-9]*) $message" "$WORK/out" \
        && grep -q "stopping the other 2 rank(s)" "$WORK/out"; then
        pass "$name: launcher exits $status after ${elapsed}s, names rank 1, no rank left running"
    else
        fail "$name (status $status, ${elapsed}s, $alive rank(s) still alive)"
        for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
    fi
}
check_stops "a rank exiting with an error stops the run" exit "exited with status 7"
check_stops "a rank killed by a signal stops the run" signal "was killed by signal 9"

# SIGTERM to the launcher reaches its ranks.
# (A simple command, not the function: $! must be the launcher itself, not a subshell.)
"${CLEAN_ENV[@]}" "$DRIVER" --nproc 2 --fail-rank 5 >"$WORK/out" 2>&1 &
launcher=$!
for _ in $(seq 50); do [ "$(grep -c '^got ' "$WORK/out")" = 2 ] && break; sleep 0.1; done
kill -TERM $launcher
wait $launcher
status=$?
sleep 0.2
alive=0
for pid in $(sed -n 's/^info .*pid=\([0-9]*\)$/\1/p' "$WORK/out"); do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
[ $status -eq 143 ] && [ $alive -eq 0 ] && grep -q "received signal 15" "$WORK/out" \
    && pass "SIGTERM to the launcher stops every rank (exit 143)" || fail "SIGTERM forwarding (status $status, $alive alive)"

# ---------------------------------------------------------------------------------------------
# Multi-node scripts, with local stand-ins for ssh and srun.

mkdir -p "$WORK/bin"
cat >"$WORK/bin/ssh" <<'EOF'
#!/usr/bin/env bash
# Stand-in for ssh: drops the options and the host name and runs the command here.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
    if [ "$1" = -o ]; then shift 2; else shift; fi
done
shift
exec bash -c "$*"
EOF
cat >"$WORK/bin/srun" <<'EOF'
#!/usr/bin/env bash
# Stand-in for srun: starts SLURM_NNODES * SLURM_NTASKS_PER_NODE tasks here, as srun's tasks.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
tasks=$((SLURM_NNODES * SLURM_NTASKS_PER_NODE))
pids=()
for ((t = 0; t < tasks; t++)); do
    SLURM_PROCID=$t SLURM_STEP_NUM_TASKS=$tasks SLURM_LOCALID=$((t % SLURM_NTASKS_PER_NODE)) \
    SLURM_STEP_TASKS_PER_NODE="$SLURM_NTASKS_PER_NODE(x$SLURM_NNODES)" "$@" & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
EOF
chmod +x "$WORK/bin/ssh" "$WORK/bin/srun"
printf '# two nodes\nnode-a slots=8\n\nnode-b\n' >"$WORK/hosts"

PATH="$WORK/bin:$PATH" run_driver bash scripts/launch_multinode.sh --hostfile "$WORK/hosts" --gpus-per-node 2 \
    --mode ssh --rendezvous "$WORK/ssh-rdzv" -- "$DRIVER" >"$WORK/out" 2>&1
status=$?
[ $status -eq 0 ] && [ "$(grep -c '^got ' "$WORK/out")" = 4 ] \
    && [ "$(grep '^got ' "$WORK/out" | sed 's/.*payload=//' | sort -u | wc -l)" = 1 ] \
    && grep -q "rank=3 world=4 local_rank=1 local_size=2" "$WORK/out" \
    && pass "launch_multinode.sh --mode ssh: 2 nodes x --nproc 2 meet through one rendezvous file" \
    || fail "launch_multinode.sh --mode ssh (status $status)"

run_driver bash scripts/launch_multinode.sh --hostfile "$WORK/hosts" --gpus-per-node 4 --mode mpi --dry-run \
    -- ./train_gpt2cu -e gpt2l >"$WORK/out" 2>&1
grep -q "mpirun -np 8 --hostfile .* --map-by ppr:4:node --bind-to none .*-x NCCL_NVLS_ENABLE=0 .*./train_gpt2cu -e gpt2l" "$WORK/out" \
    && pass "launch_multinode.sh --mode mpi builds mpirun -np 8 --map-by ppr:4:node" || fail "launch_multinode.sh --mode mpi --dry-run"

run_driver bash scripts/launch_multinode.sh --hostfile "$WORK/missing" -- ./x >"$WORK/out" 2>&1
[ $? -ne 0 ] && grep -q "hostfile" "$WORK/out" && pass "launch_multinode.sh: a missing hostfile is an error" \
    || fail "launch_multinode.sh missing hostfile"

PATH="$WORK/bin:$PATH" run_driver SLURM_JOB_ID=4242 SLURM_NNODES=2 SLURM_NTASKS_PER_NODE=2 SLURM_SUBMIT_DIR="$WORK" \
    bash scripts/launch_slurm.sh --no-mpi -- "$DRIVER" >"$WORK/out" 2>&1
status=$?
[ $status -eq 0 ] && [ "$(grep -c '^got ' "$WORK/out")" = 4 ] \
    && [ "$(grep '^got ' "$WORK/out" | sed 's/.*payload=//' | sort -u | wc -l)" = 1 ] \
    && grep -q "rank=2 world=4 local_rank=0 local_size=2 source=srun" "$WORK/out" \
    && pass "launch_slurm.sh --no-mpi: 4 srun tasks meet through GPT_RENDEZVOUS" || fail "launch_slurm.sh --no-mpi (status $status)"

run_driver bash scripts/launch_slurm.sh -- ./x >"$WORK/out" 2>&1
[ $? -ne 0 ] && grep -q "sbatch" "$WORK/out" && pass "launch_slurm.sh outside a Slurm job says to use sbatch" \
    || fail "launch_slurm.sh outside Slurm"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
