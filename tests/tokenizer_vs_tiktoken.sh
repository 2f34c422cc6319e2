#!/usr/bin/env bash
# ./data_prep/tokenize against npm tiktoken's gpt2 encoding (tests/tokenizer/compare.js: the whole
# nlp-corpus, adversarial and random texts, every code point, invalid UTF-8; --allow-special;
# multi-threaded = single-threaded; decode round trip), then the CLI's error paths.
# Exit status 0 = everything passed. Needs `make setup data_prep`.
set -u
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
tokenize="$DATA_PREP_BIN"/tokenize
[ -x "$tokenize" ] || { echo "$tokenize is not built: run make data_prep"; exit 1; }
[ -d node_modules/tiktoken ] || { echo "node_modules/tiktoken is missing: run make setup"; exit 1; }

passed=0 failed=0
node tests/tokenizer/compare.js "$tokenize"
compare_status=$?
if [ "$compare_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check NAME EXPECTED_STATUS STDERR_PATTERN STDIN_TEXT -- COMMAND...: the exit status, a stderr
# that matches the pattern (extended regex; "" = stderr must be empty), and no stdout on failure.
check() {
    local name=$1 want_status=$2 pattern=$3 input=$4
    shift 5
    printf '%s' "$input" | "$@" >"$tmp/out" 2>"$tmp/err"
    local status=$?
    local problem=""
    [ "$status" -eq "$want_status" ] || problem="exit status $status, expected $want_status"
    if [ -n "$pattern" ]; then
        grep -Eq -- "$pattern" "$tmp/err" || problem="$problem; stderr does not match /$pattern/"
    elif [ -s "$tmp/err" ]; then
        problem="$problem; unexpected stderr"
    fi
    if [ "$want_status" -ne 0 ] && [ -s "$tmp/out" ]; then problem="$problem; wrote to stdout although it failed"; fi
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: ${problem#; }"
        sed 's/^/     stderr: /' "$tmp/err" | head -n 5
    fi
}

mkdir -p "$tmp/bad_vocab"
head -c 1000 data/vocab/encoder.json >"$tmp/bad_vocab/encoder.json"
cp data/vocab/vocab.bpe "$tmp/bad_vocab/vocab.bpe"

check "missing vocabulary" 1 'encoder\.json.*make setup' "hi" -- "$tokenize" encode --vocab "$tmp/none"
check "truncated encoder.json" 1 'encoder\.json: not valid JSON.*make setup' "hi" -- "$tokenize" encode --vocab "$tmp/bad_vocab"
check "unknown command" 2 "unknown command 'frobnicate'" "" -- "$tokenize" frobnicate
check "unknown option" 2 "unknown option '--thread'" "" -- "$tokenize" encode --thread 2
check "threads 0" 2 '--threads must be an integer from 1' "" -- "$tokenize" encode --threads 0
check "threads not a number" 2 '--threads must be an integer from 1' "" -- "$tokenize" encode --threads=two
check "encode-only option on decode" 2 '--threads applies to encode only' "" -- "$tokenize" decode --threads 2
check "decode of a non-number" 1 "'abc' \(number 2, at byte 3\) is not a GPT-2 token id" "15 abc 16" -- "$tokenize" decode
check "decode of an out-of-range id" 1 "'50257' \(number 2" "15 50257" -- "$tokenize" decode
check "decode of a negative id" 1 "'-1' \(number 1" "-1" -- "$tokenize" decode
check "encode of empty input" 0 "" "" -- "$tokenize" encode
[ "$(printf '' | "$tokenize" encode)" = "" ] && [ "$(printf '' | "$tokenize" encode | wc -c)" -eq 1 ] \
    && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL empty input must print just a newline"; }
check "--time reports the rate" 0 'encoded 11 bytes into 2 tokens in .* MB/s with 2 threads' "Hello world" -- \
    "$tokenize" encode --threads 2 --time
[ "$(printf 'x<|endoftext|>y' | "$tokenize" encode --allow-special)" = "87 50256 88" ] \
    && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL --allow-special: expected 87 50256 88"; }
[ "$(printf '87 50256 88' | "$tokenize" decode)" = "x<|endoftext|>y" ] \
    && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL decode of 87 50256 88"; }

echo "tokenizer_vs_tiktoken: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
