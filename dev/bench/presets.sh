#!/usr/bin/env bash
# The README's presets table: each preset as it trains (its precision, dropout and fp32 residual
# stream), on the small default dataset, for 20 steps of PRESET:SEQUENCES sequences each, with
# `--device-batch auto` choosing the micro-batch (gradient accumulation makes up the rest).
#
#   dev/bench/presets.sh                                  (the ten presets at the table's batches)
#   dev/bench/presets.sh gpt2s:64 gpt3xl:8                (some of them)
#   STEPS=10 dev/bench/presets.sh gpt2s:32
#
# Prints one markdown row per preset: the device batch auto chose x T (and the accumulation), the
# parameters, the first and the last step's loss, tokens/s and MFU (median step), and the GPU
# memory in use. Needs ./train_gpt2cu and data/tiny (make setup).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${STEPS:-20}
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(gpt2s:64 gpt2m:64 gpt2l:32 gpt2xl:16 gpt3s:32 gpt3m:32 gpt3l:16 gpt3xl:8
                                gpt3-2.7B:4 gpt3m-rotary:32)
[ -x ./train_gpt2cu ] || { echo "presets.sh: ./train_gpt2cu not found: make train_gpt2cu" >&2; exit 1; }
log_dir=${BENCH_LOG_DIR:-build/bench-presets}
mkdir -p "$log_dir"

config_field() {  # config_field PRESET FIELD: a field of the preset's --print-config JSON
    ./train_gpt2cu -e "$1" --print-config | sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}

echo "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1), $(date -u +%Y-%m-%d), $steps steps per preset"
echo "| preset | precision | device batch x T (accumulation) | params | first loss | loss at step $steps | tok/s | MFU | memory |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for row in "${rows[@]}"; do
    preset=${row%%:*} sequences=${row#*:}
    [[ "$preset" != "$row" && "$sequences" =~ ^[1-9][0-9]*$ ]] || {
        echo "presets.sh: '$row' is not PRESET:SEQUENCES (e.g. gpt2s:64)" >&2; exit 2; }
    seq_len=$(config_field "$preset" seq_len)
    precision=$(config_field "$preset" precision)
    params=$(config_field "$preset" num_params)
    log=$log_dir/$preset.log
    if ! ./train_gpt2cu -e "$preset" --dataset tiny --bench-steps "$steps" \
        --global-batch-tokens $((sequences * seq_len)) >"$log" 2>&1; then
        echo "| $preset | run failed: see $log |"; tail -n3 "$log" >&2; continue
    fi
    batch=$(sed -n 's/^device batch \([0-9]*\) (auto).*gradient accumulation \([0-9]*\).*/\1 x '"$seq_len"' (\2)/p' "$log")
    first=$(sed -n "s/^bench step 1\/$steps | loss \([0-9.]*\).*/\1/p" "$log")
    last=$(sed -n "s/^bench step $steps\/$steps | loss \([0-9.]*\).*/\1/p" "$log")
    bench=$(grep '^BENCH ' "$log")
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$bench"; }
    printf '| %s | %s | %s | %.1fM | %s | %s | %s | %s%% | %s GB |\n' "$preset" "$precision" "$batch" \
        "$(awk -v n="$params" 'BEGIN { print n / 1e6 }')" "$first" "$last" "$(field tokens_per_s)" "$(field mfu)" \
        "$(field peak_mem_gb)"
done
