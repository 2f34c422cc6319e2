#!/usr/bin/env bash
# compute-sanitizer's four tools (memcheck, racecheck, initcheck, synccheck): every tool must report
# 0 errors on each program it runs.
#   - Our kernels, one workbench at a time (build/dev/cuda/*, --quick: every kernel and variant,
#     validated on small shapes), under all four tools; the GEMM workbench (our epilogue kernels
#     between cuBLASLt's GEMMs) under memcheck and synccheck only, as the whole programs below.
#   - test_gpt2cu and a short training run at a small size (the whole model with cuBLASLt's GEMMs)
#     under memcheck and synccheck. racecheck and initcheck do not run them: on CUDA 13.1's
#     cuBLASLt (H100, compute-sanitizer 2025.3.1) racecheck stops with "Internal Sanitizer Error"
#     in the first GEMM, and initcheck reports reads of memory that cuBLASLt's own kernels and the
#     GEMMs' outputs left "uninitialized" (2026-12-07, README).
#
#   scripts/test_sanitizer.sh          (make sanitize; needs a GPU, compute-sanitizer, PyTorch)
#   SANITIZER_TOOLS="racecheck initcheck" scripts/test_sanitizer.sh    (some of the tools only)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SANITIZER=${SANITIZER:-compute-sanitizer}
work=${SANITIZE_DIR:-build/sanitize}
rm -rf "$work"
mkdir -p "$work"
command -v "$SANITIZER" >/dev/null || { echo "compute-sanitizer not found (set SANITIZER=/path)"; exit 1; }

# A two-layer model with every feature test_gpt2cu checks: dropout, fp32 residual, rotary.
"$PYTHON" dev/reference/gpt2_reference.py --out "$work/ref" --padded-vocab 50304 --batch 2 --seq-len 64 \
    --n-layer 2 --n-embd 128 --n-head 2 --dropout 0.1 --fp32-residual --rotary-fraction 0.5 --steps 2 \
    >"$work/ref.log" 2>&1 || { tail "$work/ref.log"; exit 1; }
"$PYTHON" - "$work/shards" <<'PY'
import sys; sys.path.insert(0, "dev/reference")
from reference_files import write_synthetic_shards
write_synthetic_shards(sys.argv[1], 7, [("train", 20_000), ("val", 4_000)])
PY
train=(./train_gpt2cu -e d12 --n-layer 2 --n-embd 128 --n-head 2 --seq-len 64 --max-seq-len 64 --device-batch 2
       --global-batch-tokens 256 --steps 3 --dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1
       --val-every 3 --val-tokens 256 --sample-every 0 --checkpoint-every 3
       --train-glob "$work/shards/synthetic_train_*.bin" --val-glob "$work/shards/synthetic_val_*.bin")

workbenches=()
for bench in build/dev/cuda/*; do
    case $(basename "$bench") in
        nccl_allreduce | *.d) continue ;;  # NCCL's kernels, not ours
    esac
    [ -x "$bench" ] && [ -f "$bench" ] && workbenches+=("$bench")
done
[ ${#workbenches[@]} -gt 0 ] || { echo "no workbenches in build/dev/cuda (make dev)"; exit 1; }

status=0
check() {  # tool name command...
    local tool=$1 name=$2; shift 2
    local log=$work/$tool-$name.log
    "$SANITIZER" --tool "$tool" --error-exitcode 99 --print-limit 20 "$@" >"$log" 2>&1
    local rc=$?
    local summary
    summary=$(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$log" | tail -n1)
    if [ $rc -eq 0 ]; then
        printf '  %-9s %-16s ok    %s\n' "$tool" "$name" "$summary"
    else
        printf '  %-9s %-16s FAIL  %s (exit %d, log %s)\n' "$tool" "$name" "$summary" $rc "$log"
        grep -m5 -E '^========= (Invalid|Uninitialized|Race|Barrier|Error|Warning|Internal)' "$log" | sed 's/^/      /'
        status=1
    fi
}
for tool in ${SANITIZER_TOOLS:-memcheck racecheck initcheck synccheck}; do
    case $tool in memcheck | racecheck | initcheck | synccheck) ;;
        *) echo "SANITIZER_TOOLS: unknown tool '$tool' (memcheck, racecheck, initcheck, synccheck)"; exit 2 ;;
    esac
    for bench in "${workbenches[@]}"; do
        [ "$(basename "$bench")" = matmul ] && [ "$tool" = racecheck -o "$tool" = initcheck ] && continue
        check "$tool" "$(basename "$bench")" "$bench" --quick
    done
    case $tool in memcheck | synccheck)
        check "$tool" test_gpt2cu ./test_gpt2cu "$work/ref" --precision bf16
        check "$tool" train "${train[@]}" --out-dir "$work/run-$tool" ;;
    esac
done
[ $status -eq 0 ] && echo "sanitizer: PASS" || echo "sanitizer: FAIL"
exit $status
