#!/usr/bin/env bash
# The GPU half of `make test-gpu` for the whole model:
#   1. writes PyTorch reference states (dev/reference) for several model variants and checks
#      test_gpt2cu against each, in bf16 and fp16;
#   2. resume: 20 steps in one run versus the same run resumed from its step-10 checkpoint must
#      give bit-identical losses for steps 11..20 (dropout on, gradient accumulation on);
#   3. ZeRO-2's sharded gradient path on one GPU: the same losses as ZeRO-0, and an exact resume;
#   4. non-finite gradients skip the update (bf16 and fp16) and stop a run after too many in a row;
#   5. SIGTERM checkpoints and exits with status 3, and the resume is exact.
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
# compare_losses NAME A/log.jsonl B/log.jsonl FIRST_STEP TOLERANCE: steps FIRST..20 of B against A,
# |dloss|/loss <= TOLERANCE (0: bit-identical), every step shown.
compare_losses() {
    "$PYTHON" scripts/compare_losses.py "$1" "$2" "$3" --first "$4" --tolerance "$5" --show
}
./train_gpt2cu "${common[@]}" --out-dir "$work/straight"
./train_gpt2cu "${common[@]}" --out-dir "$work/resumed" --resume "$work/straight/model_00000010.bin"
compare_losses "resume" "$work/straight/log.jsonl" "$work/resumed/log.jsonl" 11 0 || status=1

# ZeRO-2 on one GPU: the same steps, but each micro-step's gradients go through the sharded
# buffers and are added to the shard (two micro-steps per step here). Summing two fp32 partial
# gradients instead of accumulating in place changes only rounding, far below bf16's 2^-8:
# |dloss|/loss <= 2e-3, as in scripts/test_multigpu.sh. Its resume must again be exact.
echo "== ZeRO-2 (sharded gradients) on one GPU vs. ZeRO-0, and its resume"
./train_gpt2cu "${common[@]}" --zero-stage 2 --out-dir "$work/zero2"
compare_losses "ZeRO-2 vs ZeRO-0" "$work/straight/log.jsonl" "$work/zero2/log.jsonl" 1 2e-3 || status=1
./train_gpt2cu "${common[@]}" --zero-stage 2 --out-dir "$work/zero2-resumed" --resume "$work/zero2/model_00000010.bin"
compare_losses "ZeRO-2 resume" "$work/zero2/log.jsonl" "$work/zero2-resumed/log.jsonl" 11 0 || status=1
# Non-finite numbers: a NaN written into the gradients at step 5 (--inject-nan-step) must skip
# that update, in bf16 and in fp16 (where it is an overflow that halves the loss scale), and leave
# the weights exactly as step 4 left them; --nonfinite-limit such steps in a row stop the run.
echo "== non-finite gradients: the update is skipped; too many in a row stop the run"
for precision in bf16 fp16; do
    ./train_gpt2cu "${common[@]}" --precision $precision --steps 8 --checkpoint-every 1 --inject-nan-step 5 \
        --out-dir "$work/nan-$precision" || status=1
    "$PYTHON" - "$work/nan-$precision" $precision <<'PY' || status=1
import json, sys
run, precision = sys.argv[1], sys.argv[2]
train = {e["step"]: e for e in map(json.loads, open(f"{run}/log.jsonl")) if e["event"] == "train"}
want = "fp16 overflow, loss scale halved" if precision == "fp16" else "non-finite loss or gradients"
payload = lambda step: open(f"{run}/model_{step:08d}.bin", "rb").read()[1024:]  # after the 256-int header
checks = {
    "step 5 skipped with its reason": train[5]["skipped"] == want,
    "the other steps applied": all(train[s]["skipped"] is None for s in (1, 2, 3, 4, 6, 7, 8)),
    "skipped updates counted": train[8]["skipped_updates"] == 1,
    "weights after step 5 == after step 4": payload(5) == payload(4),
    "weights after step 6 != after step 5": payload(6) != payload(5),
}
if precision == "fp16":
    # each line records the scale its step ran with: step 6 runs with half of step 5's
    checks["loss scale halved"] = train[6]["loss_scale"] == train[5]["loss_scale"] / 2
for name, ok in checks.items():
    print(f"  {precision} {name:40s} {'ok' if ok else 'FAIL'}")
sys.exit(0 if all(checks.values()) else 1)
PY
done
if ./train_gpt2cu "${common[@]}" --inject-nan-step 3 --inject-nan-count 100 --nonfinite-limit 4 \
       --out-dir "$work/nan-stop" >"$work/nan-stop.log" 2>&1; then
    echo "  a run with 4 non-finite steps in a row did not stop                 FAIL"; status=1
elif grep -q "not finite in 4 steps in a row" "$work/nan-stop.log"; then
    echo "  4 non-finite steps in a row stop the run with a message               ok"
else
    echo "  the run stopped without the expected message                           FAIL"; tail -3 "$work/nan-stop.log"; status=1
fi
# A stop signal (SIGTERM; SIGINT and SIGUSR1 alike) finishes the step, writes a checkpoint and
# exits with status 3; --resume auto then continues exactly as a run that was never stopped.
echo "== SIGTERM: checkpoint, exit status 3, exact resume"
long=("${common[@]}" --steps 150 --checkpoint-every 0)
./train_gpt2cu "${long[@]}" --out-dir "$work/unstopped" >/dev/null
./train_gpt2cu "${long[@]}" --out-dir "$work/stopped" >"$work/stopped.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    [ "$(grep -c '"train"' "$work/stopped/log.jsonl" 2>/dev/null)" -ge 5 ] && break
    sleep 0.05
done
kill -TERM $pid
stop_status=0; wait $pid || stop_status=$?
stopped_at=$("$PYTHON" -c 'import json,sys; print(max(e["step"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "train"))' "$work/stopped/log.jsonl")
if [ "$stop_status" -eq 3 ] && [ "$stopped_at" -lt 150 ] && [ -f "$work/stopped/model_$(printf %08d "$stopped_at").bin" ]; then
    echo "  stopped at step $stopped_at with status 3 and its checkpoint          ok"
    ./train_gpt2cu "${long[@]}" --out-dir "$work/stopped" --resume auto >>"$work/stopped.log" 2>&1 || status=1
    "$PYTHON" scripts/compare_losses.py "resume after SIGTERM" "$work/unstopped/log.jsonl" "$work/stopped/log.jsonl" \
        --first 1 --last 150 --tolerance 0 || status=1
else
    echo "  SIGTERM: status $stop_status at step $stopped_at                                FAIL"; tail -3 "$work/stopped.log"; status=1
fi
[ "$status" -eq 0 ] || { echo "test_gpt2cu failed: see the comparisons above"; exit "$status"; }
