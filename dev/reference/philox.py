"""Philox-4x32-10 and the trainer's dropout masks, bit for bit, in vectorized numpy.

This mirrors kernels/common.cuh (`philox4x32_10`, `DropoutParams::keep`, `attention_keep`) so
that the PyTorch reference drops exactly the elements the CUDA trainer drops. Embedding and
residual dropout (keep_mask, keep_scale):

  * element i of a dropout site uses Philox with counter (g lo, g hi, offset lo, offset hi),
    g = i >> 2, and key (seed lo, seed hi); it takes word (i & 3) of the four output words;
  * uniform = (word >> 8) * 2^-24, an exact float32 in [0, 1);
  * the element is kept iff uniform >= p (p as a float32), and kept values are scaled by
    1/(1-p) computed in float32.

Attention-probability dropout (attention_keep_mask, attention_keep_scale), 16 bits per element:

  * probability (b, h, q, k) of a (B, NH, T, T) tensor uses the call with counter id
    ((b*NH + h)*T + q) * ceil(T/8) + (k >> 3) (same counter and key layout as above);
  * it takes the low 16 bits of word (k & 7) >> 1 for even k, the high 16 bits for odd k;
  * kept iff that value >= threshold = min(65536, rint(p * 65536)) (p as a float32, ties to
    even), and kept values are scaled by 1/(1 - threshold/65536) computed in float32.

All arithmetic is uint64 holding 32-bit values: products of two 32-bit words fit exactly, and
every operand is an explicit np.uint64 so that numpy never promotes to float64 (numpy 1.x turns
uint64 op Python-int into float64).
"""

import numpy as np

_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SHIFT8 = np.uint64(8)
_MUL0 = np.uint64(0xD2511F53)
_MUL1 = np.uint64(0xCD9E8D57)
_WEYL0 = 0x9E3779B9
_WEYL1 = 0xBB67AE85

# Random123's known answer for philox4x32_10 with a zero counter and a zero key.
KNOWN_ANSWER_ZERO = (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)


def philox4x32_10(counter, key):
    """Ten Philox-4x32 rounds.

    counter: four arrays (broadcastable to one shape) of 32-bit values; key: two 32-bit ints.
    Returns four np.uint64 arrays of that shape holding the 32-bit output words.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _LOW32 for c in counter)
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for _ in range(10):
        product0 = _MUL0 * c0
        product1 = _MUL1 * c2
        c0, c1, c2, c3 = (
            (product1 >> _SHIFT32) ^ c1 ^ np.uint64(k0),
            product1 & _LOW32,
            (product0 >> _SHIFT32) ^ c3 ^ np.uint64(k1),
            product0 & _LOW32,
        )
        k0 = (k0 + _WEYL0) & 0xFFFFFFFF
        k1 = (k1 + _WEYL1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def _split64(value):
    value = int(value)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"Philox seed/offset {value} does not fit in 64 bits")
    return value & 0xFFFFFFFF, value >> 32


def _random_words(seed, offset, groups):
    """(len(groups), 4) uint64: the four words of each group of four elements."""
    groups = np.asarray(groups, dtype=np.uint64)
    offset_lo, offset_hi = _split64(offset)
    words = philox4x32_10(
        (groups & _LOW32, groups >> _SHIFT32, np.uint64(offset_lo), np.uint64(offset_hi)),
        _split64(seed),
    )
    return np.stack(words, axis=-1)


def _keep_from_words(p, words):
    # (word >> 8) * 2^-24 is exact in float64 as in float32; p is compared as the float32 the
    # trainer holds.
    uniform = (words >> _SHIFT8).astype(np.float64) * 2.0**-24
    return uniform >= float(np.float32(p))


def keep_elements(p, seed, offset, elements):
    """Keep decision of arbitrary element indices (any shape of non-negative int64)."""
    elements = np.asarray(elements, dtype=np.uint64)
    words = _random_words(seed, offset, (elements >> np.uint64(2)).reshape(-1))
    lanes = (elements & np.uint64(3)).reshape(-1).astype(np.int64)
    chosen = words[np.arange(lanes.size), lanes]
    return _keep_from_words(p, chosen).reshape(elements.shape)


def keep_mask(p, seed, offset, shape):
    """Keep decisions of a whole tensor; element index = flat row-major index in `shape`."""
    count = int(np.prod(shape, dtype=np.int64))
    words = _random_words(seed, offset, np.arange((count + 3) // 4, dtype=np.uint64))
    return _keep_from_words(p, words.reshape(-1)[:count]).reshape(shape)


def keep_scale(p):
    """The factor kept elements are multiplied by: 1/(1-p) in float32, as the trainer computes it."""
    return float(np.float32(1.0) / (np.float32(1.0) - np.float32(p)))


def attention_threshold(p):
    """16-bit random values below this are dropped: p rounded to a multiple of 2^-16, times 2^16."""
    return min(65536, int(np.rint(np.float32(p) * np.float32(65536))))


def attention_keep_scale(p):
    """The factor kept attention probabilities are multiplied by: 1/(1 - threshold/65536) in float32."""
    kept_fraction = np.float32(1.0) - np.float32(attention_threshold(p)) * np.float32(2.0**-16)  # exact
    return float(np.float32(1.0) / kept_fraction)


def attention_keep_rows(p, seed, offset, T, rows):
    """Keep decisions (len(rows), T) of attention-probability rows; row index (b*NH + h)*T + q."""
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    cells = (T + 7) // 8
    calls = rows[:, None] * np.uint64(cells) + np.arange(cells, dtype=np.uint64)[None, :]
    words = _random_words(seed, offset, calls.reshape(-1))  # (rows * cells, 4)
    # Eight 16-bit values per call, key k & 7 = 2 * word + half (low half first).
    values = np.stack((words & np.uint64(0xFFFF), words >> np.uint64(16)), axis=-1)
    values = values.reshape(rows.size, cells * 8)[:, :T]
    return values >= np.uint64(attention_threshold(p))


def attention_keep_mask(p, seed, offset, shape):
    """Keep decisions of a whole (B, NH, T, T) attention-probability tensor."""
    B, NH, T, T_keys = shape
    if T != T_keys:
        raise ValueError(f"attention probabilities must be (B, NH, T, T), got {shape}")
    rows = np.arange(B * NH * T, dtype=np.uint64)
    return attention_keep_rows(p, seed, offset, T, rows).reshape(shape)


# Dropout call sites. Each (micro-step, rank, site) gets its own Philox offset, so that no two
# masks of a run share random numbers: site 0 is the embedding dropout; layer l has the
# attention-probability dropout (1+3l), the residual dropout after attention (2+3l) and the
# residual dropout after the MLP (3+3l).
SITE_EMBEDDING = 0


def site_attention_probs(layer):
    return 1 + 3 * layer


def site_residual_after_attention(layer):
    return 2 + 3 * layer


def site_residual_after_mlp(layer):
    return 3 + 3 * layer


def dropout_offset(step, micro_step, grad_accum, world_size, rank, n_layer, site):
    """The trainer's offset formula (step counts from 1, micro_step from 0)."""
    if step < 1 or not 0 <= micro_step < grad_accum or not 0 <= rank < world_size:
        raise ValueError(f"bad dropout coordinates: step {step}, micro_step {micro_step}/{grad_accum}, "
                         f"rank {rank}/{world_size}")
    if not 0 <= site < 1 + 3 * n_layer:
        raise ValueError(f"dropout site {site} out of range for {n_layer} layers")
    micro = (step - 1) * grad_accum + micro_step
    return (micro * world_size + rank) * (1 + 3 * n_layer) + site


def check_known_answer():
    """Raises AssertionError unless Philox reproduces Random123's zero-counter known answer."""
    words = tuple(int(w) for w in philox4x32_10((0, 0, 0, 0), (0, 0)))
    if words != KNOWN_ANSWER_ZERO:
        raise AssertionError("philox4x32_10(0, 0) = " + " ".join(f"{w:08x}" for w in words) +
                             ", expected " + " ".join(f"{w:08x}" for w in KNOWN_ANSWER_ZERO))


_USAGE = """usage: philox.py keep-bits P SEED OFFSET FIRST_ELEMENT COUNT
       philox.py attention-keep-bits P SEED OFFSET T FIRST_ROW ROW_COUNT"""


def _print_keep_bits(argv):
    """CLI for cross-checking against kernels/common.cuh, one line of '0'/'1':
    keep-bits P SEED OFFSET FIRST COUNT: DropoutParams::keep of elements FIRST..FIRST+COUNT-1;
    attention-keep-bits P SEED OFFSET T FIRST_ROW ROW_COUNT: attention_keep of rows
    FIRST_ROW..FIRST_ROW+ROW_COUNT-1 (row (b*NH + h)*T + q), all T keys of each, row after row.
    """
    if len(argv) == 6 and argv[0] == "keep-bits":
        p, seed, offset, first, count = float(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5])
        keep = keep_elements(p, seed, offset, np.arange(count, dtype=np.uint64) + np.uint64(first))
    elif len(argv) == 7 and argv[0] == "attention-keep-bits":
        p, seed, offset = float(argv[1]), int(argv[2]), int(argv[3])
        T, first, count = int(argv[4]), int(argv[5]), int(argv[6])
        keep = attention_keep_rows(p, seed, offset, T, np.arange(count, dtype=np.uint64) + np.uint64(first))
    else:
        raise SystemExit(_USAGE)
    print("".join("1" if k else "0" for k in keep.reshape(-1)))


if __name__ == "__main__":
    import sys

    _print_keep_bits(sys.argv[1:])
