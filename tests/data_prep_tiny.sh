#!/usr/bin/env bash
# End to end: `./data_prep/prepare tiny` (the quickstart's dataset) from the corpus that
# `make setup` installs. Checks the shards and manifest, that a rerun does nothing, that the
# output does not depend on --threads, and that ./data_prep/dump agrees with the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}
[ -x "$DATA_PREP_BIN/prepare" ] && [ -x "$DATA_PREP_BIN/dump" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

DATA_DIR=$tmp/a "$DATA_PREP_BIN"/prepare tiny --threads 2 >"$tmp/first.out" 2>"$tmp/first.err" || { cat "$tmp/first.err"; fail "prepare tiny"; }
cat "$tmp/first.out"
grep -q "tiny written to $tmp/a/tiny" "$tmp/first.out" || fail "no summary line"
out=$tmp/a/tiny
[ -f "$out/manifest.json" ] || fail "no manifest.json"
[ ! -e "$out/.staging" ] || fail "staging directory left behind"
train_shards=$(ls "$out"/tiny_train_*.bin | wc -l)
[ "$train_shards" -ge 4 ] || fail "expected several train shards, got $train_shards"
[ -f "$out/tiny_val_000000.bin" ] || fail "no val shard"

# The manifest's counts equal what dump reads from the shards.
python3 - "$out" <<'PY' || fail "manifest does not match the shards"
import json, os, subprocess, sys
out = sys.argv[1]
manifest = json.load(open(f"{out}/manifest.json"))
assert manifest["splits"]["val"]["documents"] == 2, "2 of the 100 corpus files are the val split"
assert manifest["splits"]["train"]["documents"] == 98
for split, info in manifest["splits"].items():
    tokens = documents = 0
    for shard in info["shards"]:
        stats = dict(line.split(None, 1) for line in
                     subprocess.run([os.environ["DATA_PREP_BIN"] + "/dump", f"{out}/{shard['file']}"], check=True, capture_output=True,
                                    text=True).stdout.splitlines())
        assert int(stats["tokens"]) == shard["tokens"], shard
        tokens += int(stats["tokens"])
        documents += int(stats["documents"].split()[0])
        assert int(stats["max"].split()[-1]) <= 50256
    assert tokens == info["tokens"], (split, tokens, info["tokens"])
    assert documents == info["documents"], (split, documents, info["documents"])
    print(f"{split}: {tokens} tokens, {documents} documents, {len(info['shards'])} shards (dump agrees)")
PY

# Token for token what tiktoken (npm, gpt2) gives for the corpus: every file one document (its
# sentences joined by "\n"), <|endoftext|> after each; val holds the 2 documents Hugging Face's
# train_test_split(test_size=0.02, seed=2357) holds out, in permutation order (numpy gives them when
# it is installed), train the other 98 in corpus order.
held_out=$(/usr/bin/python3 -c 'import numpy; print(",".join(map(str, numpy.random.default_rng(2357).permutation(100)[:2])))' \
           2>/dev/null || echo any)
NODE_PATH=$PWD/node_modules node - "$out" "$held_out" <<'JS' || fail "shards differ from tiktoken's tokens"
const fs = require("fs");
const { get_encoding } = require("tiktoken");
const out = process.argv[2], corpus = "node_modules/nlp-corpus/builds", eot = 50256;
const enc = get_encoding("gpt2");
const manifest = JSON.parse(fs.readFileSync(`${out}/manifest.json`, "utf8"));
const documents = (split) => {
  const ids = [];
  for (const shard of manifest.splits[split].shards) {
    const bytes = fs.readFileSync(`${out}/${shard.file}`);
    for (let i = 1024; i < bytes.length; i += 2) ids.push(bytes.readUInt16LE(i));
  }
  const docs = [];
  for (let start = 0, i = 0; i < ids.length; i++) if (ids[i] === eot) { docs.push(ids.slice(start, i).join(" ")); start = i + 1; }
  return docs;
};
const train = documents("train"), val = documents("val");
const files = fs.readdirSync(corpus).filter((f) => /^doc-\d+\.json$/.test(f)).sort();
const held = process.argv[3] === "any" ? null : process.argv[3].split(",").map(Number);
const tokens = files.map((f) =>
  Array.from(enc.encode_ordinary(JSON.parse(fs.readFileSync(`${corpus}/${f}`, "utf8")).join("\n"))).join(" "));
const valIndex = held || val.map((doc) => tokens.indexOf(doc));
if (val.length !== 2 || valIndex.some((i, k) => i < 0 || tokens[i] !== val[k])) {
  console.error(`val is not corpus documents ${valIndex} in this order`); process.exit(1);
}
const trainExpected = tokens.filter((_, i) => !valIndex.includes(i));
if (train.length !== 98 || trainExpected.some((doc, k) => train[k] !== doc)) {
  console.error("train is not the other 98 documents in corpus order"); process.exit(1);
}
console.log(`all ${files.length} documents equal tiktoken's tokens (98 train, val = files ${valIndex.map((i) => files[i])}` +
            `${held ? ", numpy's holdout" : ""})`);
JS

# The decoded text of the first document is corpus text.
"$DATA_PREP_BIN"/dump "$out/tiny_train_000000.bin" --text --limit 200 2>/dev/null | grep -q '[a-z]' || fail "dump --text"

# A complete dataset is not rebuilt.
DATA_DIR=$tmp/a "$DATA_PREP_BIN"/prepare tiny >"$tmp/second.out" 2>&1 || fail "rerun"
grep -q "already complete" "$tmp/second.out" || fail "rerun did not report a complete dataset"

# Same bytes with one thread.
DATA_DIR=$tmp/b "$DATA_PREP_BIN"/prepare tiny --threads 1 >/dev/null 2>&1 || fail "prepare tiny --threads 1"
for f in "$out"/*.bin; do cmp -s "$f" "$tmp/b/tiny/$(basename "$f")" || fail "$(basename "$f") differs between 2 threads and 1"; done
[ "$(ls "$tmp/b/tiny"/*.bin | wc -l)" -eq "$(ls "$out"/*.bin | wc -l)" ] || fail "different shard counts"

# Killed at a random moment: either complete (manifest) or, on rerun, rebuilt identically.
DATA_DIR=$tmp/c "$DATA_PREP_BIN"/prepare tiny --threads 1 >/dev/null 2>&1 &
victim=$!
sleep 0.$((RANDOM % 9 + 1))
kill -9 "$victim" 2>/dev/null || true
wait "$victim" 2>/dev/null || true
if [ ! -f "$tmp/c/tiny/manifest.json" ]; then
    echo "killed before completion; files left: $(ls -A "$tmp/c/tiny" 2>/dev/null | tr '\n' ' ')"
fi
DATA_DIR=$tmp/c "$DATA_PREP_BIN"/prepare tiny --threads 2 >/dev/null 2>&1 || fail "rerun after kill"
for f in "$out"/*.bin; do cmp -s "$f" "$tmp/c/tiny/$(basename "$f")" || fail "rerun after kill: $(basename "$f") differs"; done
[ -z "$(ls -A "$tmp/c/tiny" | grep -E '\.tmp$|^\.staging$' || true)" ] || fail "leftovers after rerun"
echo "PASS: data_prep_tiny"
