#!/usr/bin/env bash
# The GPU half of `make test-gpu` for the whole model:
#   1. writes PyTorch reference states (dev/reference) for several model variants and checks
#      test_gpt2cu against each, in bf16 and fp16 (on an H100-class GPU, whose model runs the
#      Hopper attention, also on the mma.sync attention, --attention-kernel tensor-cores);
#   2. resume: 20 steps in one run versus the same run resumed from its step-10 checkpoint must
#      give bit-identical losses for steps 11..20 (dropout on, gradient accumulation on); the
#      matmul tuning record that makes it so is saved, replayed, and refused where it cannot apply;
#   3. ZeRO-2's sharded gradient path on one GPU: the same losses as ZeRO-0, and an exact resume;
#   4. non-finite gradients skip the update (bf16 and fp16) and stop a run after too many in a row;
#   5. SIGTERM checkpoints and exits with status 3, and the resume is exact;
#   6. --eval-only on a checkpoint gives exactly the validation loss its run logged at that step,
#      the test split is evaluated after training and by --eval-only, and --device-batch auto
#      picks, prints and trains with the largest device batch that fits;
#   7. checkpoint retention in a real run: the directory ends with the newest checkpoint, the best
#      by validation loss and the progress checkpoints, and nothing else;
#   8. --cuda-graphs 1 trains exactly as --cuda-graphs 0: the same losses and weights bit for bit
#      (pre-norm with --timeline-step's eager step among the replays, post-norm, fp16 with loss-scale
#      changes and the fp32 residual, ZeRO-1 and ZeRO-2 on one GPU), and its resume is exact.
# `scripts/test_gpt2cu.sh --only cuda-graphs` runs section 8 alone (it needs train_gpt2cu only).
set -euo pipefail
cd "$(dirname "$0")/.."
only=
case "$*" in
    "") ;;
    "--only cuda-graphs") only=cuda-graphs ;;
    *) echo "usage: scripts/test_gpt2cu.sh [--only cuda-graphs]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
work=${TEST_GPT2_DIR:-build/test_gpt2}
rm -rf "$work"
mkdir -p "$work"
# A failing comparison must not hide the later checks: remember it, report it at the end.
status=0

# The training runs' data and settings: dropout on, two micro-steps per step.
"$PYTHON" - "$work/shards" <<'PY'
import sys; sys.path.insert(0, "dev/reference")
from reference_files import write_synthetic_shards
write_synthetic_shards(sys.argv[1], 1234, [("train", 400_000), ("val", 40_000), ("test", 30_000)])
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

# 8. CUDA graphs (train/step_graph.cuh) replay the eager launches with the same arguments on the
# same inputs, so everything must be bit-identical: tolerance 0, and the weights after step 20
# byte for byte. The variants cover every kernel that reads a dropout offset from device memory
# (LayerNorm pre- and post-norm, the post-norm embedding dropout, attention, bf16 and fp16, the
# fp32 residual), a step that runs eagerly among replays (--timeline-step), the micro-step graph
# captured again when the fp16 loss scale changes (it doubles every 4 clean steps here and halves
# at the NaN of step 9), and the AdamW graph over ZeRO-1's and ZeRO-2's gradient storage (ZeRO-2's
# micro-steps stay eager: their backward hands gradients to the comm stream). With two micro-steps
# a step, both micro-step graphs are captured: the first stores the gradients, the second adds to
# them. The resume's first step is eager; graphs are captured in its second.
cuda_graphs_checks() {
    echo "== --cuda-graphs 1: the losses and weights of --cuda-graphs 0, bit for bit; an exact resume"
    local micro_steps="a step's first micro-step (forward and backward, storing the gradients)"
    micro_steps+=";a later micro-step (forward and backward, adding to the gradients)"
    local variant name expects expect flags
    for variant in "prenorm|$micro_steps|--timeline-step 5" "postnorm|$micro_steps|--post-norm 1" \
                   "fp16|$micro_steps|--precision fp16 --fp32-residual 1 --loss-scale-growth-interval 4 --inject-nan-step 9" \
                   "zero1|$micro_steps|--zero-stage 1" "zero2|the AdamW update|--zero-stage 2"; do
        IFS='|' read -r name expects flags <<<"$variant"
        # shellcheck disable=SC2086  # flags: words
        ./train_gpt2cu "${common[@]}" $flags --cuda-graphs 0 --out-dir "$work/eager-$name" >"$work/eager-$name.log" 2>&1 ||
            { echo "  $name: the eager run failed"; tail -5 "$work/eager-$name.log"; status=1; continue; }
        # shellcheck disable=SC2086
        ./train_gpt2cu "${common[@]}" $flags --cuda-graphs 1 --out-dir "$work/graphs-$name" >"$work/graphs-$name.log" 2>&1 ||
            { echo "  $name: the run with graphs failed"; tail -5 "$work/graphs-$name.log"; status=1; continue; }
        grep "^CUDA graphs" "$work/graphs-$name.log" | sed "s/^/  $name: /" || true
        IFS=';' read -ra expect_list <<<"$expects"
        for expect in "${expect_list[@]}"; do
            grep -qF "CUDA graphs: captured $expect at step 2 " "$work/graphs-$name.log" ||
                { echo "  $name: $expect was not captured at step 2                          FAIL"; status=1; }
        done
        compare_losses "graphs vs eager ($name)" "$work/eager-$name/log.jsonl" "$work/graphs-$name/log.jsonl" 1 0 || status=1
        if cmp -s <(tail -c +1025 "$work/eager-$name/model_00000020.bin") <(tail -c +1025 "$work/graphs-$name/model_00000020.bin"); then
            echo "  $name: weights after step 20 identical (after the 1024-byte header)   ok"
        else
            echo "  $name: weights after step 20 differ                                   FAIL"; status=1
        fi
    done
    ./train_gpt2cu "${common[@]}" --cuda-graphs 1 --out-dir "$work/graphs-resumed" \
        --resume "$work/graphs-prenorm/model_00000010.bin" >"$work/graphs-resumed.log" 2>&1 ||
        { tail -5 "$work/graphs-resumed.log"; status=1; }
    compare_losses "graphs: resume" "$work/graphs-prenorm/log.jsonl" "$work/graphs-resumed/log.jsonl" 11 0 || status=1
}
if [ "$only" = cuda-graphs ]; then
    cuda_graphs_checks
    [ "$status" -eq 0 ] || { echo "test_gpt2cu --only cuda-graphs failed: see the comparisons above"; exit "$status"; }
    exit 0
fi

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

./test_gpt2cu "$work"/base "$work"/postnorm "$work"/rotary "$work"/dropout "$work"/oddlength || status=$?
if [ "$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1)" = "9.0" ]; then
    echo "== the same references on the mma.sync attention (--attention-kernel tensor-cores: every other GPU's)"
    ./test_gpt2cu "$work"/base "$work"/postnorm "$work"/rotary "$work"/dropout "$work"/oddlength \
        --attention-kernel tensor-cores || status=$?
fi

echo "== resume: 20 steps straight vs. resumed at step 10"
./train_gpt2cu "${common[@]}" --matmul-tuning auto --out-dir "$work/straight"
./train_gpt2cu "${common[@]}" --out-dir "$work/resumed" --resume "$work/straight/model_00000010.bin" | tee "$work/resumed.log"
compare_losses "resume" "$work/straight/log.jsonl" "$work/resumed/log.jsonl" 11 0 || status=1

# The matmul tuning record (train/matmul_tuning.cuh): the straight run (--matmul-tuning auto)
# timed its GEMMs in its first step and saved the choices; the resumed run replayed them (which made it exact above). A
# record of another GPU is not replayed, with a note; a malformed one stops the run, naming it.
echo "== matmul tuning record: saved, replayed on resume, refused when it cannot apply"
sed 's/^device .*/device Some Other GPU/' "$work/straight/matmul_tuning.txt" >"$work/other-gpu-record.txt"
./train_gpt2cu "${common[@]}" --steps 1 --checkpoint-every 0 --matmul-tuning "$work/other-gpu-record.txt" \
    --out-dir "$work/other-gpu" >"$work/other-gpu.log" 2>&1 || status=1
printf 'matmul-tuning-record 2\ndevice X\ncublaslt 1\nforward bf16 1 2 3\n' >"$work/broken-record.txt"
broken_status=0
./train_gpt2cu "${common[@]}" --steps 1 --matmul-tuning "$work/broken-record.txt" --out-dir "$work/broken" \
    >"$work/broken.log" 2>&1 || broken_status=$?
"$PYTHON" - "$work" "$broken_status" <<'PY' || status=1
import sys
work, broken_status = sys.argv[1], int(sys.argv[2])
record = open(f"{work}/straight/matmul_tuning.txt").read().splitlines()
choices = [line.split() for line in record if line and not line.startswith("#")][3:]
other = open(f"{work}/other-gpu.log").read()
broken = open(f"{work}/broken.log").read()
checks = {
    "the run saved a version-2 record": "matmul-tuning-record 2" in record,
    f"every GEMM shape of the step in it, timed ({len(choices)} shapes)":
        len(choices) == 15 and all(c[9] == "timed" for c in choices),
    "the resumed run replayed it": f"matmul: replaying {work}/straight/matmul_tuning.txt (15 GEMM shapes)"
                                   in open(f"{work}/resumed.log").read(),
    "another GPU's record is not replayed, with a note":
        "is not replayed: its choices were made on Some Other GPU" in other,
    "... and that run timed its GEMMs again": "15 GEMM shapes, 15 of them chosen by timing" in other,
    "a malformed record stops the run, naming the file and line":
        broken_status != 0 and f"{work}/broken-record.txt, line 4: 5 fields where 14 are expected" in broken,
}
for name, ok in checks.items():
    print(f"  {name:60s} {'ok' if ok else 'FAIL'}")
sys.exit(0 if all(checks.values()) else 1)
PY

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
# exits with status 3; --resume auto then continues exactly as a run that was never stopped. The
# stopped run is compared from its first step, so it takes the unstopped run's GEMM algorithms
# (two runs that each time their GEMMs may choose differently).
echo "== SIGTERM: checkpoint, exit status 3, exact resume"
long=("${common[@]}" --steps 150 --checkpoint-every 0)
./train_gpt2cu "${long[@]}" --out-dir "$work/unstopped" >/dev/null
long+=(--matmul-tuning "$work/unstopped/matmul_tuning.txt")
./train_gpt2cu "${long[@]}" --out-dir "$work/stopped" >"$work/stopped.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    # Before the run has created its log, grep prints nothing: count that as 0 steps.
    steps_logged=$(grep -c '"train"' "$work/stopped/log.jsonl" 2>/dev/null) || true
    [ "${steps_logged:-0}" -ge 5 ] && break
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
# Evaluation modes. The validation split (40,000 tokens: 312 windows of 129 with stride 128) is
# read whole; --eval-only of the step-5 checkpoint reads the same windows in the same batches with
# the same weights (the model file's fp32 master rounded as training rounds it), so its loss must
# equal the one the run logged at step 5 bit for bit. Another device batch (5: the last batch
# holds 2 windows) reads the same windows in other matmul shapes: 2e-3 relative, as ZeRO-2 above.
echo "== --eval-only: the run's validation loss at that step, exactly; the test split"
evaluated=("${common[@]}" --steps 10 --val-every 5 --checkpoint-every 5 --test-glob "$work/shards/synthetic_test_*.bin")
./train_gpt2cu "${evaluated[@]}" --out-dir "$work/evaluated" >"$work/evaluated.log" 2>&1 || { tail -5 "$work/evaluated.log"; status=1; }
./train_gpt2cu "${evaluated[@]}" --out-dir "$work/evaluated" --eval-only 1 --resume "$work/evaluated/model_00000005.bin" \
    >"$work/eval-only.log" 2>&1 || { tail -5 "$work/eval-only.log"; status=1; }
./train_gpt2cu -e "$work/evaluated/model_00000010.bin" --eval-only 1 --seq-len 128 --device-batch 5 \
    --val-glob "$work/shards/synthetic_val_*.bin" --test-glob "$work/shards/synthetic_test_*.bin" \
    --out-dir "$work/eval-file" >"$work/eval-file.log" 2>&1 || { tail -5 "$work/eval-file.log"; status=1; }
cat "$work/eval-only.log" "$work/eval-file.log"
"$PYTHON" - "$work" <<'PY' || status=1
import json, sys
work = sys.argv[1]
events = lambda run: [json.loads(line) for line in open(f"{work}/{run}/log.jsonl")]
run, by_file = events("evaluated"), events("eval-file")
val = {e["step"]: e["loss"] for e in run if e["event"] == "val"}
evals = {(e["step"], e["split"], e["checkpoint"] is not None): e for e in run + by_file if e["event"] == "eval"}
print(f"  val at step 5: {val[5]!r}; --eval-only --resume: {evals[(5, 'val', True)]['loss']!r}")
print(f"  val at step 10: {val[10]!r}; --eval-only -e FILE, device batch 5: {evals[(10, 'val', True)]['loss']!r}")
checks = {
    "--eval-only val loss == the run's at step 5 (bit-exact)": evals[(5, "val", True)]["loss"] == val[5],
    "--eval-only read the whole val split (312 x 128 tokens)": evals[(5, "val", True)]["tokens"] == 312 * 128,
    "--eval-only evaluated the test split (234 x 128 tokens)": evals[(5, "test", True)]["tokens"] == 234 * 128,
    "the run evaluated the test split after step 10": evals[(10, "test", False)]["tokens"] == 234 * 128,
    "-e FILE, device batch 5: val loss within 2e-3": abs(evals[(10, "val", True)]["loss"] - val[10]) <= 2e-3 * val[10],
    "-e FILE, device batch 5: test loss within 2e-3 of the run's":
        abs(evals[(10, "test", True)]["loss"] - evals[(10, "test", False)]["loss"]) <= 2e-3 * evals[(10, "test", False)]["loss"],
    "--eval-only left the run's config.json alone": json.load(open(f"{work}/evaluated/config.json"))["eval_only"] is False,
}
for name, ok in checks.items():
    print(f"  {name:60s} {'ok' if ok else 'FAIL'}")
sys.exit(0 if all(checks.values()) else 1)
PY
# --device-batch auto (the default): 8 sequences per step fit at once; 4,096 sequences of 1,024
# tokens of d12 do not, so the largest power of two whose memory plan fits is chosen, printed with
# the next larger one's need, and a step must then run in that memory.
echo "== --device-batch auto: the largest device batch that fits, printed, and it trains"
./train_gpt2cu "${common[@]}" --device-batch auto --steps 2 --out-dir "$work/auto-small" >"$work/auto-small.log" 2>&1 || status=1
./train_gpt2cu -e d12 --device-batch auto --global-batch-tokens 4194304 --steps 1 --val-every 0 --sample-every 0 \
    --train-glob "$work/shards/synthetic_train_*.bin" --val-glob "$work/shards/synthetic_val_*.bin" \
    --out-dir "$work/auto-large" >"$work/auto-large.log" 2>&1 || { tail -5 "$work/auto-large.log"; status=1; }
grep -h "(auto)" "$work/auto-small.log" "$work/auto-large.log"
"$PYTHON" - "$work" <<'PY' || status=1
import json, re, sys
work = sys.argv[1]
small, large = (json.load(open(f"{work}/{run}/config.json")) for run in ("auto-small", "auto-large"))
line = [l for l in open(f"{work}/auto-large.log") if "(auto)" in l]
steps = [json.loads(l) for l in open(f"{work}/auto-large/log.jsonl") if '"train"' in l]
b = large["device_batch"]
checks = {
    "8 sequences per step: device batch 8, no accumulation": (small["device_batch"], small["grad_accum"]) == (8, 1),
    f"4096 sequences: a power of two, memory-bound (B {b})": (b & (b - 1)) == 0 and 8 <= b < 4096 and
        large["grad_accum"] * b == 4096 and bool(line) and "would need" in line[0],
    "the chosen batch trained a step": len(steps) == 1 and steps[0]["loss"] is not None,
}
for name, ok in checks.items():
    print(f"  {name:60s} {'ok' if ok else 'FAIL'}")
sys.exit(0 if all(checks.values()) else 1)
PY
# Checkpoint retention as the seed keeps checkpoints (host/checkpoint_retention.h): every 3 steps,
# the 2 best by validation loss (evaluated at each), progress checkpoints at multiples of 10 (also
# written where the 3-step series does not fall). Kept sets only shrink as checkpoints are added, so
# what the run leaves must be: the newest, multiples of 10, and the 2 lowest logged validation
# losses (ties: the earlier step), each with its state file.
echo "== checkpoint retention: the newest, the 2 best by validation loss, the progress checkpoints"
./train_gpt2cu "${common[@]}" --steps 24 --checkpoint-every 3 --val-every 3 --keep-best-checkpoints 2 \
    --keep-checkpoint-every 10 --out-dir "$work/pruned" >"$work/pruned.log" 2>&1 || { tail -5 "$work/pruned.log"; status=1; }
grep -m1 "| checkpoint " "$work/pruned.log" || true
"$PYTHON" - "$work/pruned" <<'PY' || status=1
import json, os, re, sys
run = sys.argv[1]
val = {e["step"]: e["loss"] for e in map(json.loads, open(f"{run}/log.jsonl")) if e["event"] == "val"}
files = sorted(os.listdir(run))
models = sorted(int(m.group(1)) for f in files if (m := re.fullmatch(r"model_(\d{8})\.bin", f)))
states = sorted(int(m.group(1)) for f in files if (m := re.fullmatch(r"state_(\d{8})_rank\d{5}\.bin", f)))
best = sorted(sorted(val, key=lambda step: (val[step], step))[:2])
expected = sorted({24, 10, 20, *best})
print("  directory:", " ".join(f for f in files if f.endswith(".bin")))
print("  validation losses:", ", ".join(f"{step}: {loss:.4f}" for step, loss in sorted(val.items())))
ok = models == expected and states == expected and sorted(val) == list(range(3, 25, 3))
print(f"  kept {models}, expected newest + best {best} + progress [10, 20] = {expected}  {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
cuda_graphs_checks
[ "$status" -eq 0 ] || { echo "test_gpt2cu failed: see the comparisons above"; exit "$status"; }
