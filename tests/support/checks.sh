# Sourced by the script tests that check a tool against stand-ins (bench_tools.sh,
# sanitizer_script.sh): a scratch directory $work, removed on exit, and one line per check.
#   check DESCRIPTION COMMAND...   runs COMMAND; prints "ok: ..." or "FAIL: ..." and counts failures
#   finish_checks NAME             prints the tally and exits 0 only if every check passed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {
    local what=$1; shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
finish_checks() {
    [ "$failures" -eq 0 ] && echo "$1: all checks passed" || echo "$1: $failures failed"
    [ "$failures" -eq 0 ]
    exit
}
