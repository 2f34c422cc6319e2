#!/usr/bin/env bash
# The PyTorch reference (dev/reference) on the CPU, on a tiny model: its self-test (Philox known
# answer, gradient checks), sane outputs in several modes, determinism through its own
# checkpoint, bad-input errors (a checkpoint with a flipped bit among them), a bundle written by Python read back (and re-written
# byte-identically) by host/tensor_bundle.cpp, and its dropout masks equal, bit for bit, to
# kernels/common.cuh's DropoutParams::keep and attention_keep (when nvcc is present). Exit 0 = pass.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$p" -c 'import torch, numpy' >/dev/null 2>&1; then python=$p; break; fi
done
if [ -z "$python" ]; then
    echo "FAIL: no Python with PyTorch and numpy found (tried \$PYTHON, python3, /usr/bin/python3);" \
         "install python3-torch (CI does) or set PYTHON" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
reference() { "$python" dev/reference/gpt2_reference.py "$@"; }
step() { printf '== %s\n' "$*"; }

step "self-test"
reference --self-test

step "tiny pre-norm model, dropout 0.1, 1/(layer+1) attention scaling (float64, CPU)"
reference --out "$work/pre" --device cpu --dropout 0.1 --scale-attn-by-inverse-layer-idx
reference --check "$work/pre"
"$python" - "$work/pre/ref.bin" <<'EOF'
import math, sys
sys.path.insert(0, "dev/reference")
from reference_files import read_bundle
bundle = read_bundle(sys.argv[1])
losses = bundle["losses"]
# Init std 0.02 makes the first logits nearly uniform: loss ~ ln(50257) + Var(logit)/2 ~ 10.84.
assert abs(losses[0] - math.log(50257)) < 0.1, f"first loss {losses[0]} is not near ln(50257)"
# Ten AdamW steps (lr 1e-4) on one batch start to memorize it: the loss must fall at every step
# and clearly overall (this tiny model: by about 0.26).
assert all(b < a for a, b in zip(losses, losses[1:])), f"losses {list(losses)} did not fall at every step"
assert losses[-1] < losses[0] - 0.2, f"losses {list(losses)} did not fall clearly"
print(f"losses {losses[0]:.4f} -> {losses[-1]:.4f}: ok")
EOF

step "same run from its own model.bin: byte-identical reference state"
reference --out "$work/again" --device cpu --dropout 0.1 --init-from "$work/pre/model.bin" >/dev/null
cmp "$work/pre/ref.bin" "$work/again/ref.bin"
cmp "$work/pre/model.bin" "$work/again/model.bin"
echo "identical: ok"

step "post-norm, interleaved rotary on half of each head, float32, 3 steps"
reference --out "$work/post" --device cpu --post-norm --rotary-fraction 0.5 --rotary-interleaved \
    --dtype float32 --steps 3 --seed 7
reference --check "$work/post"

step "tokens from a shard"
"$python" - "$work/tokens.bin" <<'EOF'
import sys
import numpy as np
header = np.zeros(256, dtype="<i4")
header[:3] = [20240520, 1, 200]
tokens = (np.arange(200) * 997 % 50257).astype("<u2")
with open(sys.argv[1], "wb") as f:
    f.write(header.tobytes() + tokens.tobytes())
EOF
reference --out "$work/shard" --device cpu --tokens-from "$work/tokens.bin" --batch 2 --seq-len 16 --steps 1 >/dev/null
"$python" - "$work/shard/ref.bin" <<'EOF'
import sys
import numpy as np
sys.path.insert(0, "dev/reference")
from reference_files import read_bundle
expected = (np.arange(34) * 997 % 50257).reshape(2, 17)
assert np.array_equal(read_bundle(sys.argv[1])["tokens"], expected), "tokens are not the shard's first windows"
print("tokens = the shard's first B windows of T+1: ok")
EOF

step "bad inputs are rejected with a message naming the input"
expect_error() {  # expected-text command...
    local expected=$1; shift
    if "$@" >"$work/error.log" 2>&1; then echo "FAIL: '$*' should fail" >&2; exit 1; fi
    if ! grep -qF -- "$expected" "$work/error.log"; then
        echo "FAIL: '$*' should say '$expected', said:" >&2; cat "$work/error.log" >&2; exit 1
    fi
}
head -c 5000 /dev/urandom >"$work/garbage.bin"
expect_error "$work/garbage.bin: magic" reference --out "$work/x" --init-from "$work/garbage.bin"
head -c 2000 "$work/pre/model.bin" >"$work/short.bin"
expect_error "$work/short.bin: 2000 bytes, but its header describes" \
    reference --out "$work/x" --init-from "$work/short.bin"
"$python" - "$work/pre/model.bin" "$work/flipped.bin" <<'EOF'
import sys
blob = bytearray(open(sys.argv[1], "rb").read())
blob[-5] ^= 0x01  # one bit of the last weight
open(sys.argv[2], "wb").write(blob)
EOF
expect_error "$work/flipped.bin: the weights fail their checksum" reference --out "$work/x" --init-from "$work/flipped.bin"
expect_error "--n-layer disagree" reference --out "$work/x" --init-from "$work/pre/model.bin" --n-layer 3
expect_error "--n-embd 64 must be a positive multiple of --n-head 5" reference --out "$work/x" --n-head 5
expect_error "--rotary-fraction 0.3" reference --out "$work/x" --rotary-fraction 0.3
expect_error "has 200 tokens, the batch needs" reference --out "$work/x" --tokens-from "$work/tokens.bin" --batch 8
echo "errors: ok"

step "C++ reads the Python bundles (host/tensor_bundle.cpp) and re-writes them byte for byte"
g++ -std=c++17 -O1 -Wall -Wextra -Werror -I. host/tensor_bundle.cpp tests/test_tensor_bundle.cpp \
    -o "$work/test_tensor_bundle" -lgtest -lgtest_main -lpthread
for run in pre post; do
    TENSOR_BUNDLE_REFERENCE="$work/$run/ref.bin" TENSOR_BUNDLE_REFERENCE_COPY="$work/$run/copy.bin" \
        "$work/test_tensor_bundle" --gtest_filter='TensorBundle.ReadsAReferenceStateWrittenByPython' --gtest_brief=1
    [ -f "$work/$run/copy.bin" ] || { echo "FAIL: the C++ test did not run (skipped?)" >&2; exit 1; }
    cmp "$work/$run/ref.bin" "$work/$run/copy.bin"
done
echo "C++ round trip: ok"

step "dropout masks: dev/reference/philox.py vs kernels/common.cuh DropoutParams::keep, attention_keep"
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
    echo "SKIPPED: no nvcc to compile kernels/common.cuh's host path (the Philox known answer was checked above)"
else
    # DropoutParams::keep and attention_keep are __host__ __device__: a host-only program runs
    # them on the CPU, with philox.py's command line.
    cat >"$work/keep_bits.cu" <<'EOF'
#include <cstdlib>
#include <cstring>
#include "kernels/common.cuh"
// keep_bits keep-bits P SEED OFFSET FIRST COUNT: DropoutParams::keep of elements FIRST..FIRST+COUNT-1;
// keep_bits attention-keep-bits P SEED OFFSET T FIRST_ROW ROW_COUNT: attention_keep of rows
// (b*NH + h)*T + q = FIRST_ROW..FIRST_ROW+ROW_COUNT-1, all T keys each ('1' kept, '0' dropped).
int main(int argc, char** argv) {
    if (argc < 7) return 2;
    DropoutParams params;
    params.p = std::strtof(argv[2], nullptr);
    params.seed = std::strtoull(argv[3], nullptr, 10);
    params.offset = std::strtoull(argv[4], nullptr, 10);
    if (argc == 7 && std::strcmp(argv[1], "keep-bits") == 0) {
        const unsigned long long first = std::strtoull(argv[5], nullptr, 10);
        const unsigned long long count = std::strtoull(argv[6], nullptr, 10);
        for (unsigned long long i = 0; i < count; ++i) std::putchar(params.keep(first + i) ? '1' : '0');
    } else if (argc == 8 && std::strcmp(argv[1], "attention-keep-bits") == 0) {
        const int T = std::atoi(argv[5]);
        const long long first = std::strtoll(argv[6], nullptr, 10), count = std::strtoll(argv[7], nullptr, 10);
        // NH = 1: row r is (b = r / T, h = 0, q = r % T).
        for (long long row = first; row < first + count; ++row)
            for (int k = 0; k < T; ++k)
                std::putchar(attention_keep(params, static_cast<int>(row / T), 0, 1, T, static_cast<int>(row % T), k)
                                 ? '1' : '0');
    } else {
        return 2;
    }
    std::putchar('\n');
    return 0;
}
EOF
    "$nvcc" -std=c++17 -I. "$work/keep_bits.cu" -o "$work/keep_bits"
    # Small and 64-bit seeds, offsets and element indices (so every counter and key word is used),
    # p of 0.1 (the presets') and p values that are not exact in float32.
    same_bits() {  # philox.py arguments...
        local ours theirs
        ours=$("$work/keep_bits" "$@") && theirs=$("$python" dev/reference/philox.py "$@") ||
            { echo "FAIL: keep_bits or philox.py failed for $*" >&2; exit 1; }
        if [ -z "$ours" ] || [ "$ours" != "$theirs" ]; then
            echo "FAIL: masks differ for $*" >&2; exit 1
        fi
    }
    while read -r p seed offset first count; do
        same_bits keep-bits "$p" "$seed" "$offset" "$first" "$count"
    done <<'EOF'
0.1 1111 0 0 4099
0.1 1111 37 1000000 2048
0.3 18446744073709551615 4294967296 4294967290 4096
0.5 4294967297 18446744073709551614 17179869180 1024
0.7 0 1 123456789012 1000
EOF
    # Attention masks: whole (B, NH, T, T) tensors for T a multiple of 8 and not (a partial last
    # cell of 8 keys), p of 0.1, 0.5, 0 and values not multiples of 2^-16 (the threshold rounds
    # them; 0.99999 rounds to 65535, the largest threshold the kernels accept), and rows whose
    # call ids exceed 2^32 (row * ceil(T/8) >= 2^32) with 64-bit seeds and offsets.
    while read -r p seed offset T first rows; do
        same_bits attention-keep-bits "$p" "$seed" "$offset" "$T" "$first" "$rows"
    done <<'EOF'
0.1 1111 0 64 0 384
0.1 1111 37 13 0 78
0.5 4294967297 18446744073709551614 100 0 200
0.0 1111 5 7 0 14
0.3 18446744073709551615 4294967296 1 0 50
0.000001 99 3 24 0 48
0.99999 7 8 17 0 34
0.7 0 1 1027 33554432 3
0.25 123456789 987654321 2048 16777216 2
EOF
    echo "masks identical: ok"
fi

echo "reference_cpu: PASS"
