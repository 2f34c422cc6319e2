#!/usr/bin/env bash
# The trainer's --help and --print-config need no GPU (the README says so): `make test` builds
# train_gpt2cu on any machine, and both return before the program's CUDA runtime starts. The
# runtime loads the driver library (libcuda.so.1) on its first call; glibc's LD_DEBUG=files
# shows who loads what, so that load by train_gpt2cu itself must not appear. (cuBLASLt's own
# initializer probes for libcuda when the library is loaded: that one is not ours.)
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x ./train_gpt2cu ] || { echo "FAIL: ./train_gpt2cu is missing: \`make test\` builds it on every machine"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check NAME COMMAND...: exits 0, its stdout goes to $tmp/out, and the program's own CUDA runtime
# never loaded the driver library.
check() {
    local name=$1
    shift
    LD_DEBUG=files LD_DEBUG_OUTPUT="$tmp/ld" "$@" >"$tmp/out" 2>"$tmp/err"
    local status=$?
    [ "$status" -eq 0 ] || { fail "$name: exit status $status"; sed 's/^/    /' "$tmp/err"; return 1; }
    cat "$tmp"/ld.* >"$tmp/ld_all" 2>/dev/null
    rm -f "$tmp"/ld.*
    grep -q "file=libcublasLt" "$tmp/ld_all" || { fail "$name: LD_DEBUG traced nothing: the check cannot see library loads"; return 1; }
    if grep -E "file=libcuda\.so.*dynamically loaded by [^ ]*train_gpt2cu" "$tmp/ld_all" >"$tmp/loads"; then
        fail "$name: started the CUDA runtime: $(head -n1 "$tmp/loads")"
        return 1
    fi
    echo "ok: $name"
}

check "--help" ./train_gpt2cu --help &&
    { grep -q "^usage: train_gpt2cu" "$tmp/out" || fail "--help printed no usage line"; }
check "--print-config -e gpt2s" ./train_gpt2cu --print-config -e gpt2s &&
    { "${PYTHON:-python3}" -c 'import json, sys; c = json.load(open(sys.argv[1])); assert c["n_layer"] == 12 and c["n_embd"] == 768, c' \
          "$tmp/out" || fail "--print-config -e gpt2s is not gpt2s's JSON: $(head -c 300 "$tmp/out")"; }

if [ "$failures" -ne 0 ]; then echo "FAIL: trainer_without_gpu ($failures failures)"; exit 1; fi
echo "PASS: trainer_without_gpu"
