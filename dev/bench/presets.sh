#!/usr/bin/env bash
# The README's presets table: each preset as it trains (its precision, dropout and fp32 residual
# stream), on the small default dataset, for 20 steps of PRESET:SEQUENCES sequences each, with
# `--device-batch auto` choosing the micro-batch (gradient accumulation makes up the rest).
#
#   dev/bench/presets.sh                                  (the ten presets at the table's batches)
#   dev/bench/presets.sh gpt2s:64 gpt3xl:8                (some of them)
#   STEPS=10 dev/bench/presets.sh gpt2s:32
#   dev/bench/presets.sh gpt2s:64 -- --cuda-graphs 1      (extra train_gpt2cu arguments for every run)
#   TRAINER=path/to/train_gpt2cu dev/bench/presets.sh     (another build, e.g. a branch's)
#
# Prints one markdown row per preset: the device batch auto chose x T (and the accumulation), the
# parameters, the first and the last step's loss, tokens/s and MFU (median step), and the GPU
# memory in use. Needs ./train_gpt2cu (or $TRAINER) and data/tiny (make setup).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${STEPS:-20}
trainer=${TRAINER:-./train_gpt2cu}
rows=() extra_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; extra_args=("$@"); break; fi
    rows+=("$1"); shift
done
[ ${#rows[@]} -gt 0 ] || rows=(gpt2s:64 gpt2m:64 gpt2l:32 gpt2xl:16 gpt3s:32 gpt3m:32 gpt3l:16 gpt3xl:8
                                gpt3-2.7B:4 gpt3m-rotary:32)
[ -x "$trainer" ] || { echo "presets.sh: $trainer not found: make train_gpt2cu (or set TRAINER)" >&2; exit 1; }
log_dir=${BENCH_LOG_DIR:-build/bench-presets}
mkdir -p "$log_dir"

# The current preset's fields: config_field FIELD of its --print-config JSON ($config), and
# bench_field NAME of its BENCH line ($bench).
config_field() { sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" <<<"$config"; }
bench_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$bench"; }

echo "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1), $(date -u +%Y-%m-%d), $steps steps per preset"
echo "| preset | precision | device batch x T (accumulation) | params | first loss | loss at step $steps | tok/s | MFU | memory |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for row in "${rows[@]}"; do
    preset=${row%%:*} sequences=${row#*:}
    [[ "$preset" != "$row" && "$sequences" =~ ^[1-9][0-9]*$ ]] || {
        echo "presets.sh: '$row' is not PRESET:SEQUENCES (e.g. gpt2s:64)" >&2; exit 2; }
    config=$("$trainer" -e "$preset" "${extra_args[@]}" --print-config)
    seq_len=$(config_field seq_len) precision=$(config_field precision) params=$(config_field num_params)
    log=$log_dir/$preset.log
    if ! "$trainer" -e "$preset" --dataset tiny --bench-steps "$steps" \
        --global-batch-tokens $((sequences * seq_len)) "${extra_args[@]}" >"$log" 2>&1; then
        echo "| $preset | run failed: see $log |"; tail -n3 "$log" >&2; continue
    fi
    batch=$(sed -n 's/^device batch \([0-9]*\) (auto).*gradient accumulation \([0-9]*\).*/\1 x '"$seq_len"' (\2)/p' "$log")
    first=$(sed -n "s/^bench step 1\/$steps | loss \([0-9.]*\).*/\1/p" "$log")
    last=$(sed -n "s/^bench step $steps\/$steps | loss \([0-9.]*\).*/\1/p" "$log")
    bench=$(grep '^BENCH ' "$log")
    printf '| %s | %s | %s | %.1fM | %s | %s | %s | %s%% | %s GB |\n' "$preset" "$precision" "$batch" \
        "$(awk -v n="$params" 'BEGIN { print n / 1e6 }')" "$first" "$last" "$(bench_field tokens_per_s)" "$(bench_field mfu)" \
        "$(bench_field peak_mem_gb)"
done
