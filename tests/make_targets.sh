#!/usr/bin/env bash
# The top-level make targets as a new user meets them, on a machine made to look GPU-less by an
# nvidia-smi that fails the way it does without a driver (first on PATH; nothing else changes):
#   - `make quickstart` says at once that there is no NVIDIA GPU/driver, before building anything;
#   - the builds inside `make test` and `make quickstart` run in parallel unless -j was given
#     (quickstart's checked with a stand-in nvidia-smi that reports an H100).
set -uo pipefail
cd "$(dirname "$0")/.."
# Run as a user would, not as part of the `make test` (perhaps with -j) that started us.
unset MAKEFLAGS MFLAGS MAKELEVEL
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

mkdir -p "$tmp/bin"
cat >"$tmp/bin/nvidia-smi" <<'EOF'
#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
EOF
chmod +x "$tmp/bin/nvidia-smi"
no_gpu() { PATH="$tmp/bin:$PATH" "$@"; }

# quickstart: refused within seconds, naming the cause, with nothing built or run.
start=$(date +%s)
no_gpu timeout 120 make --no-print-directory quickstart >"$tmp/out" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
if [ "$status" -eq 0 ] || [ "$status" -eq 124 ]; then
    fail "make quickstart without a GPU: exit status $status"
elif ! grep -q "no NVIDIA GPU/driver found" "$tmp/out"; then
    fail "make quickstart without a GPU does not say 'no NVIDIA GPU/driver found':"; sed 's/^/    /' "$tmp/out"
elif grep -Eq "nvcc|g\+\+|npm |prepare|train_gpt2cu -e" "$tmp/out"; then
    fail "make quickstart without a GPU built or ran something first:"; sed 's/^/    /' "$tmp/out"
elif [ "$elapsed" -gt 10 ]; then
    fail "make quickstart without a GPU took $elapsed s to refuse"
else
    echo "ok: make quickstart without a GPU: $(head -n1 "$tmp/out")"
fi

# The builds inside test and quickstart: one sub-make with -j<cores> when no -j was given (make -n
# prints each recipe line and runs the sub-make, itself with -n: nothing is built).
cores=$(nproc)
mkdir -p "$tmp/gpu_bin"
cat >"$tmp/gpu_bin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
    *compute_cap*) echo "9.0" ;;
    *) echo "NVIDIA H100 80GB HBM3" ;;
esac
EOF
chmod +x "$tmp/gpu_bin/nvidia-smi"
with_gpu() { PATH="$tmp/gpu_bin:$PATH" "$@"; }
expect_sub_make() {  # NAME PATTERN COMMAND...
    local name=$1 pattern=$2
    shift 2
    "$@" >"$tmp/out" 2>&1
    if grep -Eq -- "$pattern" "$tmp/out"; then
        echo "ok: $name: $(grep -E -- "$pattern" "$tmp/out" | head -n1)"
    else
        fail "$name: no line matches '$pattern':"; head -n 5 "$tmp/out" | sed 's/^/    /'
    fi
}
expect_sub_make "make test builds on $cores cores" "^make --no-print-directory -j$cores setup .*train_gpt2cu" \
    no_gpu make --no-print-directory -n test
expect_sub_make "make -j3 test shares its job slots" "^make --no-print-directory +setup" \
    no_gpu make --no-print-directory -n -j3 test
expect_sub_make "make quickstart builds on $cores cores" "^make --no-print-directory -j$cores setup data_prep train_gpt2cu" \
    with_gpu make --no-print-directory -n quickstart

if [ "$failures" -ne 0 ]; then echo "FAIL: make_targets ($failures failures)"; exit 1; fi
echo "PASS: make_targets"
