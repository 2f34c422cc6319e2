#!/usr/bin/env bash
# The GPU half of `make test-gpu` for the whole model:
#   1. writes PyTorch reference states (dev/reference) for several model variants and checks
#      test_gpt2cu against each, in bf16 and fp16;
#   2. resume: 20 steps in one run versus the same run resumed from its step-10 checkpoint must
#      give bit-identical losses for steps 11..20 (dropout on, gradient accumulation on).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=${TEST_GPT2_DIR:-build/test_gpt2}
rm -rf "$work"
mkdir -p "$work"

reference() {  # name, flags...
    local name=$1; shift
    echo "== reference state: $name ($*)"
    "$PYTHON" dev/reference/gpt2_reference.py --out "$work/$name" --padded-vocab 50304 --batch 4 --seq-len 128 "$@"
}
# Head dims 64, 80, 96 and 128 across the variants (every preset's).
reference base      --n-layer 4 --n-embd 256 --n-head 4
reference postnorm  --n-layer 3 --n-embd 320 --n-head 4 --post-norm
reference rotary    --n-layer 3 --n-embd 384 --n-head 3 --rotary-fraction 0.5 --scale-attn-by-inverse-layer-idx
reference dropout   --n-layer 3 --n-embd 384 --n-head 4 --dropout 0.1 --fp32-residual
reference oddlength --n-layer 2 --n-embd 256 --n-head 4 --seq-len 100 --batch 3 --rotary-fraction 1.0 --rotary-interleaved

# A failing comparison must not hide the resume check: remember it, report it at the end.
status=0
./test_gpt2cu "$work"/base "$work"/postnorm "$work"/rotary "$work"/dropout "$work"/oddlength || status=$?

echo "== resume: 20 steps straight vs. resumed at step 10"
"$PYTHON" - "$work/shards" <<'PY'
import os, sys, numpy as np
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234)
for split, n in (("train", 400_000), ("val", 40_000)):
    tokens = rng.integers(0, 50257, size=n, dtype=np.uint16)
    header = np.zeros(256, dtype="<i4"); header[:3] = (20240520, 1, n)
    with open(f"{out}/synthetic_{split}_000000.bin", "wb") as f:
        f.write(header.tobytes()); f.write(tokens.astype("<u2").tobytes())
PY
common=(-e d12 --n-layer 2 --n-embd 256 --n-head 4 --max-seq-len 128 --seq-len 128 --device-batch 4
        --global-batch-tokens 1024 --steps 20 --lr 1e-3 --warmup-steps 5 --val-every 0 --sample-every 0
        --checkpoint-every 10 --dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1
        --train-glob "$work/shards/synthetic_train_*.bin" --val-glob "$work/shards/synthetic_val_*.bin")
./train_gpt2cu "${common[@]}" --out-dir "$work/straight"
./train_gpt2cu "${common[@]}" --out-dir "$work/resumed" --resume "$work/straight/model_00000010.bin"
"$PYTHON" - "$work/straight/log.jsonl" "$work/resumed/log.jsonl" <<'PY'
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        event = json.loads(line)
        if event.get("event") == "train":
            out[event["step"]] = event["loss"]
    return out
straight, resumed = losses(sys.argv[1]), losses(sys.argv[2])
steps = list(range(11, 21))
bad = [s for s in steps if s not in resumed or resumed[s] != straight[s]]
for s in steps:
    print(f"  step {s}: straight {straight[s]!r}  resumed {resumed.get(s)!r}")
if bad:
    sys.exit(f"resume FAILED: steps {bad} differ")
print("resume: steps 11..20 bit-identical")
PY
[ "$status" -eq 0 ] || { echo "test_gpt2cu failed (exit status $status): see the comparison above"; exit "$status"; }
