#!/usr/bin/env bash
# compute-sanitizer's four tools (memcheck, racecheck, initcheck, synccheck): every tool must report
# 0 errors on each program it runs.
#   - Our kernels, one workbench at a time (build/dev/cuda/*, --quick: every kernel and variant,
#     validated on small shapes), under all four tools; the GEMM workbench (our epilogue kernels
#     between cuBLASLt's GEMMs) under memcheck and synccheck only, as the whole programs below.
#   - test_gpt2cu and a short training run at a small size (the whole model), under all four
#     tools with --matmul-engine simple (our own GEMM in place of cuBLASLt: every kernel of a step
#     is then ours) and --attention-kernel tensor-cores (initcheck does not see the Hopper
#     attention's TMA stores as writes, so the GEMM that reads its output would be reported; the
#     Hopper kernels are checked by all four tools in the attention workbench, whose outputs are
#     written before the kernels run), and under memcheck and synccheck on cuBLASLt and the
#     default attention (test_gpt2cu without its GEMM timing, --matmul-tuning off: the timing
#     repeats are slow under a sanitizer). racecheck and initcheck cannot check cuBLASLt's
#     kernels: on CUDA 13.1 (H100, compute-sanitizer 2025.3.1) racecheck stops with "Internal
#     Sanitizer Error" in the first GEMM, and initcheck reports reads of memory that cuBLASLt's own
#     kernels and the GEMMs' outputs left "uninitialized" (2026-12-07, README).
#
# Every (tool, program) pair is a check of its own, and SANITIZER_JOBS of them (default: the CPU
# count) run at once on the one GPU: a sanitizer's cost is mostly on the host, one core per process.
# Under racecheck, which follows every shared-memory access, each attention variant this GPU runs
# (`attention --list-variants`) is a check of its own, attention-v1, attention-v2, ...: together the
# variants did not end within 430 s on an H100 (2026-12-07).
# The whole-model checks, the longest, start first. Every check prints its seconds and stops at
# SANITIZER_TIMEOUT (default 900 s), which counts as a failure.
#
#   scripts/test_sanitizer.sh          (make sanitize; needs a GPU, compute-sanitizer, PyTorch)
#   SANITIZER_TOOLS="racecheck initcheck" scripts/test_sanitizer.sh    (some of the tools only)
#   SANITIZER_JOBS=4 SANITIZER_TIMEOUT=300 scripts/test_sanitizer.sh  (fewer at once, a shorter limit)
#   SANITIZER_CHECKS="racecheck:layernorm initcheck:train-simple" scripts/test_sanitizer.sh  (those checks only)
# SANITIZER, PYTHON and WORKBENCH_DIR (default build/dev/cuda) name other programs: tests/sanitizer_script.sh
# runs the script with stand-ins for them.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SANITIZER=${SANITIZER:-compute-sanitizer}
work=${SANITIZE_DIR:-build/sanitize}
workbench_dir=${WORKBENCH_DIR:-build/dev/cuda}
rm -rf "$work"
mkdir -p "$work"
command -v "$SANITIZER" >/dev/null || { echo "compute-sanitizer not found (set SANITIZER=/path)"; exit 1; }

check_timeout=${SANITIZER_TIMEOUT:-900}
[[ "$check_timeout" =~ ^[0-9]+$ ]] || { echo "SANITIZER_TIMEOUT must be whole seconds, got '$check_timeout'"; exit 2; }
max_jobs=${SANITIZER_JOBS:-$(nproc)}
[[ "$max_jobs" =~ ^[1-9][0-9]*$ ]] || { echo "SANITIZER_JOBS must be a positive whole number, got '$max_jobs'"; exit 2; }
tools=(${SANITIZER_TOOLS:-memcheck racecheck initcheck synccheck})
for tool in "${tools[@]}"; do
    case $tool in memcheck | racecheck | initcheck | synccheck) ;;
        *) echo "SANITIZER_TOOLS: unknown tool '$tool' (memcheck, racecheck, initcheck, synccheck)"; exit 2 ;;
    esac
done

train=(./train_gpt2cu -e d12 --n-layer 2 --n-embd 128 --n-head 2 --seq-len 64 --max-seq-len 64 --device-batch 2
       --global-batch-tokens 256 --steps 3 --dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1
       --val-every 3 --val-tokens 256 --sample-every 0 --checkpoint-every 3
       --train-glob "$work/shards/synthetic_train_*.bin" --val-glob "$work/shards/synthetic_val_*.bin")

# Every kernel of a step ours, and storing with ordinary instructions (the "-simple" checks).
ours=(--matmul-engine simple --attention-kernel tensor-cores)

workbenches=()
for bench in "$workbench_dir"/*; do
    case $(basename "$bench") in
        nccl_allreduce | *.d) continue ;;  # NCCL's kernels, not ours
    esac
    [ -x "$bench" ] && [ -f "$bench" ] && workbenches+=("$bench")
done
[ ${#workbenches[@]} -gt 0 ] || { echo "no workbenches in $workbench_dir (make dev)"; exit 1; }

# One program under one tool: prints one line (and the first reports when it fails); returns 1 on a
# failure.
check() {  # tool name command...
    local tool=$1 name=$2; shift 2
    local log=$work/$tool-$name.log start=$SECONDS
    # In the background, its pid on file, so that stop_checks can end it (the timeout runs in a
    # process group of its own, which a signal to ours does not reach).
    timeout --kill-after=30 "$check_timeout" "$SANITIZER" --tool "$tool" --error-exitcode 99 --print-limit 20 "$@" \
        >"$log" 2>&1 &
    local pid=$!
    echo $pid >"$work/$tool-$name.pid"
    wait $pid
    local rc=$? seconds=$((SECONDS - start))
    rm -f "$work/$tool-$name.pid"
    local summary
    summary=$(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$log" | tail -n1)
    if [ $rc -eq 0 ]; then
        printf '  %-9s %-18s ok   %4ds  %s\n' "$tool" "$name" $seconds "$summary"
        return 0
    fi
    local timed_out=0
    { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && timed_out=1
    [ $timed_out -eq 1 ] && summary="timed out after ${check_timeout}s (SANITIZER_TIMEOUT)"
    [ $rc -eq 143 ] && summary="stopped by a signal"
    printf '  %-9s %-18s FAIL %4ds  %s (exit %d, log %s)\n' "$tool" "$name" $seconds "$summary" $rc "$log"
    grep -m5 -E '^========= (Invalid|Uninitialized|Race|Barrier|Error|Warning|Internal)' "$log" | sed 's/^/      /'
    if [ $rc -ne 99 ] && [ $rc -ne 143 ] && [ $timed_out -eq 0 ]; then  # the program itself failed: its last words
        grep -v '^=========' "$log" | grep -v '^[[:space:]]*$' | tail -n3 | sed 's/^/      /'
    fi
    return 1
}

# One check by its name: a workbench, or one of the whole-model programs.
run_named() {  # tool name
    local tool=$1 name=$2
    case $name in
        test_gpt2cu-simple) check "$tool" "$name" ./test_gpt2cu "$work/ref" --precision bf16 "${ours[@]}" ;;
        train-simple) check "$tool" "$name" "${train[@]}" "${ours[@]}" --out-dir "$work/run-$tool-simple" ;;
        test_gpt2cu) check "$tool" "$name" ./test_gpt2cu "$work/ref" --precision bf16 --matmul-tuning off ;;
        train) check "$tool" "$name" "${train[@]}" --out-dir "$work/run-$tool" ;;
        attention-v*)
            local variant=${name#attention-v} shorter=()
            # Variant 1 (fp32 CUDA cores, the fallback) reads shared memory at every multiply-add:
            # under racecheck it alone did not end within 360 s (H100, 2026-12-07). By multiply-adds
            # about 80% of it is the 1000- and 333-token cases; those of at most 257 tokens still
            # cover every head dim, partial tiles and dropout.
            [ "$variant" = 1 ] && shorter=(--max-seq-len 257)
            check "$tool" "$name" "$workbench_dir/attention" --quick --variant "$variant" "${shorter[@]}" ;;
        *) check "$tool" "$name" "$workbench_dir/$name" --quick ;;
    esac
}

checks=()  # "tool name", the whole-model programs first
for tool in "${tools[@]}"; do
    checks+=("$tool test_gpt2cu-simple" "$tool train-simple")
    case $tool in memcheck | synccheck) checks+=("$tool test_gpt2cu" "$tool train") ;; esac
done
for tool in "${tools[@]}"; do
    for bench in "${workbenches[@]}"; do
        name=$(basename "$bench")
        [ "$name" = matmul ] && [ "$tool" = racecheck -o "$tool" = initcheck ] && continue
        if [ "$name" = attention ] && [ "$tool" = racecheck ]; then
            variants=$("$bench" --list-variants) && [ -n "$variants" ] ||
                { echo "$bench --list-variants named no variant (rebuild it: make dev)"; exit 1; }
            for variant in $variants; do checks+=("$tool attention-v$variant"); done
            continue
        fi
        checks+=("$tool $name")
    done
done

# SANITIZER_CHECKS="tool:program ...": only those of the checks above (in the order above).
if [ -n "${SANITIZER_CHECKS:-}" ]; then
    read -ra wanted_checks <<<"$SANITIZER_CHECKS"
    for wanted in "${wanted_checks[@]}"; do
        [[ " ${checks[*]/ /:} " == *" $wanted "* ]] || {
            echo "SANITIZER_CHECKS: '$wanted' is not one of the checks (tool:program):"
            printf '  %s\n' "${checks[@]/ /:}"
            exit 2
        }
    done
    selected=()
    for entry in "${checks[@]}"; do
        [[ " ${wanted_checks[*]} " == *" ${entry/ /:} "* ]] && selected+=("$entry")
    done
    checks=("${selected[@]}")
fi

# The whole-model checks' inputs (needed when a check is not a workbench's): a two-layer model with
# every feature test_gpt2cu checks (dropout, fp32 residual, rotary), and token shards for the
# training run.
whole_model=0
workbench_names=" ${workbenches[*]##*/} "
for entry in "${checks[@]}"; do
    name=${entry#* }
    [[ $workbench_names == *" ${name%-v[0-9]*} "* ]] || whole_model=1  # attention-vN: the attention workbench's
done
if [ $whole_model -eq 1 ]; then
    "$PYTHON" dev/reference/gpt2_reference.py --out "$work/ref" --padded-vocab 50304 --batch 2 --seq-len 64 \
        --n-layer 2 --n-embd 128 --n-head 2 --dropout 0.1 --fp32-residual --rotary-fraction 0.5 --steps 2 \
        >"$work/ref.log" 2>&1 || { tail "$work/ref.log"; exit 1; }
    "$PYTHON" - "$work/shards" <<'PY'
import sys; sys.path.insert(0, "dev/reference")
from reference_files import write_synthetic_shards
write_synthetic_shards(sys.argv[1], 7, [("train", 20_000), ("val", 4_000)])
PY
fi

# A TERM or INT (an outer timeout, ^C) stops the checks in flight (each one's timeout forwards the
# signal to its sanitizer), starts no more, and still reports every check. The pool's shells ignore
# the signal themselves, so each stays to write its check's line and status.
stopped=0
stop_checks() {
    stopped=1
    local pid_file
    for pid_file in "$work"/*.pid; do [ -f "$pid_file" ] && kill -TERM "$(cat "$pid_file")" 2>/dev/null; done
}
trap stop_checks TERM INT

for entry in "${checks[@]}"; do
    while [ "$(jobs -pr | wc -l)" -ge "$max_jobs" ]; do wait -n; done
    [ $stopped -eq 1 ] && break
    base=$work/${entry/ /-}  # the check's files: .line, .status (and check's .log, .pid)
    { trap '' TERM INT; run_named $entry; echo $? >"$base.status"; } >"$base.line" 2>&1 &
done
while [ -n "$(jobs -pr)" ]; do wait; done  # a trapped signal ends a wait early

# The lines in a fixed order, a tool's together; a check that left no status 0 failed.
status=0
for tool in "${tools[@]}"; do
    for entry in "${checks[@]}"; do
        [ "${entry%% *}" = "$tool" ] || continue
        base=$work/${entry/ /-}
        if [ -f "$base.line" ]; then cat "$base.line"; else printf '  %-9s %-18s not run (stopped)\n' $entry; fi
        [ "$(cat "$base.status" 2>/dev/null)" = 0 ] || status=1
    done
done
[ $stopped -eq 1 ] && echo "stopped by a signal before every check had run"
[ $status -eq 0 ] && echo "sanitizer: PASS" || echo "sanitizer: FAIL"
exit $status
