#!/usr/bin/env bash
# Generation speed on this machine's GPU (the README's generation table): train_gpt2cu
# --generate-bench, which decodes --max-new-tokens tokens for B sequences from <|endoftext|> with a
# preset's random weights (the speed depends on the shape alone; a checkpoint of the same shape
# runs as fast), never stopping early.
#
#   dev/bench/generate.sh [--rows MODEL:B,...] [--new-tokens N] [--out DIR] [--trainer PATH]
#                         [-- extra train_gpt2cu arguments]
#
# Default rows: gpt2s and gpt2xl at batch 1 and at a batch of 32 prompts; 512 new tokens; bf16;
# greedy (--temperature 0) and top-k 50 sampling (the default: softmax and the draw on the host).
# Output: the markdown table on stdout and in DIR/generate.md, each run's log in DIR/logs/;
# DIR = --out, else $OUT (the device machine's output folder), else build/bench. A failed row
# shows FAILED and the last line of its log; exit status 1 when any run failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

rows="gpt2s:1,gpt2s:32,gpt2xl:1,gpt2xl:32" new_tokens=512 out_dir=${OUT:-build/bench} trainer=./train_gpt2cu
die() { echo "generate.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) [ $# -ge 2 ] || die "--rows needs MODEL:B,..."; rows=$2; shift 2 ;;
        --new-tokens) [ $# -ge 2 ] || die "--new-tokens needs a number"; new_tokens=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift 2 ;;
        --trainer) [ $# -ge 2 ] || die "--trainer needs a path"; trainer=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
extra_args=("$@")
[[ "$new_tokens" =~ ^[0-9]+$ ]] && [ "$new_tokens" -ge 2 ] || die "--new-tokens must be a number >= 2, got '$new_tokens'"
IFS=',' read -r -a row_list <<<"$rows"
for row in "${row_list[@]}"; do
    [[ "$row" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "--rows: '$row' is not MODEL:BATCH"
done
mkdir -p "$out_dir/logs"

# field NAME LINE: the value of NAME=... in a GENERATE_BENCH line.
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
table="| model | batch | new tokens | sampling | prefill ms | ms per step | tokens/s |
| --- | --- | --- | --- | --- | --- | --- |"
failures=() gpu=""
for row in "${row_list[@]}"; do
    model=${row%%:*} batch=${row##*:}
    for sampling in greedy top-k; do
        case $sampling in greedy) sampling_args=(--temperature 0) ;; top-k) sampling_args=(--temperature 1 --top-k 50) ;; esac
        log="$out_dir/logs/generate_${model}_b${batch}_${sampling}.log"
        "$trainer" -e "$model" --generate-bench "$batch" --max-new-tokens "$new_tokens" --precision bf16 \
            "${sampling_args[@]}" "${extra_args[@]}" >"$log" 2>&1
        status=$?
        line=$(grep '^GENERATE_BENCH ' "$log" | tail -n1)
        if [ "$status" -ne 0 ] || [ -z "$line" ]; then
            table+=$'\n'"| $model | $batch | $new_tokens | $sampling | FAILED | | |"
            failures+=("$model B=$batch $sampling: exit status $status: $(tail -n1 "$log")")
            continue
        fi
        gpu=$(sed -n 's/.*gpu="\([^"]*\)".*/\1/p' <<<"$line")
        table+=$'\n'"| $model | $batch | $new_tokens | $sampling | $(field prefill_ms "$line") | $(field decode_ms_per_step "$line") | $(field decode_tokens_per_s "$line") |"
    done
done
{
    echo "Generation, bf16, ${gpu:-unknown GPU}: train_gpt2cu --generate-bench (KV cache; tokens/s over the decode steps, prefill excluded)"
    echo
    echo "$table"
    for failure in "${failures[@]}"; do echo "- $failure"; done
} | tee "$out_dir/generate.md"
[ "${#failures[@]}" -eq 0 ]
