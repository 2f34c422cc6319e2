#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each on its corpus, then prints one line
# per target: executions, coverage (libFuzzer's "cov": code edges reached; "ft": features),
# corpus size, and the result. Exit status 1 if any target crashed, leaked, timed out or broke
# a property; its input is kept under build/fuzz/artifacts/ and its log under build/fuzz/logs/.
#   fuzz/run_fuzzers.sh SECONDS [TARGET...]        (make fuzz-run builds the targets first)
# The corpus of each target grows in build/fuzz/corpus/<target>/ from run to run; the seeds are
# rewritten each time by build/fuzz/make_seeds (tests/fixtures and the current file writers), and
# the inputs of bugs found so far (fuzz/regressions/<target>/) are read too.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/run_fuzzers.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    for binary in build/fuzz/*_fuzzer; do targets+=("$(basename "$binary")"); done
fi
out=build/fuzz
rm -rf "$out/seeds"
"$out/make_seeds" "$out/seeds" || { echo "FAIL: make_seeds"; exit 1; }
mkdir -p "$out/corpus" "$out/artifacts" "$out/logs"

export GPT2_VOCAB_DIR=${GPT2_VOCAB_DIR:-$PWD/data/vocab}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
printf '%-22s %6s %12s %9s %6s %7s %7s  %s\n' target seconds executions exec/s cov ft corpus result
for target in "${targets[@]}"; do
    binary=$out/$target
    log=$out/logs/$target.log
    mkdir -p "$out/corpus/$target"
    # Inputs that once failed (fuzz/regressions/<target>/) join the seeds. stdin from /dev/null:
    # the options target may name /dev/stdin as a checkpoint file.
    regressions=()
    [ -d "fuzz/regressions/$target" ] && regressions=("fuzz/regressions/$target")
    "$binary" "$out/corpus/$target" "$out/seeds/$target" "${regressions[@]}" -max_total_time="$seconds" -timeout=20 \
        -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$out/artifacts/$target-" </dev/null >"$log" 2>&1
    status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    result=ok
    if [ "$status" -ne 0 ]; then
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n1)
        result="FAILED (status $status; input ${artifact:-none}; log $log)"
    fi
    printf '%-22s %6s %12s %9s %6s %7s %7s  %s\n' "$target" "$seconds" "${executions:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "${corpus:-?}" "$result"
    if [ "$status" -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|property failed|runtime error|terminate|what\(\)' "$log" | head -n 8 | sed 's/^/    | /'
    fi
done
exit "$failed"
