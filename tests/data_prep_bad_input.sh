#!/usr/bin/env bash
# Bad input through the command-line tools: every case must fail with a nonzero status and a
# message that names the file at fault, and leave no output that looks complete (no
# manifest.json, no shard, no staging directory). Invalid UTF-8 is the exception: it is
# tokenized like Python's errors="replace" (each ill-formed sequence becomes U+FFFD).
set -uo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
[ -x "$DATA_PREP_BIN/prepare" ] && [ -x "$DATA_PREP_BIN/dump" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
tmp=$(mktemp -d)
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect NAME STATUS PATTERN... -- COMMAND...: COMMAND exits with STATUS and prints every PATTERN
# (fixed strings) on stderr.
expect() {
    local name=$1 status=$2
    shift 2
    local patterns=()
    while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -ne "$status" ]; then
        fail "$name: exit status $got, expected $status"; sed 's/^/    /' "$tmp/err"; return
    fi
    for p in "${patterns[@]}"; do
        grep -qF -- "$p" "$tmp/err" || { fail "$name: message lacks '$p'"; sed 's/^/    /' "$tmp/err"; return; }
    done
    echo "ok: $name: $(head -n1 "$tmp/err")"
}
# Nothing in a dataset directory may look complete after a failure.
expect_no_output() {
    local dir=$1
    [ ! -e "$dir/manifest.json" ] || fail "$dir has a manifest after a failure"
    [ -z "$(ls -A "$dir" 2>/dev/null | grep -E '\.bin$|\.tmp$|^\.staging$')" ] || fail "$dir has leftovers: $(ls -A "$dir")"
}
prepare_text() { "$DATA_PREP_BIN"/prepare text --data-dir "$tmp/data" --name bad "$@"; }

# Missing and empty inputs.
expect "missing input" 1 "$tmp/absent.txt" "not found" -- prepare_text --input "$tmp/absent.txt"
: >"$tmp/empty.txt"
expect "empty input" 1 "$tmp/empty.txt" "is empty" -- prepare_text --input "$tmp/empty.txt"
expect "glob without matches" 1 "$tmp/*.jsonl" "matches no files" -- prepare_text --input "$tmp/*.jsonl"
expect_no_output "$tmp/data/bad"

# Truncated compressed input, next to a good file so that some shards were written.
for f in notes.jsonl.gz story.txt.xz more.jsonl.zst; do
    size=$(stat -c %s "tests/fixtures/text/$f")
    head -c $((size / 2)) "tests/fixtures/text/$f" >"$tmp/cut_$f"
    expect "truncated $f" 1 "$tmp/cut_$f" "truncated or corrupt" -- \
        prepare_text --shard-tokens 16 --input tests/fixtures/text/plain.txt --input "$tmp/cut_$f"
    expect_no_output "$tmp/data/bad"
done

# A corrupt gzip stream: its CRC-32 (the trailer's first 4 bytes) no longer matches the data.
python3 - tests/fixtures/text/notes.jsonl.gz "$tmp/crc.jsonl.gz" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[-8] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
expect "gzip CRC-32 mismatch" 1 "$tmp/crc.jsonl.gz" "CRC-32" "truncated or corrupt" -- prepare_text --input "$tmp/crc.jsonl.gz"
expect_no_output "$tmp/data/bad"

# A directory holding a PNG and a token shard beside its text: only the text is tokenized, the
# others are listed on stderr and in the manifest. Named on the command line, a PNG is an error.
mkdir -p "$tmp/mixed"
cp tests/fixtures/text/plain.txt "$tmp/mixed/"
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10' >"$tmp/mixed/logo.png"
"$DATA_PREP_BIN"/prepare text --data-dir "$tmp/data" --name plain --input tests/fixtures/text/plain.txt --val-fraction 0 >/dev/null 2>&1
cp "$tmp/data/plain/plain_train_000000.bin" "$tmp/mixed/"
expect "directory with binaries" 0 "skipped 2 binary input(s)" "$tmp/mixed/logo.png: a PNG image" \
    "$tmp/mixed/plain_train_000000.bin: a token shard" -- "$DATA_PREP_BIN"/prepare text --data-dir "$tmp/data" --name mixed \
    --input "$tmp/mixed" --val-fraction 0
cmp -s "$tmp/data/plain/plain_train_000000.bin" "$tmp/data/mixed/mixed_train_000000.bin" ||
    fail "directory with binaries: the tokens differ from those of its text file alone"
grep -q '"kind": "a PNG image"' "$tmp/data/mixed/manifest.json" || fail "skipped PNG not in the manifest"
expect "binary named on the command line" 1 "$tmp/mixed/logo.png is binary (a PNG image)" -- \
    prepare_text --input "$tmp/mixed/logo.png"
expect_no_output "$tmp/data/bad"

# Invalid JSON lines: an error naming file and line, or skipped and counted on request.
printf '{"text": "fine"}\n{"text": oops}\n' >"$tmp/broken.jsonl"
expect "invalid JSON line" 1 "$tmp/broken.jsonl:2: invalid JSON" "--skip-invalid-json" -- prepare_text --input "$tmp/broken.jsonl"
expect_no_output "$tmp/data/bad"
expect "skipped invalid JSON line" 0 -- prepare_text --input "$tmp/broken.jsonl" --skip-invalid-json --val-fraction 0
grep -q '"skipped_invalid_documents": 1' "$tmp/data/bad/manifest.json" || fail "skipped line not counted"

# Invalid UTF-8 is not an error: U+FFFD replacement, as the tokenizer documents.
printf 'caf\xe9 \xff ok \xe2\x82\n' >"$tmp/latin1.txt"
expect "invalid UTF-8 input" 0 -- "$DATA_PREP_BIN"/prepare text --data-dir "$tmp/data" --name utf8 --input "$tmp/latin1.txt" --val-fraction 0
"$DATA_PREP_BIN"/dump "$tmp/data/utf8/utf8_train_000000.bin" --text 2>/dev/null >"$tmp/decoded"
printf 'caf\xef\xbf\xbd \xef\xbf\xbd ok \xef\xbf\xbd\n<|endoftext|>\n' | cmp -s - "$tmp/decoded" || fail "invalid UTF-8 not replaced by U+FFFD: $(od -c "$tmp/decoded" | head -3)"

# An unwritable output directory.
echo x >"$tmp/a_file"
expect "output under a regular file" 1 "$tmp/a_file/tiny" "--data-dir" -- "$DATA_PREP_BIN"/prepare tiny --data-dir "$tmp/a_file"
mkdir -p "$tmp/ro"
if [ "$(id -u)" -ne 0 ]; then
    chmod 555 "$tmp/ro"
    expect "read-only output directory" 1 "$tmp/ro/tiny" "--data-dir" -- "$DATA_PREP_BIN"/prepare tiny --data-dir "$tmp/ro"
    chmod 755 "$tmp/ro"
elif mount -t tmpfs -o ro,size=1m tmpfs "$tmp/ro" 2>/dev/null; then
    mounts+=("$tmp/ro")
    expect "read-only file system" 1 "$tmp/ro/tiny" "Read-only file system" -- "$DATA_PREP_BIN"/prepare tiny --data-dir "$tmp/ro"
else
    echo "skip: read-only directory (root without mount permission; covered by the regular-file case)"
fi

# A full output directory: a 256 kB tmpfs where we may mount one (root), and always a file-size
# limit (ulimit -f, which fails writes with "File too large" like a full disk).
mkdir -p "$tmp/full"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=256k tmpfs "$tmp/full" 2>/dev/null; then
    mounts+=("$tmp/full")
    expect "full disk (tmpfs)" 1 "$tmp/full/tiny/.staging/tiny_train_000000.bin.tmp" "No space left on device" -- \
        "$DATA_PREP_BIN"/prepare tiny --data-dir "$tmp/full"
    expect_no_output "$tmp/full/tiny"
else
    echo "skip: tmpfs full-disk case (needs root and mount); the file-size limit case follows"
fi
expect "file size limit" 1 ".bin.tmp" "File too large" -- bash -c "ulimit -f 100 && exec $DATA_PREP_BIN/prepare tiny --data-dir '$tmp/limited'"
expect_no_output "$tmp/limited/tiny"

# Missing vocabulary.
expect "missing vocabulary" 1 "$tmp/novocab" -- "$DATA_PREP_BIN"/prepare tiny --data-dir "$tmp/data" --vocab "$tmp/novocab"

# Command-line mistakes: status 2.
expect "unknown option" 2 "unknown option --bogus" -- "$DATA_PREP_BIN"/prepare tiny --bogus
expect "option of another recipe" 2 "--input does not apply to the tiny recipe" -- "$DATA_PREP_BIN"/prepare tiny --input x
expect "unknown recipe" 2 "unknown recipe 'tinny'" -- "$DATA_PREP_BIN"/prepare tinny
expect "bad number" 2 "--val-fraction 2" -- "$DATA_PREP_BIN"/prepare tiny --val-fraction 2
expect "text without name" 1 "--name" -- "$DATA_PREP_BIN"/prepare text --input tests/fixtures/text

# Shards the readers must reject (dump validates like the trainer's reader).
python3 - "$tmp" <<'PY'
import struct, sys
tmp = sys.argv[1]
def shard(name, magic=20240520, version=1, count=3, tokens=(1, 2, 3), width="H"):
    header = struct.pack("<3i", magic, version, count) + bytes(1012)
    with open(f"{tmp}/{name}", "wb") as f:
        f.write(header + struct.pack(f"<{len(tokens)}{width}", *tokens))
shard("good.bin")
shard("magic.bin", magic=1234)
shard("version.bin", version=7)
shard("count.bin", count=4)
shard("vocab.bin", tokens=(1, 50257, 3))
PY
expect "dump of a good shard" 0 -- "$DATA_PREP_BIN"/dump "$tmp/good.bin"
expect "wrong magic" 1 "$tmp/magic.bin" "wrong magic number 1234" -- "$DATA_PREP_BIN"/dump "$tmp/magic.bin"
expect "unknown version" 1 "$tmp/version.bin" "unknown token shard version 7" -- "$DATA_PREP_BIN"/dump "$tmp/version.bin"
expect "count vs size" 1 "$tmp/count.bin" "the header says 4 tokens" -- "$DATA_PREP_BIN"/dump "$tmp/count.bin"
expect "id outside the vocabulary" 1 "$tmp/vocab.bin" "token id 50257 at position 1" -- "$DATA_PREP_BIN"/dump "$tmp/vocab.bin"
expect "missing shard" 1 "$tmp/none.bin" -- "$DATA_PREP_BIN"/dump "$tmp/none.bin"

if [ "$failures" -ne 0 ]; then echo "FAIL: data_prep_bad_input ($failures failures)"; exit 1; fi
echo "PASS: data_prep_bad_input"
