#!/usr/bin/env bash
# Where one training step's time goes: every kernel of one steady-state step of train_gpt2cu,
# timed by Nsight Compute, grouped by op, against the step's wall time from an unprofiled run.
#
#   dev/bench/step_breakdown.sh [--model M] [--batch B] [--seq-len T] [--out DIR] [--trainer PATH]
#                               [--tracer LIB] [-- extra train_gpt2cu arguments]
#
# Defaults: gpt2s, B=32, T=1024, bf16, with bench.sh's conditions (dev/bench/common.sh: tiny
# dataset, accumulation 1, dropout off).
# Output: the breakdown (markdown) on stdout and in DIR/breakdown_<model>_b<B>.md, the raw ncu CSV
# beside it; DIR = --out, else $OUT, else build/bench.
#
# Two runs: one without the profiler gives the median step time (the BENCH line); one under
# `ncu --profile-from-start off` profiles only step --profile-step. ncu serializes kernels and
# measures each alone (clocks and caches left as they are), so the kernel sum is each kernel's
# own time; step time minus that sum is what the GPU spent between kernels (launch gaps, host
# synchronizations, copies) plus any overlap that serialization removed, plus what a lower clock
# in the loaded step costs: the SM clock and power are sampled during both runs and reported.
# A third run, when the CUPTI tracer is built (--tracer, default build/dev/bench/libkernel_trace.so,
# `make dev`), records the same step without ncu, kernels back to back at the loaded clock: it
# splits that remainder into the GPU's idle time inside the step and the host's time before the
# step's first launch and after its last (against the traced step's own time from its log).
set -euo pipefail
cd "$(dirname "$0")/../.."
source dev/bench/common.sh

model=gpt2s batch=32 seq_len=1024 out_dir=${OUT:-build/bench} trainer=./train_gpt2cu
tracer=build/dev/bench/libkernel_trace.so
die() { echo "step_breakdown.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || die "--model needs a preset name"; model=$2; shift 2 ;;
        --batch) [ $# -ge 2 ] || die "--batch needs a number"; batch=$2; shift 2 ;;
        --seq-len) [ $# -ge 2 ] || die "--seq-len needs a number"; seq_len=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift 2 ;;
        --trainer) [ $# -ge 2 ] || die "--trainer needs a path"; trainer=$2; shift 2 ;;
        --tracer) [ $# -ge 2 ] || die "--tracer needs a path (or '' for none)"; tracer=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ -x "$trainer" ] || die "$trainer is not built (run make train_gpt2cu)"
ncu=$(command -v ncu || true)
[ -n "$ncu" ] || die "Nsight Compute (ncu) is not on PATH; it is needed for the per-kernel times"
mkdir -p "$out_dir" || die "cannot create $out_dir"
tag="${model}_b${batch}_t${seq_len}"
args=(-e "$model" --device-batch "$batch" --seq-len "$seq_len" --precision bf16 "${benchmark_trainer_args[@]}" "$@")

# SM clock and power, sampled every 200 ms while a command runs. Kernels timed one by one under
# ncu may run at a higher clock than back to back in a loaded step; the gap row absorbs that.
sample_clocks() {  # samples-file command...
    local samples=$1; shift
    nvidia-smi -i "${CUDA_VISIBLE_DEVICES%%,*}" --query-gpu=utilization.gpu,clocks.sm,power.draw \
        --format=csv,noheader,nounits -lms 200 >"$samples" 2>/dev/null &
    local sampler=$!
    local status=0
    "$@" || status=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    return $status
}
busy_clock() {  # samples-file: "median MHz, median W over N busy samples" (GPU utilization >= 90%)
    local busy n
    busy=$(tr -d ' ' <"$1" | awk -F, '$1 >= 90')
    [ -n "$busy" ] || { echo "no busy samples"; return; }
    n=$(wc -l <<<"$busy")
    median() { cut -d, -f"$1" <<<"$busy" | sort -n | sed -n "$(((n + 1) / 2))p"; }
    printf "%s MHz, %.0f W (median of %d busy samples)" "$(median 2)" "$(median 3)" "$n"
}
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}

echo "step_breakdown.sh: $model B=$batch T=$seq_len: step time without the profiler ..." >&2
sample_clocks "$out_dir/breakdown_${tag}_plain_clocks.csv" \
    "$trainer" "${args[@]}" --bench-steps 25 --out-dir "$out_dir/breakdown_${tag}_plain_run" \
    >"$out_dir/breakdown_${tag}_plain.log" 2>&1 ||
    die "the unprofiled run failed: $(tail -n 3 "$out_dir/breakdown_${tag}_plain.log")"
bench_line=$(grep '^BENCH ' "$out_dir/breakdown_${tag}_plain.log" | tail -n1)
step_ms=$(sed -n 's/.* step_ms=\([0-9.]*\).*/\1/p' <<<"$bench_line")
[ -n "$step_ms" ] || die "no step_ms in the unprofiled run's BENCH line"

# The profiled and the traced run: step 8 of 9, with the unprofiled run's GEMM algorithms (its
# matmul tuning record), so that all three runs time the same kernels. The traced run's log names
# the step by the same numbers.
profiled_step=8 last_step=9
profiled_run=(--bench-steps "$last_step" --profile-step "$profiled_step"
        --matmul-tuning "$out_dir/breakdown_${tag}_plain_run/matmul_tuning.txt")

echo "step_breakdown.sh: the kernels of step $profiled_step under ncu ..." >&2
csv="$out_dir/breakdown_${tag}.csv"
sample_clocks "$out_dir/breakdown_${tag}_ncu_clocks.csv" \
    "$ncu" --profile-from-start off --clock-control none --cache-control none --metrics gpu__time_duration.sum \
    --csv --page raw --print-units base --log-file "$csv" \
    "$trainer" "${args[@]}" "${profiled_run[@]}" --out-dir "$out_dir/breakdown_${tag}_ncu_run" \
    >"$out_dir/breakdown_${tag}_ncu.log" 2>&1 ||
    die "the profiled run failed: $(tail -n 3 "$out_dir/breakdown_${tag}_ncu.log")"

trace_args=()
if [ -n "$tracer" ] && [ -f "$tracer" ]; then
    echo "step_breakdown.sh: step $profiled_step traced without ncu ..." >&2
    trace="$out_dir/breakdown_${tag}_trace.csv"
    rm -f "$trace"
    CUDA_INJECTION64_PATH=$(realpath "$tracer") KERNEL_TRACE_FILE=$trace \
        "$trainer" "${args[@]}" "${profiled_run[@]}" --out-dir "$out_dir/breakdown_${tag}_trace_run" \
        >"$out_dir/breakdown_${tag}_trace.log" 2>&1 ||
        die "the traced run failed: $(tail -n 3 "$out_dir/breakdown_${tag}_trace.log")"
    [ -f "$trace" ] || die "the traced run wrote no $trace: $(grep kernel_trace "$out_dir/breakdown_${tag}_trace.log")"
    trace_args=(--trace "$trace")
    # The traced step's own time, so that what lies outside its span is measured against itself.
    traced_ms=$(sed -n "s/^bench step $profiled_step\/$last_step | .* | \([0-9.]*\) ms\$/\1/p" \
        "$out_dir/breakdown_${tag}_trace.log" | tail -n1)
    if [ -n "$traced_ms" ]; then
        trace_args+=(--traced-step-ms "$traced_ms")
    else
        echo "step_breakdown.sh: no 'bench step $profiled_step/$last_step' line in the traced run's log:" \
             "its span is set against the median" >&2
    fi
else
    echo "step_breakdown.sh: no tracer at '$tracer' (make dev builds it): the idle time inside the step is not split out" >&2
fi

python3 dev/bench/step_breakdown.py "$csv" --step-ms "$step_ms" "${trace_args[@]}" \
    --title "$model B=$batch T=$seq_len, bf16, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)" |
    tee "$out_dir/breakdown_${tag}.md"
{
    echo
    echo "SM clock while the GPU was busy: $(busy_clock "$out_dir/breakdown_${tag}_plain_clocks.csv") in the"
    echo "unprofiled run; $(busy_clock "$out_dir/breakdown_${tag}_ncu_clocks.csv") under ncu."
} | tee -a "$out_dir/breakdown_${tag}.md"
