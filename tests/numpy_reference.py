#!/usr/bin/env python3
"""What numpy itself gives for the requests of tests/test_numpy_random.cpp.

Reads one JSON object on stdin, writes one on stdout:
  {"seed_state": [[seed, words], ...]}   SeedSequence(seed).generate_state(words)
  {"raw": [[seed, count], ...]}          default_rng(seed).bit_generator.random_raw(count)
  {"uint32": [[seed, count], ...]}       the bit generator's next_uint32, count times (ctypes)
  {"interval": [[seed, [max, ...]], ...]}  numpy's C random_interval(bitgen, max) in sequence,
                                         called through ctypes on default_rng(seed)'s generator
  {"permutation": [[seed, n], ...]}      default_rng(seed).permutation(n): its SHA-256 (int64,
                                         little-endian) and first values
  {"test_count": [[n, fraction], ...]}   math.ceil(fraction * n), Hugging Face datasets' n_test
Exits 3 when numpy is missing, so the caller can say so instead of failing.
"""
import ctypes
import hashlib
import json
import math
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(3)


def random_interval_function():
    # numpy's bounded-integer code is compiled into the Generator extension, which exports it.
    from numpy.random import _generator
    library = ctypes.CDLL(_generator.__file__)
    function = library.random_interval
    function.restype = ctypes.c_uint64
    function.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    return function


def main():
    request = json.load(sys.stdin)
    reply = {"numpy": np.__version__}
    reply["seed_state"] = [
        [int(v) for v in np.random.SeedSequence(seed).generate_state(words)]
        for seed, words in request.get("seed_state", [])
    ]
    reply["raw"] = [
        [int(v) for v in np.random.default_rng(seed).bit_generator.random_raw(count)]
        for seed, count in request.get("raw", [])
    ]
    reply["uint32"] = []
    for seed, count in request.get("uint32", []):
        bits = np.random.default_rng(seed).bit_generator.ctypes
        reply["uint32"].append([int(bits.next_uint32(bits.state)) for _ in range(count)])
    reply["interval"] = []
    if request.get("interval"):
        function = random_interval_function()
        for seed, maxima in request["interval"]:
            bits = np.random.default_rng(seed).bit_generator.ctypes
            reply["interval"].append([int(function(bits.bit_generator, m)) for m in maxima])
    reply["permutation"] = []
    for seed, n in request.get("permutation", []):
        values = np.random.default_rng(seed).permutation(n)
        reply["permutation"].append({
            "sha256": hashlib.sha256(values.astype("<i8").tobytes()).hexdigest(),
            "first": [int(v) for v in values[:8]],
        })
    reply["test_count"] = [math.ceil(fraction * n) for n, fraction in request.get("test_count", [])]
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
