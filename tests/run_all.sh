#!/usr/bin/env bash
# Runs the test suites named on the command line ("cpu", "gpu") and prints one summary line:
#   tests: N passed, M failed, K skipped
# Each GoogleTest case counts as one test; each tests/*.sh script, each dev/cuda workbench
# validation, test_gpt2cu, scripts/test_run_insight.sh, scripts/test_generate.py and
# scripts/test_hf_interop.py count as one test each. CPU_TESTS and DATA_PREP_BIN name other builds
# of the GoogleTest binary and the data_prep tools (make test-asan: sanitized ones).
set -u
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
failures=()
log_dir=build/test-logs
mkdir -p "$log_dir"

skip() {  # name reason
    skipped=$((skipped + 1)); printf '  SKIP  %s   (%s)\n' "$1" "$2"
}

record() {  # name status(0=pass) log
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1)); printf '  PASS  %s\n' "$1"
    else
        failed=$((failed + 1)); failures+=("$1 (log: $3)"); printf '  FAIL  %s   (log: %s)\n' "$1" "$3"
        tail -n 30 "$3" | sed 's/^/        | /'
    fi
}

run_cpu_suite() {
    echo "== CPU tests${CPU_TESTS:+ ($CPU_TESTS, data_prep tools from ${DATA_PREP_BIN:-./data_prep})}"
    local gtest_log=$log_dir/cpu_tests.log
    # The Python reference-state case runs in tests/reference_cpu.sh, which makes its input.
    "${CPU_TESTS:-build/tests/cpu_tests}" --gtest_filter=-TensorBundle.ReadsAReferenceStateWrittenByPython >"$gtest_log" 2>&1
    local status=$?
    local ok bad skip
    ok=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$gtest_log" | tail -n1)
    bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$gtest_log" | tail -n1)
    skip=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$gtest_log" | tail -n1)
    passed=$((passed + ${ok:-0})); failed=$((failed + ${bad:-0})); skipped=$((skipped + ${skip:-0}))
    printf '  %s GoogleTest cases passed, %s failed, %s skipped (log: %s)\n' "${ok:-0}" "${bad:-0}" "${skip:-0}" \
        "$gtest_log"
    # Why cases were skipped: the line after each "file:line: Skipped".
    grep -A1 ': Skipped$' "$gtest_log" | grep -v -E ': Skipped$|^--$' | sort | uniq -c |
        sed 's/^ *\([0-9]*\) /        skipped (\1): /'
    if [ "$status" -ne 0 ]; then
        grep -E '^\[  FAILED  \]|Failure' "$gtest_log" | head -n 40 | sed 's/^/        | /'
        if [ -z "$bad" ]; then failed=$((failed + 1)); failures+=("cpu_tests crashed (log: $gtest_log)"); fi
    fi
    for script in tests/*.sh; do
        [ "$script" = tests/run_all.sh ] && continue
        local name log
        name=$(basename "$script" .sh)
        log=$log_dir/$name.log
        bash "$script" >"$log" 2>&1
        record "$name" $? "$log"
    done
}

run_gpu_suite() {
    echo "== GPU tests ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1))"
    local log=$log_dir/test_gpt2cu.log
    ./scripts/test_gpt2cu.sh >"$log" 2>&1
    record test_gpt2cu $? "$log"
    log=$log_dir/test_run_insight.log
    ./scripts/test_run_insight.sh >"$log" 2>&1
    record test_run_insight $? "$log"
    log=$log_dir/test_kernel_trace.log
    ./scripts/test_kernel_trace.sh >"$log" 2>&1
    record test_kernel_trace $? "$log"
    log=$log_dir/test_generate.log
    "${PYTHON:-python3}" scripts/test_generate.py --work build/test_generate >"$log" 2>&1
    record test_generate $? "$log"
    # Hugging Face interoperability against transformers itself, the trainer's logits and
    # HellaSwag scoring included: needs a Python with PyTorch and transformers.
    local hf_python=""
    for p in ${PYTHON:-} python3 /usr/bin/python3; do
        if "$p" -c 'import torch, transformers' >/dev/null 2>&1; then hf_python=$p; break; fi
    done
    log=$log_dir/test_hf_interop.log
    if [ -n "$hf_python" ]; then
        "$hf_python" scripts/test_hf_interop.py >"$log" 2>&1
        record test_hf_interop $? "$log"
    else
        skip test_hf_interop "no Python with torch and transformers: pip install transformers, or set PYTHON"
    fi
    for bench in build/dev/cuda/*; do
        [ -x "$bench" ] || continue
        local name
        name=$(basename "$bench")
        log=$log_dir/dev_cuda_$name.log
        "$bench" --quick >"$log" 2>&1
        record "dev/cuda/$name --quick" $? "$log"
    done
}

for suite in "$@"; do
    case "$suite" in
        cpu) run_cpu_suite ;;
        gpu) run_gpu_suite ;;
        *) echo "unknown suite: $suite" >&2; exit 2 ;;
    esac
done
if [[ " $* " != *" gpu "* ]]; then
    skipped=$((skipped + 1))
    echo "== GPU tests: SKIPPED (no GPU found by nvidia-smi); run \`make test-gpu\` on a GPU machine"
fi

if [ "${#failures[@]}" -gt 0 ]; then
    echo "Failures:"; printf '  %s\n' "${failures[@]}"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
