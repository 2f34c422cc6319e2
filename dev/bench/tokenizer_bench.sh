#!/usr/bin/env bash
# Tokenizer throughput: ./data_prep/tokenize vs npm tiktoken (and Python tiktoken where
# `import tiktoken` works) on the same text in the same run: the nlp-corpus (each file's
# sentences joined by "\n"), repeated to about BENCH_MB megabytes. One thread and all threads
# (BENCH_THREADS, default nproc); best of BENCH_REPEAT runs each. A benchmark, not a test.
#   dev/bench/tokenizer_bench.sh            (needs make setup data_prep)
set -euo pipefail
cd "$(dirname "$0")/../.."
mb=${BENCH_MB:-20}
threads=${BENCH_THREADS:-$(nproc)}
repeat=${BENCH_REPEAT:-3}
tokenize=./data_prep/tokenize
[ -x "$tokenize" ] || { echo "$tokenize is not built: run make data_prep" >&2; exit 1; }
[ -d node_modules/tiktoken ] || { echo "node_modules/tiktoken is missing: run make setup" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
text=$tmp/corpus.txt
node -e '
const {corpusTexts} = require("./tests/tokenizer/texts.js");
const corpus = Buffer.from(corpusTexts().map((t) => t.bytes.toString("utf8")).join("\n"));
const target = Number(process.argv[1]) * 1e6;
const repeated = Buffer.concat(Array(Math.ceil(target / corpus.length)).fill(corpus));
const cut = repeated.indexOf(10, target);  // end at the first newline past the target size
require("fs").writeFileSync(process.argv[2], cut < 0 ? repeated : repeated.subarray(0, cut + 1));
' "$mb" "$text"

rows=()  # "name threads bytes tokens seconds"
for n in $(printf '%s\n' 1 "$threads" | sort -nu); do
    best=""
    for _ in $(seq "$repeat"); do
        line=$("$tokenize" encode --threads "$n" --time <"$text" 2>&1 >/dev/null)
        # "tokenize: encoded B bytes into T tokens in S s: ..."
        read -r bytes tokens seconds < <(sed -E 's/.*encoded ([0-9]+) bytes into ([0-9]+) tokens in ([0-9.]+) s.*/\1 \2 \3/' <<<"$line")
        if [ -z "$best" ] || awk -v a="$seconds" -v b="${best##* }" 'BEGIN { exit !(a < b) }'; then
            best="$bytes $tokens $seconds"
        fi
    done
    rows+=("ours(C++) $n $best")
done
while read -r n bytes tokens seconds; do
    rows+=("tiktoken(npm,wasm) $n $bytes $tokens $seconds")
done < <(node dev/bench/tokenizer_bench_tiktoken.js "$text" "$threads" "$repeat")
for python in python3 /usr/bin/python3; do
    if "$python" -c 'import tiktoken' >/dev/null 2>&1; then
        while read -r n bytes tokens seconds; do
            rows+=("tiktoken(python,rust) $n $bytes $tokens $seconds")
        done < <("$python" dev/bench/tokenizer_bench_tiktoken.py "${GPT2_VOCAB_DIR:-data/vocab}" "$text" "$threads" "$repeat")
        break
    fi
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
echo "GPT-2 tokenization of the nlp-corpus repeated to $(stat -c %s "$text") bytes"
echo "CPU: ${cpu:-unknown} ($(nproc) hardware threads); best of $repeat runs; MB = 10^6 bytes"
printf '%s\n' "${rows[@]}" | awk '
    { name[NR] = $1; n[NR] = $2; mbs[NR] = $3 / $5 / 1e6; tokens[NR] = $4
      if ($1 == "tiktoken(npm,wasm)") npm[$2] = mbs[NR]
      if ($1 == "tiktoken(python,rust)") py[$2] = mbs[NR] }
    END {
      printf "| %-22s | %7s | %8s | %10s | %13s | %16s |\n", "tokenizer", "threads", "MB/s", "tokens", "vs npm same n", "vs python same n"
      printf "|%s|%s|%s|%s|%s|%s|\n", "------------------------", "---------", "----------", "------------", "---------------", "------------------"
      for (i = 1; i <= NR; ++i) {
        vs_npm = (n[i] in npm) ? sprintf("%.2fx", mbs[i] / npm[n[i]]) : "-"
        vs_py = (n[i] in py) ? sprintf("%.2fx", mbs[i] / py[n[i]]) : "-"
        printf "| %-22s | %7d | %8.1f | %10d | %13s | %16s |\n", name[i], n[i], mbs[i], tokens[i], vs_npm, vs_py
      }
    }'
