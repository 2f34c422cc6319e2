#!/usr/bin/env bash
# scripts/test_sanitizer.sh (make sanitize) without a GPU, against a stand-in compute-sanitizer that
# records what it was asked to check and fails or sleeps on request: which programs run under which
# tool, a clean pass, a reported error, a check over SANITIZER_TIMEOUT, at most SANITIZER_JOBS checks
# at once, SANITIZER_CHECKS's selection, bad options, and a TERM from outside (the checks in flight
# stopped, every check reported, no process left behind).
set -u
cd "$(dirname "$0")/.."
source tests/support/checks.sh

# The stand-in sanitizer: "--tool T --error-exitcode N --print-limit N PROGRAM ARGS..."; logs
# "start"/"end" events with the time, fails for the "tool:program" pairs in STANDIN_FAIL, and sleeps
# STANDIN_SLEEP seconds.
cat >"$work/sanitizer" <<'SH'
#!/usr/bin/env bash
tool=$2 program=$(basename "$7")
# "-simple": every kernel ours and storing with ordinary instructions (our GEMM, the mma.sync attention).
ours=0; [[ " $* " == *" --matmul-engine simple "* && " $* " == *" --attention-kernel tensor-cores "* ]] && ours=1
[ "$program" = test_gpt2cu ] && [ $ours = 1 ] && program=test_gpt2cu-simple
[ "$program" = train_gpt2cu ] && program=train && [ $ours = 1 ] && program=train-simple
[[ " $* " =~ " --variant "([0-9]+)" " ]] && program=$program-v${BASH_REMATCH[1]}  # attention --variant N
echo "start $(date +%s%N) $tool $program" >>"$STANDIN_LOG"
echo "$tool $program: ${*:7}" >>"$STANDIN_LOG.commands"
sleep "${STANDIN_SLEEP:-0}"
echo "end $(date +%s%N) $tool $program" >>"$STANDIN_LOG"
case " ${STANDIN_FAIL:-} " in
    *" $tool:$program "*) echo "========= Race reported"; echo "========= ERROR SUMMARY: 1 error"; exit 99 ;;
esac
echo "========= ERROR SUMMARY: 0 errors"
SH
# The stand-in Python writes no reference or shards (nothing reads them) and counts its calls.
printf '#!/usr/bin/env bash\necho called >>"%s"\n' "$work/python_calls" >"$work/python"
chmod +x "$work/sanitizer" "$work/python"
mkdir -p "$work/workbenches"
for name in adamw matmul nccl_allreduce; do printf '#!/bin/sh\n' >"$work/workbenches/$name"; done
# The attention workbench's stand-in lists the variants in STANDIN_VARIANTS (default 1 2 3).
cat >"$work/workbenches/attention" <<'SH'
#!/usr/bin/env bash
[ "$1" = --list-variants ] && printf '%s\n' ${STANDIN_VARIANTS-1 2 3}
exit 0
SH
chmod +x "$work/workbenches/"*
touch "$work/workbenches/adamw.d"

run() {  # out_file, then environment assignments; runs the script with the stand-ins
    local out=$1; shift
    : >"$work/events"
    : >"$work/events.commands"
    env SANITIZER="$work/sanitizer" PYTHON="$work/python" WORKBENCH_DIR="$work/workbenches" \
        SANITIZE_DIR="$work/sanitize" STANDIN_LOG="$work/events" "$@" scripts/test_sanitizer.sh >"$out" 2>&1
}
checked() { sort -u <(awk '$1 == "start" { print $3, $4 }' "$work/events"); }
# The most checks that ran at once, from the start and end events.
most_at_once() {
    awk '{ print $2, ($1 == "start" ? 1 : -1) }' "$work/events" | sort -n |
        awk '{ n += $2; if (n > most) most = n } END { print most + 0 }'
}

run "$work/pass.out"
status=$?
check "a clean run exits 0 and says PASS" bash -c "[ $status = 0 ] && grep -q '^sanitizer: PASS$' '$work/pass.out'"
expected="initcheck adamw
initcheck attention
initcheck test_gpt2cu-simple
initcheck train-simple
memcheck adamw
memcheck attention
memcheck matmul
memcheck test_gpt2cu
memcheck test_gpt2cu-simple
memcheck train
memcheck train-simple
racecheck adamw
racecheck attention-v1
racecheck attention-v2
racecheck attention-v3
racecheck test_gpt2cu-simple
racecheck train-simple
synccheck adamw
synccheck attention
synccheck matmul
synccheck test_gpt2cu
synccheck test_gpt2cu-simple
synccheck train
synccheck train-simple"
check "every workbench but NCCL's under all four tools, the GEMM workbench and the cuBLASLt programs under memcheck and synccheck only, each attention variant alone under racecheck" \
    [ "$(checked)" = "$expected" ]
check "one line per check, each 'ok'" [ "$(grep -c ' ok ' "$work/pass.out")" = 24 ]
check "racecheck runs variant 1 of attention on its cases of at most 257 tokens, the others on all" \
    bash -c "grep -q '^racecheck attention-v1: .*/attention --quick --variant 1 --max-seq-len 257\$' '$work/events.commands' &&
             grep -q '^racecheck attention-v2: .*/attention --quick --variant 2\$' '$work/events.commands'"

run "$work/fail.out" STANDIN_FAIL="racecheck:adamw"
check "a reported error fails the run" grep -q '^sanitizer: FAIL$' "$work/fail.out"
check "the failing check's line names the tool, the program and the report" \
    bash -c "grep -A1 'racecheck adamw *FAIL' '$work/fail.out' | grep -q 'Race reported'"
check "the other checks still pass" [ "$(grep -c ' ok ' "$work/fail.out")" = 23 ]

run "$work/jobs.out" SANITIZER_JOBS=2 STANDIN_SLEEP=0.3
check "SANITIZER_JOBS=2 runs at most two checks at once, and all of them" \
    bash -c "[ \"\$(grep -c ' ok ' '$work/jobs.out')\" = 24 ] && [ '$(most_at_once)' -le 2 ]"
run "$work/jobs16.out" SANITIZER_JOBS=16 STANDIN_SLEEP=0.3
check "SANITIZER_JOBS=16 runs several at once" [ "$(most_at_once)" -gt 2 ]

run "$work/timeout.out" SANITIZER_TOOLS=memcheck SANITIZER_TIMEOUT=1 STANDIN_SLEEP=5
check "a check over SANITIZER_TIMEOUT fails and says so" \
    bash -c "grep -q 'memcheck *adamw *FAIL.*timed out after 1s (SANITIZER_TIMEOUT)' '$work/timeout.out' && grep -q '^sanitizer: FAIL$' '$work/timeout.out'"

rm -f "$work/python_calls"
run "$work/some.out" SANITIZER_CHECKS="racecheck:adamw memcheck:train"
check "SANITIZER_CHECKS runs those checks only" \
    bash -c "[ \"\$(grep -c ' ok ' '$work/some.out')\" = 2 ] && [ '$(checked | tr '\n' ,)' = 'memcheck train,racecheck adamw,' ]"
check "... and writes the whole-model checks' inputs when one of them is among them" [ -s "$work/python_calls" ]
rm -f "$work/python_calls"
run "$work/bench-only.out" SANITIZER_CHECKS="synccheck:matmul"
check "... and not when none is" bash -c "grep -q ' ok ' '$work/bench-only.out' && [ ! -e '$work/python_calls' ]"
run "$work/variant.out" SANITIZER_CHECKS="racecheck:attention-v2"
check "... nor for one attention variant, which runs the attention workbench with --variant" \
    bash -c "grep -q 'racecheck attention-v2 *ok' '$work/variant.out' && [ '$(checked)' = 'racecheck attention-v2' ] && [ ! -e '$work/python_calls' ]"
run "$work/no-variants.out" SANITIZER_TOOLS=racecheck STANDIN_VARIANTS=""
status=$?
check "an attention workbench that lists no variant stops the run, saying so" \
    bash -c "[ $status = 1 ] && grep -q 'attention --list-variants named no variant' '$work/no-variants.out'"
run "$work/unknown-check.out" SANITIZER_CHECKS="racecheck:matmul"
status=$?
check "a check the run does not have is refused, with the list" \
    bash -c "[ $status = 2 ] && grep -q \"SANITIZER_CHECKS: 'racecheck:matmul' is not one of the checks\" '$work/unknown-check.out' && grep -q '^  memcheck:matmul$' '$work/unknown-check.out'"

run "$work/jobs0.out" SANITIZER_JOBS=0
status=$?
check "SANITIZER_JOBS=0 is refused with a message" \
    bash -c "[ $status = 2 ] && grep -q 'SANITIZER_JOBS must be a positive whole number' '$work/jobs0.out'"
run "$work/tool.out" SANITIZER_TOOLS="memcheck leakcheck"
check "an unknown tool is refused with a message" grep -q "unknown tool 'leakcheck'" "$work/tool.out"

# A TERM from outside while the whole-model checks run: they stop, the rest never start, every
# check has its line, and no stand-in is left running.
start=$SECONDS
run "$work/term.out" SANITIZER_JOBS=4 STANDIN_SLEEP=30 timeout 3 env
status=$?
check "a TERM from outside ends the run within seconds, failed" bash -c "[ $status -ne 0 ] && [ $((SECONDS - start)) -lt 20 ]"
check "the checks in flight say they were stopped" [ "$(grep -c 'FAIL.*stopped by a signal' "$work/term.out")" = 4 ]
check "the checks never started say so" [ "$(grep -c 'not run (stopped)' "$work/term.out")" = 20 ]
check "the run says it was stopped" grep -q 'stopped by a signal before every check had run' "$work/term.out"
no_standin_running() { ! pgrep -f "$work/[s]anitizer " >/dev/null; }  # [s]: the pattern is not its own match
sleep 1
check "no stand-in sanitizer is left running" no_standin_running

finish_checks sanitizer_script
