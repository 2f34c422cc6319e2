#!/usr/bin/env bash
# ./data_prep/prepare hellaswag against tests/http_fixture_server.py on 127.0.0.1: the
# validation jsonl (a 3-item fixture) is downloaded with a dropped first response (resumed with a
# Range request) and checked against --checksums, then tokenized into hellaswag_val.bin; a rerun
# does nothing; a checksum mismatch is rejected; --source-dir works without a server. Exit 0 = pass.
set -uo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
[ -x "$DATA_PREP_BIN/prepare" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
tmp=$(mktemp -d)
source tests/support/fixture_server.sh
trap 'stop_server; rm -rf "$tmp"' EXIT
fixtures=tests/fixtures/hellaswag
fail() { echo "FAIL: $*"; exit 1; }

start_server "$fixtures" --drop-after 100 --drop-count 1
url=$url/hellaswag_val.jsonl

"$DATA_PREP_BIN"/prepare hellaswag --data-dir "$tmp/a" --url "$url" --checksums "$fixtures/SHA256SUMS" >"$tmp/out" 2>"$tmp/err" \
    || fail "hellaswag download: $(cat "$tmp/err")"
grep -q "range=bytes=100- 206" "$tmp/requests.log" || fail "no resumed request: $(cat "$tmp/requests.log")"
cmp -s "$fixtures/hellaswag_val.jsonl" "$tmp/a/hellaswag/downloads/hellaswag_val.jsonl" || fail "downloaded file differs"
grep -q "hellaswag written to .*hellaswag_val.bin: 3 items" "$tmp/out" || fail "summary: $(cat "$tmp/out")"
python3 - "$tmp/a/hellaswag/hellaswag_val.bin" <<'PY' || fail "items file header"
import struct, sys
data = open(sys.argv[1], "rb").read()
magic, version, count, endings, tokens, longest, vocab, _ = struct.unpack("<8i", data[:32])
assert (magic, version, count, endings, vocab) == (20261130, 1, 3, 4, 50257), (magic, version, count, endings, vocab)
index, label = struct.unpack("<2i", data[32:40])
assert (index, label) == (24, 3), (index, label)
assert len(data) == 32 + 4 * (3 * 7 + tokens), "size disagrees with the token count"
PY
echo "ok: downloaded (resumed after a dropped connection), verified, tokenized: $(head -1 "$tmp/out")"

"$DATA_PREP_BIN"/prepare hellaswag --data-dir "$tmp/a" --url "$url" >"$tmp/out" 2>&1 || fail "rerun: $(cat "$tmp/out")"
grep -q "already complete" "$tmp/out" || fail "rerun did work again: $(cat "$tmp/out")"
echo "ok: a rerun does nothing"

sed 's/^[0-9a-f]\{8\}/00000000/' "$fixtures/SHA256SUMS" >"$tmp/wrong_sums"
if "$DATA_PREP_BIN"/prepare hellaswag --data-dir "$tmp/b" --url "$url" --checksums "$tmp/wrong_sums" >"$tmp/out" 2>"$tmp/err"; then
    fail "a checksum mismatch was accepted"
fi
grep -q "SHA-256 mismatch" "$tmp/err" || fail "no checksum message: $(cat "$tmp/err")"
[ ! -e "$tmp/b/hellaswag/hellaswag_val.bin" ] || fail "items written from a bad download"
echo "ok: checksum mismatch rejected"
stop_server

"$DATA_PREP_BIN"/prepare hellaswag --data-dir "$tmp/c" --source-dir "$fixtures" >"$tmp/out" 2>"$tmp/err" \
    || fail "--source-dir: $(cat "$tmp/err")"
cmp -s "$tmp/a/hellaswag/hellaswag_val.bin" "$tmp/c/hellaswag/hellaswag_val.bin" || fail "--source-dir gave other items"
echo "ok: --source-dir without a server gives the same items"
echo "PASS: hellaswag_download"
