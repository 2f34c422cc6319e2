#!/usr/bin/env bash
# Multi-GPU checks (issue: data-parallel training), on a machine with 2 or more GPUs:
#   1. the same global batch on 1, 2 and 4 GPUs (accumulation 4, 2, 1) gives the same losses
#      within a stated tolerance, through the --nproc launcher and through mpirun;
#   2. the gradient all-reduce overlapped with the backward pass (the default) and run after it
#      (--overlap-grad-reduce 0) give the same losses;
#   3. ZeRO-0, ZeRO-1 and ZeRO-2 agree (ZeRO-2 also with gradient accumulation), and the memory
#      each takes per GPU for gpt2l;
#   3b. the norm monitor and HellaSwag over ranks (the runs of 1 and 3 carry them): the same
#       statistics and item counts as on one GPU (ZeRO-1/2 all-reduce the shards' sums).
#   4. scaling efficiency 1 -> 2 -> 4 GPUs at a fixed per-GPU batch, gpt2s (B=32) and gpt2l (B=16),
#      overlapped and (gpt2s) not overlapped: against 1 GPU and against the slowest
#      card, each card's speed measured with the one-GPU job running on all of them at once;
#      and where gpt2l's step time goes (--timeline-step);
#   5. a rank killed mid-run stops the others with an error in bounded time; the run resumes;
#   6. --eval-only of one checkpoint on 1, 2 and 4 GPUs reads the whole validation split (the same
#      150 windows, shared out by rank) and gives the same mean loss;
#   7. --cuda-graphs 1 on 2 GPUs, with dropout and two micro-steps per step, gives the losses of
#      --cuda-graphs 0 bit for bit: ZeRO-0 (overlapped: the first micro-step replayed, the last,
#      whose backward all-reduces, eager), ZeRO-1 (every micro-step replayed; the reduce-scatter
#      and all-gather eager) and ZeRO-2 (only AdamW replayed).
# Tolerance for 1: every run computes the same per-sequence math; they differ only in how the
# gradient sum is ordered (local accumulation vs. NCCL) and in the matmul algorithms each run
# picks (other batch sizes, and each run times its own: train/matmul_tuning.cuh), i.e. in fp32/bf16
# rounding. Over 20 steps that moves the loss by far less than bf16's relative precision
# 2^-8 = 3.9e-3: we require |Δloss|/loss <= 2e-3.
# Tolerance for 2: overlap changes only how the gradient arena is cut into all-reduces. With 2
# ranks every element is one fp32 sum a + b either way, so the losses must be identical
# (tolerance 0: a bucket reduced before backward finished its layer shows up here); with 4, the
# order of NCCL's ring sums depends on the cut, so the tolerance of 1 applies.
# Tolerance for 3: ZeRO-1 sums the same fp32 gradients in another order (reduce-scatter); ZeRO-2
# sums every micro-step over ranks before accumulating: rounding again, so the tolerance of 1.
# Tolerance for 6: every window's per-token losses come from the same weights and the same
# kernels; only the ranks' short last batches (other matmul shapes, so possibly other bf16
# roundings of a few logits) and the order of the sum differ: |Δloss|/loss <= 5e-4.
# Tolerance for 7: 0. A graph replays the eager kernels with the same arguments on the same inputs,
# and the collectives are the same calls in the same order (train/step_graph.cuh).
# `scripts/test_multigpu.sh --only cuda-graphs` runs section 7 alone.
set -uo pipefail
cd "$(dirname "$0")/.."
case "$*" in
    "" | "--only cuda-graphs") ;;
    *) echo "usage: scripts/test_multigpu.sh [--only cuda-graphs]" >&2; exit 2 ;;
esac
source dev/bench/common.sh
export NCCL_NVLS_ENABLE=0
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
work=${MULTIGPU_DIR:-build/multigpu}
rm -rf "$work"; mkdir -p "$work"
data=(--dataset tiny)
[ -d data/tiny ] || { echo "needs data/tiny (./data_prep/prepare tiny)"; exit 1; }
python3 - "$work/hellaswag.bin" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "dev/reference")
from reference_files import write_hellaswag_items
rng = np.random.default_rng(5)
write_hellaswag_items(sys.argv[1], [(int(rng.integers(0, 4)), rng.integers(0, 50257, 20).tolist(),
                                     [rng.integers(0, 50257, int(rng.integers(1, 20))).tolist() for _ in range(4)])
                                    for _ in range(30)])
PY
# The norm monitor and HellaSwag only read the weights: the losses stay what they were.
small=(-e d12 --n-layer 4 --n-embd 512 --n-head 8 --seq-len 256 --max-seq-len 256 --device-batch 8
       --global-batch-tokens 8192 --steps 20 --lr 1e-3 --warmup-steps 5 --val-every 0 --sample-every 0
       --checkpoint-every 0 --dropout-embd 0 --dropout-resid 0 --dropout-attn 0 "${data[@]}"
       --norm-monitor-every 10 --hellaswag-every 20 --hellaswag-file "$work/hellaswag.bin")
status=0
compare() {  # name reference/log.jsonl candidate/log.jsonl [tolerance, default 2e-3]
    python3 scripts/compare_losses.py "$1" "$2" "$3" --tolerance "${4:-2e-3}"
}
bench_field() {  # field log: the field's value in the log's BENCH line (empty when the run printed none)
    sed -nE "s/^BENCH (.* )?$1=([^ ]+).*/\2/p" "$2"
}
cuda_graphs_checks() {
    echo "== 7. --cuda-graphs 1 vs 0 on 2 GPUs (dropout on, 2 micro-steps per step)"
    local dropout=(--dropout-embd 0.1 --dropout-resid 0.1 --dropout-attn 0.1) stage graphs
    for stage in 0 1 2; do
        for graphs in 0 1; do
            ./train_gpt2cu "${small[@]}" "${dropout[@]}" --nproc 2 --zero-stage $stage --cuda-graphs $graphs \
                --out-dir "$work/graphs$graphs-z$stage" > "$work/graphs$graphs-z$stage.log" 2>&1 ||
                { echo "ZeRO-$stage run with --cuda-graphs $graphs failed"; tail "$work/graphs$graphs-z$stage.log"; status=1; }
        done
        grep "^CUDA graphs" "$work/graphs1-z$stage.log" | sed "s/^/  ZeRO-$stage: /"
        compare "cuda graphs on vs off (ZeRO-$stage, 2 GPUs)" "$work/graphs0-z$stage/log.jsonl" \
            "$work/graphs1-z$stage/log.jsonl" 0 || status=1
    done
}
if [ "$*" = "--only cuda-graphs" ]; then
    cuda_graphs_checks
    echo "multigpu (cuda graphs): $([ $status -eq 0 ] && echo PASS || echo FAIL)"
    exit $status
fi
echo "== 1. same global batch (8192 tokens) on 1, 2, 4 GPUs"
./train_gpt2cu "${small[@]}" --out-dir "$work/g1" > "$work/g1.log" 2>&1 || { echo "1-GPU run failed"; tail "$work/g1.log"; status=1; }
for n in 2 4; do
    [ "$gpus" -ge "$n" ] || continue
    ./train_gpt2cu "${small[@]}" --nproc "$n" --out-dir "$work/g$n" > "$work/g$n.log" 2>&1 || { echo "$n-GPU run failed"; tail "$work/g$n.log"; status=1; }
    compare "1 GPU vs $n GPUs (--nproc)" "$work/g1/log.jsonl" "$work/g$n/log.jsonl" || status=1
done
if command -v mpirun >/dev/null; then
    mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE=0 ./train_gpt2cu "${small[@]}" --out-dir "$work/mpi2" > "$work/mpi2.log" 2>&1 || { echo "mpirun run failed"; tail "$work/mpi2.log"; status=1; }
    compare "1 GPU vs 2 GPUs (mpirun)" "$work/g1/log.jsonl" "$work/mpi2/log.jsonl" || status=1
fi
echo "== 6. --eval-only of the 1-GPU run's checkpoint on 1, 2, 4 GPUs: the whole validation split"
for n in 1 2 4; do
    [ "$gpus" -ge "$n" ] || continue
    ./train_gpt2cu "${small[@]}" --nproc "$n" --eval-only 1 --resume "$work/g1/model_00000020.bin" \
        --out-dir "$work/eval$n" > "$work/eval$n.log" 2>&1 || { echo "$n-GPU --eval-only failed"; tail "$work/eval$n.log"; status=1; }
    grep -h "val loss" "$work/eval$n.log" | sed "s/^/  $n GPU(s): /"
done
python3 - "$work" "$gpus" <<'PY' || status=1
import json, sys
work, gpus = sys.argv[1], int(sys.argv[2])
val = {}
for n in (1, 2, 4):
    if gpus >= n:
        val[n] = next(e for e in map(json.loads, open(f"{work}/eval{n}/log.jsonl")) if e["event"] == "eval" and e["split"] == "val")
ok = all(v["tokens"] == val[1]["tokens"] == 150 * 256 and abs(v["loss"] - val[1]["loss"]) <= 5e-4 * val[1]["loss"] for v in val.values())
for n, v in val.items():
    print(f"  {n} GPU(s): val loss {v['loss']:.6f} over {v['tokens']} tokens")
print(f"  the same 150 x 256 tokens and mean loss on every GPU count: {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
echo "== 2. gradient all-reduce overlapped with the backward pass (default) vs after it"
for n in 2 4; do
    [ "$gpus" -ge "$n" ] || continue
    # The same GEMM algorithms as the overlapped run (its tuning record), for the exact comparison.
    ./train_gpt2cu "${small[@]}" --nproc "$n" --overlap-grad-reduce 0 --matmul-tuning "$work/g$n/matmul_tuning.txt" \
        --out-dir "$work/serial$n" > "$work/serial$n.log" 2>&1 || { echo "$n-GPU run without overlap failed"; tail "$work/serial$n.log"; status=1; }
    compare "overlap on vs off ($n GPUs)" "$work/g$n/log.jsonl" "$work/serial$n/log.jsonl" "$([ "$n" -eq 2 ] && echo 0 || echo 2e-3)" || status=1
done

echo "== 3. ZeRO-0 vs ZeRO-1 vs ZeRO-2"
for n in 2 4; do
    [ "$gpus" -ge "$n" ] || continue
    for stage in 1 2; do  # on 2 GPUs with 2 micro-steps per step, on 4 with one
        ./train_gpt2cu "${small[@]}" --nproc "$n" --zero-stage $stage --out-dir "$work/z$stage-$n" > "$work/z$stage-$n.log" 2>&1 || { echo "ZeRO-$stage run on $n GPUs failed"; tail "$work/z$stage-$n.log"; status=1; }
        compare "ZeRO-0 vs ZeRO-$stage ($n GPUs)" "$work/g$n/log.jsonl" "$work/z$stage-$n/log.jsonl" || status=1
    done
done
n=$((gpus >= 4 ? 4 : 2))
echo "  memory per GPU, gpt2l, B=8, $n GPUs (bf16; rank 0's GPU, whole device):"
printf '  %-6s %14s %12s %s\n' stage tokens/s "GPU memory" "plan (parameters, gradients, AdamW state)"
for stage in 0 1 2; do
    ./train_gpt2cu -e gpt2l "${data[@]}" --precision bf16 --device-batch 8 --nproc "$n" --global-batch-tokens $((8 * 1024 * n * 2)) \
        --bench-steps 6 --zero-stage $stage --out-dir "$work/mem$stage" > "$work/mem$stage.log" 2>&1 || { echo "gpt2l ZeRO-$stage failed"; tail "$work/mem$stage.log"; status=1; }
    printf '  %-6s %14s %9s GB %s\n' "$stage" "$(bench_field tokens_per_s "$work/mem$stage.log")" \
        "$(bench_field peak_mem_gb "$work/mem$stage.log")" "$(grep -m1 -oE 'AdamW state [0-9.]+ GB' "$work/mem$stage.log")"
done

echo "== 3b. the norm monitor and HellaSwag over ranks vs one GPU"
# At step 10 the weights and gradients differ from one GPU's by rounding only (the tolerance of
# 1, on the global norms and each tensor's weights); a rank's shard counted alone would halve the
# L1 norms. Every rank's items are counted.
for run in "$work"/g2 "$work"/g4 "$work"/z1-2 "$work"/z2-2 "$work"/z1-4 "$work"/z2-4; do
    [ -f "$run/log.jsonl" ] || continue
    python3 - "$work/g1/log.jsonl" "$run/log.jsonl" <<'PY' || status=1
import json, sys
def events(path, kind):
    return [e for e in map(json.loads, open(path)) if e["event"] == kind]
(one,), (many,) = events(sys.argv[1], "norms")[:1], events(sys.argv[2], "norms")[:1]
worst = max(abs(many[k] - one[k]) / one[k] for k in ("weight_l1", "weight_l2", "grad_l1", "grad_l2"))
for name, stats in one["tensors"].items():
    for key in ("weight_max", "weight_mean"):
        worst = max(worst, abs(many["tensors"][name][key] - stats[key]) / max(stats[key], 1e-30))
hellaswag_one, hellaswag_many = events(sys.argv[1], "hellaswag"), events(sys.argv[2], "hellaswag")
items_ok = [e["items"] for e in hellaswag_many] == [e["items"] for e in hellaswag_one] == [30]
ok = one["step"] == many["step"] == 10 and worst <= 2e-3 and items_ok
print(f"{'ok' if ok else 'FAIL'}: {sys.argv[2]}: norms at step {many['step']} within {worst:.1e} of one GPU's "
      f"(tolerance 2e-3); HellaSwag items {[e['items'] for e in hellaswag_many]}, acc_norm "
      f"{[e['acc_norm'] for e in hellaswag_many]} vs {[e['acc_norm'] for e in hellaswag_one]}")
sys.exit(0 if ok else 1)
PY
done

cuda_graphs_checks

echo "== 4. scaling at a fixed per-GPU batch (bf16, no dropout, tokens/s of the whole job)"
echo "  efficiency: against n x the one-GPU run, and against n x the slowest of the n cards when"
echo "  each runs the one-GPU job at the same time (a synchronous step waits for the slowest card)"
printf '  %-8s %5s %8s %14s %8s %10s %10s\n' model gpus overlap tokens/s MFU% efficiency "vs slowest"
scale_args() {  # model batch gpus: the trainer arguments of one scaling run (dev/bench's conditions, one micro-step)
    printf '%s ' -e "$1" --precision bf16 --device-batch "$2" --nproc "$3" --bench-steps 12 \
        "${benchmark_trainer_args[@]}" --global-batch-tokens $(($2 * 1024 * $3))
}
cards=$((gpus >= 4 ? 4 : 2))
for spec in "gpt2s 32" "gpt2l 16"; do
    set -- $spec; model=$1; b=$2; base=""
    solo=()
    for ((card = 0; card < cards; ++card)); do
        CUDA_VISIBLE_DEVICES=$card ./train_gpt2cu $(scale_args "$model" "$b" 1) --out-dir "$work/solo-$model-$card" \
            > "$work/solo-$model-$card.log" 2>&1 &
    done
    wait
    for ((card = 0; card < cards; ++card)); do solo+=("$(bench_field tokens_per_s "$work/solo-$model-$card.log")"); done
    echo "  $model, the one-GPU job on cards 0..$((cards - 1)) at once: ${solo[*]} tokens/s"
    for n in 1 2 4; do
        [ "$gpus" -ge "$n" ] || continue
        for overlap in 1 0; do  # one GPU has nothing to overlap: one run; gpt2l: overlapped only
            [ "$overlap" -eq 1 ] || { [ "$n" -gt 1 ] && [ "$model" = gpt2s ]; } || continue
            label=$([ "$n" -eq 1 ] && echo - || { [ "$overlap" -eq 1 ] && echo on || echo off; })
            log="$work/scale-$model-$n-$overlap.log"
            ./train_gpt2cu $(scale_args "$model" "$b" "$n") --overlap-grad-reduce "$overlap" --timeline-step 10 \
                --out-dir "$work/scale-$model-$n-$overlap" > "$log" 2>&1
            tps=$(bench_field tokens_per_s "$log"); mfu=$(bench_field mfu "$log")
            [ -n "$tps" ] || { echo "  $model on $n GPUs (overlap $overlap) failed"; tail -5 "$log"; status=1; continue; }
            [ -n "$base" ] || base=$tps
            slowest=$(printf '%s\n' "${solo[@]:0:n}" | sort -g | head -n1)
            printf '  %-8s %5d %8s %14s %8s %9.1f%% %9.1f%%\n' "$model" "$n" "$label" "$tps" "$mfu" \
                "$(python3 -c "print(100*$tps/($n*$base))")" "$(python3 -c "print(100*$tps/($n*$slowest))")"
        done
    done
done
echo "  where the time goes, gpt2l on 1 and $cards GPUs (--timeline-step 10, rank 0):"
for n in 1 "$cards"; do
    echo "  - $n GPU(s):"; awk '/^timeline of step/ {on = 1; print "    " $0; next} on && /^  / {print "    " $0; next} {on = 0}' "$work/scale-gpt2l-$n-1.log"
done

echo "== 5. a rank killed mid-run"
kill_run=(-e d12 --n-layer 4 --n-embd 512 --n-head 8 --seq-len 256 --max-seq-len 256 --device-batch 8
          --global-batch-tokens 8192 --steps 100000 --checkpoint-every 20 --val-every 0 --sample-every 0
          --nccl-timeout 30 "${data[@]}" --out-dir "$work/kill")
./train_gpt2cu "${kill_run[@]}" --nproc 2 > "$work/kill.log" 2>&1 &
launcher=$!
for _ in $(seq 60); do [ -f "$work/kill/model_00000040.bin" ] && break; sleep 1; done
victim=$(pgrep -f "train_gpt2cu.*$work/kill" | while read -r p; do grep -qz '^RANK=1$' /proc/$p/environ 2>/dev/null && echo $p; done | head -1)
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher; rc=$?
elapsed=$(( $(date +%s) - start ))
echo "  killed rank 1 (pid ${victim:-none}); launcher exited with status $rc after ${elapsed}s"
grep -iE "rank|error" "$work/kill.log" | tail -4 | sed 's/^/  | /'
if [ -n "$victim" ] && [ "$rc" -ne 0 ] && [ "$elapsed" -le 90 ]; then echo "  stopped in bounded time: ok"; else echo "  FAIL"; status=1; fi
./train_gpt2cu "${kill_run[@]}" --steps 60 --nproc 2 --resume auto > "$work/resume.log" 2>&1 && grep -m1 "resumed from" "$work/resume.log" | sed 's/^/  /' || { echo "  resume FAILED"; tail "$work/resume.log"; status=1; }
echo "multigpu: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
