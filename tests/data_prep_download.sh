#!/usr/bin/env bash
# Downloads through ./data_prep/prepare against tests/http_fixture_server.py on 127.0.0.1:
# the pile and openwebtext recipes fetch small fixtures; a transfer dropped mid-way is retried
# with a Range request; a run that gives up keeps its .part file and the next run resumes it;
# a checksum mismatch is rejected; an unreachable server says how to work offline.
set -uo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
[ -x "$DATA_PREP_BIN/prepare" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
tmp=$(mktemp -d)
source tests/support/fixture_server.sh
trap 'stop_server; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

pile() { "$DATA_PREP_BIN"/prepare pile --pile-train-files 2 --checksums tests/fixtures/pile/SHA256SUMS "$@"; }

# 1. Every file verified; the first response of each drops after 100 bytes and is resumed.
start_server tests/fixtures/pile --drop-after 100 --drop-count 1
: >"$tmp/requests.log"
if pile --data-dir "$tmp/a" --url "$url" >"$tmp/out" 2>"$tmp/err"; then
    grep -q "range=bytes=100- 206" "$tmp/requests.log" || fail "no resumed request: $(cat "$tmp/requests.log")"
    for f in val.jsonl.zst test.jsonl.zst train/00.jsonl.zst train/01.jsonl.zst; do
        cmp -s "tests/fixtures/pile/$f" "$tmp/a/the_pile/downloads/$f" || fail "downloaded $f differs"
    done
    [ -f "$tmp/a/the_pile/manifest.json" ] || fail "no manifest after download"
    echo "ok: download with a dropped connection, retried and resumed"
else
    fail "pile download"; cat "$tmp/err"
fi

# 2. Interrupted and given up (--retries 0): the .part file stays, no dataset; the next run resumes.
start_server tests/fixtures/pile --drop-after 150 --drop-count 1
: >"$tmp/requests.log"
if pile --data-dir "$tmp/b" --url "$url" --retries 0 >"$tmp/out" 2>"$tmp/err"; then
    fail "a dropped transfer with --retries 0 succeeded"
else
    grep -qF "cannot download $url/val.jsonl.zst" "$tmp/err" || fail "message lacks the URL: $(cat "$tmp/err")"
    [ "$(stat -c %s "$tmp/b/the_pile/downloads/val.jsonl.zst.part" 2>/dev/null)" = 150 ] || fail "no 150-byte .part file"
    [ ! -e "$tmp/b/the_pile/downloads/val.jsonl.zst" ] || fail "an incomplete download has its final name"
    [ ! -e "$tmp/b/the_pile/manifest.json" ] || fail "manifest after a failed download"
    start_server tests/fixtures/pile
    : >"$tmp/requests.log"
    if pile --data-dir "$tmp/b" --url "$url" >"$tmp/out" 2>"$tmp/err"; then
        grep -q "GET /val.jsonl.zst range=bytes=150- 206" "$tmp/requests.log" || fail "next run did not resume: $(cat "$tmp/requests.log")"
        cmp -s tests/fixtures/pile/val.jsonl.zst "$tmp/b/the_pile/downloads/val.jsonl.zst" || fail "resumed file differs"
        echo "ok: interrupted download resumed by the next run"
    else
        fail "resume run"; cat "$tmp/err"
    fi
fi

# 3. Checksum mismatch: rejected, the bad download deleted.
start_server tests/fixtures/pile
sed 's/^[0-9a-f]\{8\}/00000000/' tests/fixtures/pile/SHA256SUMS >"$tmp/wrong_sums"
if "$DATA_PREP_BIN"/prepare pile --data-dir "$tmp/c" --url "$url" --pile-train-files 2 --checksums "$tmp/wrong_sums" >"$tmp/out" 2>"$tmp/err"; then
    fail "a checksum mismatch was accepted"
else
    grep -q "SHA-256 mismatch" "$tmp/err" || fail "no checksum message: $(cat "$tmp/err")"
    [ -z "$(ls "$tmp/c/the_pile/downloads" 2>/dev/null)" ] || fail "kept a bad download: $(ls "$tmp/c/the_pile/downloads")"
    echo "ok: checksum mismatch rejected"
fi

# 4. OpenWebText's tar.xz of .xz tars, downloaded.
start_server tests/fixtures/owt
if "$DATA_PREP_BIN"/prepare openwebtext --data-dir "$tmp/d" --url "$url/openwebtext.tar.xz" --val-fraction 0.1 >"$tmp/out" 2>"$tmp/err"; then
    grep -q "val .* 3 documents" "$tmp/out" || fail "openwebtext split: $(cat "$tmp/out")"  # ceil(0.1 * 25)
    echo "ok: openwebtext download and holdout"
else
    fail "openwebtext download"; cat "$tmp/err"
fi
stop_server

# 5. No server (like no network): a clear message on working offline.
if "$DATA_PREP_BIN"/prepare pile --data-dir "$tmp/e" --url "http://127.0.0.1:1" --retries 0 >"$tmp/out" 2>"$tmp/err"; then
    fail "download from a closed port succeeded"
else
    grep -q -- "--source-dir" "$tmp/err" || fail "offline message lacks --source-dir: $(cat "$tmp/err")"
    echo "ok: unreachable server: $(grep -m1 'If this machine' "$tmp/err" | cut -c1-100)..."
fi

if [ "$failures" -ne 0 ]; then echo "FAIL: data_prep_download ($failures failures)"; exit 1; fi
echo "PASS: data_prep_download"
