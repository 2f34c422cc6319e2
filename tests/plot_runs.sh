#!/usr/bin/env bash
# scripts/plot_runs.py on synthetic runs: two run directories in the trainer's format (log.jsonl
# with train and val events, a null loss_scale and a NaN-free mfu, config.json) and a reference
# CSV give one PNG; a missing log and a bad CSV are clear errors. Without matplotlib the test
# says SKIPPED and passes (CI installs python3-matplotlib). Exit 0 = pass.
set -uo pipefail
cd "$(dirname "$0")/.."
python=""
for p in ${PYTHON:-} /usr/bin/python3 python3; do
    if "$p" -c 'import matplotlib' >/dev/null 2>&1; then python=$p; break; fi
done
if [ -z "$python" ]; then
    echo "SKIPPED: no Python with matplotlib (install python3-matplotlib) - scripts/plot_runs.py not exercised"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$python" - "$work" <<'EOF'
import json, math, os, sys
work = sys.argv[1]
for run, scale in (("run_a", 1.0), ("run_b", 0.9)):
    os.makedirs(f"{work}/{run}")
    json.dump({"experiment": "d6", "tokens_per_step": 32768}, open(f"{work}/{run}/config.json", "w"))
    with open(f"{work}/{run}/log.jsonl", "w") as log:
        for step in range(1, 101):
            loss = scale * (3 + 8 * math.exp(-step / 20))
            log.write(json.dumps({"event": "train", "step": step, "total": 100, "loss": loss, "lr": 1e-3 * min(1, step / 10),
                                  "grad_norm": 1 / step ** 0.5, "ms": 20.0, "tokens_per_s": 1.6e6, "mfu": None,
                                  "mem_gb": 3.1, "loss_scale": None}) + "\n")
            if step % 25 == 0:
                log.write(json.dumps({"event": "val", "step": step, "loss": loss + 0.1, "ppl": math.exp(loss + 0.1)}) + "\n")
                log.write(json.dumps({"event": "sample", "step": step, "text": "Once upon a time"}) + "\n")
with open(f"{work}/reference.csv", "w") as f:
    f.write("tokens,loss\n" + "".join(f"{t * 32768},{3 + 8 * math.exp(-t / 25)}\n" for t in range(1, 101)))
EOF

out=$("$python" scripts/plot_runs.py "$work/run_a" "$work/run_b" --reference "$work/reference.csv" --out "$work/both.png") \
    || fail "plot of two runs: $out"
[ "$out" = "plot: $work/both.png" ] || fail "unexpected output: $out"
"$python" - "$work/both.png" <<'EOF' || fail "both.png is not a 1600x900 PNG"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert (width, height) == (1600, 900), (width, height)
assert len(data) > 20000, "suspiciously small: empty panels?"
EOF
echo "ok: two runs and a reference curve -> $(stat -c %s "$work/both.png")-byte PNG"

out=$("$python" scripts/plot_runs.py "$work/run_a") || fail "default output: $out"
[ -f "$work/run_a/plot.png" ] || fail "one run should default to RUN_DIR/plot.png: $out"
echo "ok: one run -> RUN_DIR/plot.png"

if err=$("$python" scripts/plot_runs.py "$work/nowhere" 2>&1); then fail "a missing run directory was accepted"; fi
[[ "$err" == *"nowhere/log.jsonl does not exist"* ]] || fail "missing log message: $err"
printf 'x,y\n1,2\n' >"$work/bad.csv"
if err=$("$python" scripts/plot_runs.py "$work/run_a" --reference "$work/bad.csv" 2>&1); then fail "a bad CSV was accepted"; fi
[[ "$err" == *"needs a header with step and/or tokens"* ]] || fail "bad CSV message: $err"
echo "ok: missing run and bad reference CSV rejected with messages"
echo "PASS: plot_runs"
