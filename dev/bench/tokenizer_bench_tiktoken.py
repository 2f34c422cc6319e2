#!/usr/bin/env python3
"""Python (Rust) tiktoken's side of dev/bench/tokenizer_bench.sh.

Builds the gpt2 Encoding in memory from our encoder.json (no download: the GPU machine has no
network), then times encode_ordinary on one thread and encode_ordinary_batch on N threads (the
text cut at newlines into N * 8 pieces). Prints "<threads> <bytes> <tokens> <seconds>" per line,
best of REPEAT runs, as the npm helper does.

    python3 dev/bench/tokenizer_bench_tiktoken.py VOCAB_DIR FILE THREADS [REPEAT]
"""
import json
import os
import sys
import time

import tiktoken

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def gpt2_byte_decoder():
    """GPT-2's unicode character -> byte map (the inverse of the printable-byte spelling)."""
    printable = [b for b in range(256) if (0x21 <= b <= 0x7E) or (0xA1 <= b <= 0xAC) or b >= 0xAE]
    others = [b for b in range(256) if b not in printable]
    decoder = {chr(b): b for b in printable}
    decoder.update({chr(256 + i): b for i, b in enumerate(others)})
    return decoder


def load_encoding(vocab_dir):
    with open(os.path.join(vocab_dir, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    byte_of = gpt2_byte_decoder()
    ranks = {bytes(byte_of[c] for c in token): rank for token, rank in encoder.items() if token != "<|endoftext|>"}
    return tiktoken.Encoding(name="gpt2_from_encoder_json", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": encoder["<|endoftext|>"]})


def split_at_newlines(text, parts):
    pieces, begin = [], 0
    for i in range(1, parts + 1):
        end = len(text) if i == parts else text.find("\n", len(text) * i // parts)
        end = len(text) if end < 0 else end
        pieces.append(text[begin:end])
        begin = end
    return pieces


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    vocab_dir, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    repeat = int(sys.argv[4]) if len(sys.argv) == 5 else 3
    enc = load_encoding(vocab_dir)
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    for n in sorted({1, threads}):
        pieces = split_at_newlines(text, n * 8)
        best = None
        for _ in range(repeat):
            start = time.perf_counter()
            if n == 1:
                tokens = len(enc.encode_ordinary(text))
            else:
                tokens = sum(len(ids) for ids in enc.encode_ordinary_batch(pieces, num_threads=n))
            seconds = time.perf_counter() - start
            if best is None or seconds < best[1]:
                best = (tokens, seconds)
        print(f"{n} {len(data)} {best[0]} {best[1]}")


if __name__ == "__main__":
    main()
