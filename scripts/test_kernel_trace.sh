#!/usr/bin/env bash
# The CUPTI kernel tracer (dev/bench/kernel_trace.cpp, which dev/bench/step_breakdown.sh loads into
# the trainer) on a GPU (`make test-gpu` runs it): a 4-step run of a small model with two
# micro-steps a step, step 3 traced. The trace holds that step and nothing else: each micro-step's
# embedding forward once (2), one AdamW update (a launch per parameter tensor); kernel names
# demangled; every record a positive interval, and a copy among them. A run without --profile-step
# writes no trace.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=${TEST_KERNEL_TRACE_DIR:-build/test_kernel_trace}
tracer=build/dev/bench/libkernel_trace.so
[ -f "$tracer" ] || { echo "test_kernel_trace: $tracer is not built (make dev)"; exit 1; }
rm -rf "$work"
mkdir -p "$work"

"$PYTHON" - "$work" <<'PY'
import sys
sys.path.insert(0, "dev/reference")
from reference_files import write_synthetic_shards
write_synthetic_shards(sys.argv[1], 97, [("train", 100_000), ("val", 10_000)])
PY

# 4 sequences of 128 tokens a micro-step, 1024 tokens a step: two micro-steps.
common=(-e d12 --n-layer 2 --n-embd 128 --n-head 2 --max-seq-len 128 --seq-len 128 --device-batch 4
        --global-batch-tokens 1024 --steps 4 --val-every 0 --sample-every 0 --checkpoint-every 0
        --train-glob "$work/synthetic_train_*.bin" --val-glob "$work/synthetic_val_*.bin")
trace=$work/trace.csv
CUDA_INJECTION64_PATH=$(realpath "$tracer") KERNEL_TRACE_FILE=$trace \
    ./train_gpt2cu "${common[@]}" --profile-step 3 --out-dir "$work/traced" >"$work/traced.log" 2>&1 ||
    { tail -5 "$work/traced.log"; exit 1; }
CUDA_INJECTION64_PATH=$(realpath "$tracer") KERNEL_TRACE_FILE=$work/untraced.csv \
    ./train_gpt2cu "${common[@]}" --out-dir "$work/untraced" >"$work/untraced.log" 2>&1 ||
    { tail -5 "$work/untraced.log"; exit 1; }

"$PYTHON" - "$trace" "$work/untraced.csv" <<'PY'
import csv, os, sys
trace, untraced = sys.argv[1], sys.argv[2]
failures = 0


def check(ok, text):
    global failures
    print(("ok: " if ok else "FAIL: ") + text)
    failures += 0 if ok else 1


check(os.path.exists(trace), f"the traced run wrote {trace}")
check(not os.path.exists(untraced), "a run without --profile-step writes no trace")
check(not os.path.exists(trace + ".partial"), "no partial file is left")
rows = list(csv.DictReader(open(trace, newline=""))) if os.path.exists(trace) else []
kernels = [row["name"] for row in rows if row["kind"] == "kernel"]
count = lambda part: sum(part in name for name in kernels)
check(len(kernels) > 20, f"{len(kernels)} kernels traced")
check(count("encoder_forward_kernel") == 2, f"one embedding forward per micro-step: {count('encoder_forward_kernel')}")
# apply_adamw() launches once per tensor of model/param_layout.cpp's GPT-2 layout: wte, wpe, lnf_w,
# lnf_b and the 12 stacked per-layer tensors. Two steps in the trace would show 32.
check(count("adamw_kernel") == 16, f"one AdamW update, a launch per parameter tensor (16): {count('adamw_kernel')}")
check(not any(name.startswith("_Z") for name in kernels), "kernel names demangled")
starts = [int(row["start_ns"]) for row in rows]
check(all(int(row["end_ns"]) > int(row["start_ns"]) for row in rows), "every record a positive interval")
check(any(row["kind"] == "memcpy" for row in rows), "the batch upload and the norm's download are traced")
span_ms = (max(int(row["end_ns"]) for row in rows) - min(starts)) / 1e6 if rows else 0
check(0 < span_ms < 1000, f"the traced span is one step: {span_ms:.2f} ms")
sys.exit(1 if failures else 0)
PY
