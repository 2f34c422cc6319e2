#!/usr/bin/env bash
# Kill soak: a small d12 run is killed with SIGKILL at random moments (inside steps, during
# evaluation, while a checkpoint is being written) and resumed with --resume auto each time; its
# final weights must equal, bit for bit, those of the same run left alone.
#
#   scripts/test_kill_soak.sh [KILLS (default 20)] [SEED (default 1)]
#
# Needs a GPU and the `tiny` dataset (./data_prep/prepare tiny). Prints one line per kill and a
# PASS/FAIL summary; exit status 0 on pass.
set -uo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
RANDOM=${2:-1}
work=${KILL_SOAK_DIR:-build/kill_soak}
rm -rf "$work"
mkdir -p "$work"

# Short steps, frequent checkpoints and evaluations, so that random moments land in all three.
run=(-e d12 --dataset tiny --steps 60 --device-batch 8 --seq-len 256 --max-seq-len 256 --global-batch-tokens 4096
     --lr 1e-3 --warmup-steps 5 --dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1
     --val-every 7 --val-tokens 16384 --sample-every 0 --checkpoint-every 10)

echo "== reference: the same run, never interrupted"
./train_gpt2cu "${run[@]}" --out-dir "$work/reference" >"$work/reference.log" 2>&1 || { tail "$work/reference.log"; exit 1; }

# Compared from the first step, the killed run takes the reference's GEMM algorithms (two runs that
# each time their GEMMs may choose differently; train/matmul_tuning.cuh).
run+=(--matmul-tuning "$work/reference/matmul_tuning.txt")
echo "== $kills kills"
for ((k = 1; k <= kills; ++k)); do
    touch "$work/attempt-start"
    ./train_gpt2cu "${run[@]}" --out-dir "$work/killed" --resume auto >>"$work/killed.log" 2>&1 &
    pid=$!
    delay=$(printf '%d.%03d' $((RANDOM % 6)) $((RANDOM % 1000)))  # 0 to 6 s: start-up, steps, evals, writes
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        last=$(ls "$work/killed"/model_*.bin 2>/dev/null | tail -n1)
        # Where the kill landed: a checkpoint's .tmp file written by this attempt means in the
        # middle of writing it; else the run's last console line (a step, a validation, start-up).
        partial=$(find "$work/killed" -name '*.tmp' -newer "$work/attempt-start" 2>/dev/null | head -n1)
        if [ -n "$partial" ]; then
            where="while writing $(basename "$partial")"
        else
            where="after: $(tail -n1 "$work/killed.log" | cut -c1-70)"
        fi
        echo "  kill $k after ${delay} s (newest checkpoint: ${last:-none}; $where)"
    else
        wait "$pid"; echo "  kill $k: the run had already finished (status $?)"; break
    fi
done
echo "== the killed run to its end"
./train_gpt2cu "${run[@]}" --out-dir "$work/killed" --resume auto >>"$work/killed.log" 2>&1 || { tail "$work/killed.log"; exit 1; }

# The model file's weights after its 256-int header (the header holds the step, the same here).
final=model_00000060.bin
if cmp -s <(tail -c +1025 "$work/reference/$final") <(tail -c +1025 "$work/killed/$final"); then
    echo "kill soak: PASS (final weights bit-identical after $kills kills)"
else
    echo "kill soak: FAIL (final weights differ)"; exit 1
fi
