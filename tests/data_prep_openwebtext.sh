#!/usr/bin/env bash
# End to end: `./data_prep/prepare openwebtext` on tests/fixtures/owt/openwebtext.tar.xz (subset
# archives and their members out of name order, members the builder skips, CRLF line ends)
# against the seed's pipeline written out in Python: the Hugging Face openwebtext builder's
# document order and cleanup (datasets/openwebtext/openwebtext.py), then
# train_test_split(test_size, seed=2357, shuffle=True) with numpy. The val split must hold the
# held-out documents in permutation order and train every other non-empty document in the
# builder's order, token for token (each document tokenized by ./data_prep/tokenize, then
# <|endoftext|>). Also from the extracted subset archives (--source-dir): identical shards.
set -euo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
[ -x "$DATA_PREP_BIN/prepare" ] && [ -x "$DATA_PREP_BIN/tokenize" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
python=${NUMPY_PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import numpy' 2>/dev/null; then
    echo "SKIPPED: numpy is not importable by $python (install python3-numpy)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for fraction in 0.2 0.0005; do
    "$DATA_PREP_BIN"/prepare openwebtext --data-dir "$tmp/$fraction" --source-dir tests/fixtures/owt \
        --val-fraction "$fraction" --threads 2 >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "prepare openwebtext"; }
    [ ! -e "$tmp/$fraction/openwebtext/downloads/openwebtext-subsets" ] || fail "the extracted subsets were not removed"
    "$python" - "$tmp/$fraction/openwebtext" "$fraction" "$tmp/builder" <<'PY' || fail "val fraction $fraction"
import json, math, os, re, subprocess, sys, tarfile
import numpy as np

out, fraction, work = sys.argv[1], float(sys.argv[2]), sys.argv[3]

# datasets/openwebtext/openwebtext.py: download_and_extract, sorted listing, extract, sorted listing.
if not os.path.isdir(work):
    with tarfile.open("tests/fixtures/owt/openwebtext.tar.xz") as outer:
        outer.extractall(work)
owt_dir = os.path.join(work, "openwebtext")
texts = []
for subset in sorted(os.listdir(owt_dir)):
    if not subset.endswith("xz"):
        continue
    ex_dir = os.path.join(work, "extracted", subset)
    if not os.path.isdir(ex_dir):
        with tarfile.open(os.path.join(owt_dir, subset), "r:xz") as inner:
            inner.extractall(ex_dir)
    for name in sorted(os.listdir(ex_dir)):
        if name.endswith("txt"):
            with open(os.path.join(ex_dir, name), encoding="utf-8") as f:
                texts.append(re.sub("\n\n\n+", "\n\n", f.read()).strip())

# Arrow's train_test_split(test_size=fraction, seed=2357, shuffle=True).
n = len(texts)
n_test = math.ceil(fraction * n)
permutation = np.random.default_rng(2357).permutation(n)
test = [int(i) for i in permutation[:n_test]]
held_out = set(test)
expected_val = [texts[i] for i in test if texts[i]]
expected_train = [texts[i] for i in range(n) if i not in held_out and texts[i]]

def tokens(text):
    ids = subprocess.run([os.environ["DATA_PREP_BIN"] + "/tokenize", "encode"], input=text.encode(), capture_output=True,
                         check=True).stdout.split()
    return [int(i) for i in ids] + [50256]

def split_documents(split):
    manifest = json.load(open(f"{out}/manifest.json"))
    ids = []
    for shard in manifest["splits"][split]["shards"]:
        data = open(f"{out}/{shard['file']}", "rb").read()[1024:]
        ids += np.frombuffer(data, dtype="<u2").tolist()
    documents, start = [], 0
    for i, token in enumerate(ids):
        if token == 50256:
            documents.append(ids[start:i + 1])
            start = i + 1
    assert start == len(ids), "the stream ends inside a document"
    return manifest, documents

manifest, val = split_documents("val")
_, train = split_documents("train")
assert n == 25, f"{n} documents: the fixture changed?"
assert manifest["holdouts"]["val"]["documents"] == n and manifest["holdouts"]["val"]["held_out_documents"] == n_test
assert val == [tokens(t) for t in expected_val], f"val: not the held-out documents {test} in permutation order"
assert train == [tokens(t) for t in expected_train], "train: not the other documents in the builder's order"
assert "Line one\nLine two\n\nLine three\nend" in texts, "the CRLF document"
print(f"fraction {fraction}: {n} documents, val = documents {test} in this order ({len(val)} non-empty), "
      f"{len(train)} train documents in the builder's order")
PY
done

# The same from the subset archives already extracted: the same bytes.
DATA=$tmp/extracted
mkdir -p "$tmp/subsets"
tar -xJf tests/fixtures/owt/openwebtext.tar.xz -C "$tmp/subsets"
"$DATA_PREP_BIN"/prepare openwebtext --data-dir "$DATA" --source-dir "$tmp/subsets" --val-fraction 0.2 --threads 1 \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "prepare from extracted subsets"; }
for f in "$tmp/0.2/openwebtext"/*.bin; do
    cmp -s "$f" "$DATA/openwebtext/$(basename "$f")" || fail "$(basename "$f") differs when read from the extracted subsets"
done
echo "PASS: data_prep_openwebtext"
