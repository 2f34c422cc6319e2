#!/usr/bin/env bash
# End-to-end training throughput on this machine's GPU: train_gpt2cu against our PyTorch baseline
# (dev/bench/torch_baseline.py), the same models and batches, one table. See dev/bench/README.md.
#
#   dev/bench/bench.sh [--steps N] [--rows MODEL:B:T,...] [--only ours|torch] [--out DIR]
#                      [--timeout S] [--trainer PATH] [-- extra train_gpt2cu arguments]
#
# Default rows: gpt2s B=32 and B=64 (T=1024), gpt2l B=16, gpt2xl B=8, gpt3xl B=8 (T=2048); bf16.
# Output: the markdown table on stdout and in DIR/bench.md, each run's log in DIR/logs/;
# DIR = --out, else $OUT (the device machine's output folder), else build/bench.
# A row that fails (out of memory, crash, timeout, missing binary) shows FAILED and the reason;
# the other rows and the table still come out. Exit status 1 when any run failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
source dev/bench/common.sh

steps=30 rows="gpt2s:32:1024,gpt2s:64:1024,gpt2l:16:1024,gpt2xl:8:1024,gpt3xl:8:2048" only="" timeout_s=1200
out_dir=${OUT:-build/bench} trainer=./train_gpt2cu
die() { echo "bench.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) [ $# -ge 2 ] || die "--steps needs a number"; steps=$2; shift 2 ;;
        --rows) [ $# -ge 2 ] || die "--rows needs MODEL:B:T,..."; rows=$2; shift 2 ;;
        --only) [ $# -ge 2 ] || die "--only needs ours or torch"; only=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout_s=$2; shift 2 ;;
        --trainer) [ $# -ge 2 ] || die "--trainer needs a path"; trainer=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
extra_args=("$@")
# The trainer times all but its first 5 steps, the baseline all but its first 10: 30 gives each
# side a median of at least 20.
[[ "$steps" =~ ^[0-9]+$ ]] && [ "$steps" -ge 30 ] || die "--steps must be at least 30 (each side's median needs 20 steps after warm-up), got '$steps'"
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '$timeout_s'"
case "$only" in ""|ours|torch) ;; *) die "--only must be ours or torch, got '$only'" ;; esac
IFS=',' read -r -a row_list <<<"$rows"
for row in "${row_list[@]}"; do
    [[ "$row" =~ ^[A-Za-z0-9.-]+:[0-9]+:[0-9]+$ ]] || die "--rows: '$row' is not MODEL:BATCH:SEQ_LEN"
done

# The Python that has PyTorch (the first python3 on PATH may not).
python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3 /usr/bin/python3; do
        if "$candidate" -c 'import torch' >/dev/null 2>&1; then python=$candidate; break; fi
    done
fi

mkdir -p "$out_dir/logs" || die "cannot create $out_dir/logs"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
gpu=${gpu:-"no GPU found by nvidia-smi"}
# The commit benchmarked: only where this tree is a checkout's top (a copy of a tree inside another
# checkout would otherwise report the outer one's), marked when files differ from it.
commit="unknown (not a git checkout)"
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]; then
    commit=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- 2>/dev/null || commit="$commit with local changes"
fi
failures=0

# Value of key=... in a BENCH line ("" when absent); gpu="..." keeps its spaces.
field() { sed -n "s/.* $1=\"\\{0,1\\}\\([^\" ]*\\).*/\\1/p" <<<" $2" | head -n1; }

# Runs one measurement; prints "tokens_per_s mfu peak_mem_gb" or "FAILED <reason>".
measure() {  # log-file command...
    local log=$1; shift
    timeout --kill-after=30 "$timeout_s" "$@" >"$log" 2>&1
    local status=$?
    local line
    line=$(grep '^BENCH ' "$log" | tail -n1)
    if [ $status -eq 0 ] && [ -n "$line" ] && [[ "$line" != *FAILED* ]]; then
        echo "$(field tokens_per_s "$line") $(field mfu "$line") $(field peak_mem_gb "$line")"
        return 0
    fi
    local reason
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        reason="timed out after ${timeout_s}s"
    elif [[ "$line" == *FAILED* ]]; then
        reason=$(sed -n 's/.*reason="\(.*\)"$/\1/p' <<<"$line")
    else
        reason="exit status $status: $(grep -v '^[[:space:]]*$' "$log" | tail -n1)"
    fi
    echo "FAILED ${reason:0:160}"
    return 1
}

ours_result() {  # model batch seq_len log
    if [ ! -x "$trainer" ]; then echo "FAILED $trainer not built (run make)"; return 1; fi
    measure "$4" "$trainer" -e "$1" --bench-steps "$steps" --device-batch "$2" --seq-len "$3" --precision bf16 \
        "${benchmark_trainer_args[@]}" "${extra_args[@]}"
}
torch_result() {  # model batch seq_len log
    if [ -z "$python" ]; then echo "FAILED no Python with PyTorch (set PYTHON)"; return 1; fi
    measure "$4" "$python" dev/bench/torch_baseline.py --model "$1" --batch "$2" --seq-len "$3" \
        --steps $((steps - 10)) --warmup 10
}

cell() {  # result field-index: the number, or "FAILED" / "-"
    case "$1" in
        FAILED*) echo "FAILED" ;;
        "") echo "-" ;;
        *) awk -v i="$2" '{ print $i }' <<<"$1" ;;
    esac
}

table=$(mktemp)
notes=$(mktemp)
trap 'rm -f "$table" "$notes"' EXIT
{
    echo "| model | B | T | ours tok/s | ours MFU % | ours mem GB | PyTorch tok/s | PyTorch MFU % | PyTorch mem GB | ours / PyTorch |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$table"
for row in "${row_list[@]}"; do
    IFS=':' read -r model batch seq_len <<<"$row"
    tag="${model}_b${batch}_t${seq_len}"
    ours="" torch=""
    if [ "$only" != torch ]; then
        echo "bench.sh: $model B=$batch T=$seq_len: train_gpt2cu ..." >&2
        ours=$(ours_result "$model" "$batch" "$seq_len" "$out_dir/logs/ours_$tag.log") || failures=$((failures + 1))
    fi
    if [ "$only" != ours ]; then
        echo "bench.sh: $model B=$batch T=$seq_len: PyTorch ..." >&2
        torch=$(torch_result "$model" "$batch" "$seq_len" "$out_dir/logs/torch_$tag.log") || failures=$((failures + 1))
    fi
    ratio="-"
    ours_tps=$(cell "$ours" 1) torch_tps=$(cell "$torch" 1)
    if [[ "$ours_tps" =~ ^[0-9.]+$ ]] && [[ "$torch_tps" =~ ^[0-9.]+$ ]] && [ "$torch_tps" != 0 ]; then
        ratio=$(awk -v a="$ours_tps" -v b="$torch_tps" 'BEGIN { printf "%.2fx", a / b }')
    fi
    echo "| $model | $batch | $seq_len | $ours_tps | $(cell "$ours" 2) | $(cell "$ours" 3) | $torch_tps | $(cell "$torch" 2) | $(cell "$torch" 3) | $ratio |" >>"$table"
    [[ "$ours" == FAILED* ]] && echo "- $model B=$batch T=$seq_len, train_gpt2cu: ${ours#FAILED }" >>"$notes"
    [[ "$torch" == FAILED* ]] && echo "- $model B=$batch T=$seq_len, PyTorch: ${torch#FAILED }" >>"$notes"
done

{
    echo "## Training throughput, bf16, one GPU: $gpu"
    echo
    echo "$(date -u +%Y-%m-%d), commit $commit, median of at least $((steps - 10)) steps after warm-up; MFU = (6N + 6·L·d·T) FLOPs/token over the dense bf16 peak."
    echo "Memory: ours = GPU memory in use at the end (cudaMemGetInfo), PyTorch = torch.cuda.max_memory_allocated (allocator peak, without the CUDA context); GB = 1e9 bytes."
    echo
    cat "$table"
    if [ -s "$notes" ]; then
        echo
        echo "Failed runs (logs in $out_dir/logs/):"
        cat "$notes"
    fi
} | tee "$out_dir/bench.md"
[ "$failures" -eq 0 ]
