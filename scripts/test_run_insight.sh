#!/usr/bin/env bash
# The GPU half of the trainer's insight features (`make test-gpu` runs it):
#   1. the norm monitor: at step 4 its weight statistics are those of the step-3 checkpoint
#      (the weights before step 4's update), computed here in numpy, and its gradient L2 norm is
#      the step's gradient norm in log.jsonl (a different kernel); ZeRO-0 and ZeRO-2 (the sharded
#      gradient path, on one GPU) alike;
#   2. TensorBoard: the event file beside log.jsonl parses with the independent reader
#      (tests/tensorboard_reader.py) and its train/loss, val/loss and HellaSwag scalars are the
#      log's, rounded to float32;
#   3. HellaSwag: random items in HellaSwag's format evaluated during training (--hellaswag-every)
#      give at the last step exactly what --hellaswag-only and --eval-only give on the final
#      checkpoint, and --hellaswag-items caps the count.
# scripts/test_hf_interop.py checks the scoring and the logits against transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=${TEST_RUN_INSIGHT_DIR:-build/test_run_insight}
rm -rf "$work"
mkdir -p "$work"

"$PYTHON" - "$work" <<'PY'
import sys
out = sys.argv[1]
sys.path.insert(0, "dev/reference")
from reference_files import write_hellaswag_items, write_synthetic_shards
rng = write_synthetic_shards(out, 4321, [("train", 200_000), ("val", 20_000)])
# 30 items in HellaSwag's format, rows of at most 100 tokens.
items = []
for _ in range(30):
    context = rng.integers(0, 50257, size=int(rng.integers(5, 50))).tolist()
    endings = [rng.integers(0, 50257, size=int(rng.integers(1, 50))).tolist() for _ in range(4)]
    items.append((int(rng.integers(0, 4)), context, endings))
write_hellaswag_items(f"{out}/hellaswag.bin", items)
PY

common=(-e d12 --n-layer 2 --n-embd 128 --n-head 2 --max-seq-len 128 --seq-len 128 --device-batch 4
        --global-batch-tokens 1024 --steps 6 --lr 1e-3 --warmup-steps 2 --val-every 3 --sample-every 0
        --checkpoint-every 3 --norm-monitor-every 4 --hellaswag-every 3 --hellaswag-file "$work/hellaswag.bin"
        --train-glob "$work/synthetic_train_*.bin" --val-glob "$work/synthetic_val_*.bin")
status=0
for zero in 0 2; do
    echo "== a 6-step run, ZeRO-$zero: norms at step 4, TensorBoard, HellaSwag at steps 3 and 6"
    run=$work/zero$zero
    ./train_gpt2cu "${common[@]}" --zero-stage "$zero" --out-dir "$run"
    hellaswag_only=$(./train_gpt2cu -e "$run/model_00000006.bin" --hellaswag-only 1 --device-batch 4 \
                         --hellaswag-file "$work/hellaswag.bin" | grep '^HELLASWAG ')
    capped=$(./train_gpt2cu -e "$run/model_00000006.bin" --hellaswag-only 1 --device-batch 4 \
                 --hellaswag-file "$work/hellaswag.bin" --hellaswag-items 7 | grep '^HELLASWAG ')
    ./train_gpt2cu "${common[@]}" --zero-stage "$zero" --eval-only 1 --resume "$run/model_00000006.bin" \
        --out-dir "$run/eval-only" > "$run/eval-only.log" 2>&1 || { tail -5 "$run/eval-only.log"; status=1; }
    "$PYTHON" - "$run" "$hellaswag_only" "$capped" <<'PY' || status=1
import glob, json, math, subprocess, sys
import numpy as np
sys.path.insert(0, "dev/reference")
from reference_files import read_checkpoint
run, hellaswag_only, capped = sys.argv[1], sys.argv[2], sys.argv[3]
failures = 0


def check(ok, text):
    global failures
    failures += not ok
    print(f"{'ok' if ok else 'FAIL'}: {text}")


events = [json.loads(line) for line in open(f"{run}/log.jsonl")]
norms = [e for e in events if e["event"] == "norms"]
check([e["step"] for e in norms] == [4], f"one norms event, at step 4: {[e['step'] for e in norms]}")
train4 = next(e for e in events if e["event"] == "train" and e["step"] == 4)
cfg, params = read_checkpoint(f"{run}/model_00000003.bin")
worst_mean = worst_max = 0.0
l1 = l2 = 0.0
tensors = norms[0]["tensors"]
for name, values in params.items():
    values = values.astype(np.float64)
    layers = [(f"layers.{l}.{name}", values[l]) for l in range(cfg.n_layer)] if values.shape[0] == cfg.n_layer \
        and name not in ("wte", "wpe") else [(name, values)]
    for label, v in layers:
        stats = tensors[label]
        largest, mean = np.abs(v).max(), np.abs(v).mean()
        worst_max = max(worst_max, abs(stats["weight_max"] - largest) / max(largest, 1e-30))
        worst_mean = max(worst_mean, abs(stats["weight_mean"] - mean) / max(mean, 1e-30))
        l1 += np.abs(v).sum(); l2 += (v * v).sum()
expected_names = sum(cfg.n_layer if (p.shape[0] == cfg.n_layer and n not in ("wte", "wpe")) else 1
                     for n, p in params.items())
check(len(tensors) == expected_names, f"{len(tensors)} tensors reported, {expected_names} in the checkpoint")
# The maxima are the same fp32 numbers; the means are fp64 sums in another order: 1e-12.
check(worst_max == 0.0, f"weight_max = the step-3 checkpoint's largest |w| (worst relative difference {worst_max:.1e})")
check(worst_mean <= 1e-12, f"weight_mean = the checkpoint's mean |w| (worst relative difference {worst_mean:.1e})")
check(abs(norms[0]["weight_l1"] - l1) <= 1e-12 * l1 and abs(norms[0]["weight_l2"] - math.sqrt(l2)) <= 1e-12 * math.sqrt(l2),
      f"weight L1 {norms[0]['weight_l1']:.6f} / L2 {norms[0]['weight_l2']:.6f} vs {l1:.6f} / {math.sqrt(l2):.6f}")
# grad_norm: the optimizer's deterministic fp64 sum of squares, rounded to fp32 once.
relative = abs(norms[0]["grad_l2"] - train4["grad_norm"]) / train4["grad_norm"]
check(relative <= 1e-6, f"grad L2 {norms[0]['grad_l2']:.7g} = step 4's grad_norm {train4['grad_norm']:.7g} "
                        f"(relative {relative:.1e})")
check(all(t["grad_max"] > 0 and t["grad_mean"] > 0 for name, t in tensors.items() if "wpe" not in name),
      "every tensor has a gradient")

hellaswag = [e for e in events if e["event"] == "hellaswag"]
check([e["step"] for e in hellaswag] == [3, 6] and all(e["items"] == 30 for e in hellaswag),
      f"HellaSwag at steps 3 and 6 over 30 items: {hellaswag}")
only = dict(f.split("=") for f in hellaswag_only.split()[1:])
check(float(only["acc"]) == round(hellaswag[-1]["acc"], 6) and float(only["acc_norm"]) == round(hellaswag[-1]["acc_norm"], 6),
      f"--hellaswag-only on the final checkpoint ({hellaswag_only}) = the run's step-6 evaluation "
      f"(acc {hellaswag[-1]['acc']}, acc_norm {hellaswag[-1]['acc_norm']})")
check(capped.split()[-1] == "items=7", f"--hellaswag-items 7: {capped}")
eval_only = [json.loads(line) for line in open(f"{run}/eval-only/log.jsonl")]
eval_hellaswag = [(e["step"], e["acc"], e["acc_norm"]) for e in eval_only if e["event"] == "hellaswag"]
check(eval_hellaswag == [(6, hellaswag[-1]["acc"], hellaswag[-1]["acc_norm"])],
      f"--eval-only --resume on the final checkpoint adds HellaSwag, the run's step-6 result: {eval_hellaswag}")

files = glob.glob(f"{run}/events.out.tfevents.*")
check(len(files) == 1, f"one TensorBoard event file: {files}")
decoded = subprocess.run([sys.executable, "tests/tensorboard_reader.py", files[0]], capture_output=True, text=True)
check(decoded.returncode == 0, f"the event file parses: {decoded.stdout[-200:]}{decoded.stderr[-500:]}")
scalars = {}
for line in decoded.stdout.splitlines():
    event = json.loads(line)
    for value in event.get("values", []):
        scalars[(value["tag"], event["step"])] = value["simple_value"]
f32 = lambda x: float(np.float32(x))
for e in events:
    if e["event"] == "train":
        check(scalars.get(("train/loss", e["step"])) == f32(e["loss"]), f"train/loss at step {e['step']} = the log's")
    elif e["event"] == "val":
        check(scalars.get(("val/loss", e["step"])) == f32(e["loss"]), f"val/loss at step {e['step']} = the log's")
    elif e["event"] == "hellaswag":
        check(scalars.get(("hellaswag/acc_norm", e["step"])) == f32(e["acc_norm"]), f"hellaswag/acc_norm at step {e['step']}")
check(scalars.get(("norms/grad_l2", 4)) == f32(norms[0]["grad_l2"]), "norms/grad_l2 at step 4 = the log's")
print(f"{'FAIL' if failures else 'PASS'}: {run}")
sys.exit(1 if failures else 0)
PY
done
if [ "$status" -ne 0 ]; then echo "FAIL: test_run_insight"; exit 1; fi
echo "PASS: test_run_insight"
