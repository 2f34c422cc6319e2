"""The files the reference reads and writes: model checkpoints (train_gpt2cu's model file
format), tensor bundles (ref.bin, read by test_gpt2cu), token shards and HellaSwag items files."""

import math
import os
import struct

import numpy as np

from reference_model import VOCAB_SIZE, InputError, ModelConfig, parameter_shapes

CHECKPOINT_MAGIC = 20261127
CHECKPOINT_VERSION = 2  # written; version 1 (no checksums) is still read
CHECKPOINT_HEADER_INTS = 256
CHECKPOINT_WEIGHTS_CRC = 13  # header ints holding the CRC-32Cs of version 2 (host/checkpoint.h)
CHECKPOINT_HEADER_CRC = 14

BUNDLE_MAGIC = 20261129
BUNDLE_VERSION = 1
BUNDLE_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i4"), 2: np.dtype("<f8")}

SHARD_MAGIC = 20240520
SHARD_HEADER_INTS = 256
SHARD_TOKEN_DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}

HELLASWAG_MAGIC = 20261130
HELLASWAG_VERSION = 1


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), the checksum of train_gpt2cu's model files (host/crc32c.h)


def _crc32c_byte_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_byte_table()
_CRC32C_TABLE_NP = np.array(_CRC32C_TABLE, dtype=np.uint32)


def _crc32c_register(state, data):
    """The CRC register after `data` (bytes), from `state`, one byte at a time."""
    table = _CRC32C_TABLE
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def _crc32c_zeros_operator(length):
    """Tables that advance a register over `length` zero bytes: the register update is linear
    over GF(2), so the images of the 32 unit registers, XORed by the bits of each byte of the
    register, give the advanced register."""
    units = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(length):
        units = _CRC32C_TABLE_NP[units & 0xFF] ^ (units >> 8)
    tables = []
    for k in range(4):
        table = [0] * 256
        for value in range(1, 256):
            low = value & -value
            table[value] = table[value ^ low] ^ int(units[8 * k + low.bit_length() - 1])
        tables.append(table)
    return tables


def crc32c(data):
    """CRC-32C of `data` (bytes-like); crc32c(b"123456789") == 0xE3069283. Large inputs are cut
    into equal chunks whose registers (from 0) numpy advances side by side; they are joined in
    order, as advancing a register over a chunk is advancing it over as many zeros, XOR the
    chunk's register from 0."""
    data = memoryview(data).cast("B")
    chunk = 1 << max(6, math.ceil(math.log2(math.sqrt(max(len(data), 1)))))
    chunks = len(data) // chunk
    if chunks < 4:
        return _crc32c_register(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    lanes = np.frombuffer(data, dtype=np.uint8, count=chunks * chunk).reshape(chunks, chunk)
    registers = np.zeros(chunks, dtype=np.uint32)
    for column in range(chunk):
        registers = _CRC32C_TABLE_NP[(registers ^ lanes[:, column]) & 0xFF] ^ (registers >> 8)
    t0, t1, t2, t3 = _crc32c_zeros_operator(chunk)
    state = 0xFFFFFFFF
    for register in registers.tolist():
        state = t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24] ^ register
    return _crc32c_register(state, data[chunks * chunk:]) ^ 0xFFFFFFFF


def _check_checksum(path, part, stored, computed):
    if stored != computed:
        raise InputError(f"{path}: the {part} fail their checksum (CRC-32C stored 0x{stored:08x}, computed "
                         f"0x{computed:08x}): the file is damaged (on disk or in a copy); use another checkpoint")


def _header_checksum(header):
    copy = np.array(header, dtype="<i4")
    copy[CHECKPOINT_HEADER_CRC] = 0
    return crc32c(copy.tobytes())


# ---------------------------------------------------------------------------------------------
# Files: checkpoint (model.bin), tensor bundle (ref.bin), token shard (input)


def _write_atomically(path, write):
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        write(f)
    os.replace(temporary, path)


def write_checkpoint(path, cfg, params, step=0):
    header = np.zeros(CHECKPOINT_HEADER_INTS, dtype="<i4")
    header[:13] = [CHECKPOINT_MAGIC, CHECKPOINT_VERSION, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.max_seq_len,
                   VOCAB_SIZE, cfg.padded_vocab_size, cfg.flags, cfg.rotary_dim, cfg.rotary_base,
                   0,  # weights stored as fp32
                   step]

    weights = []
    for name, shape in parameter_shapes(cfg):
        value = np.ascontiguousarray(params[name], dtype="<f4")
        assert value.shape == shape, (name, value.shape, shape)
        weights.append(value.tobytes())
    weights = b"".join(weights)
    header[CHECKPOINT_WEIGHTS_CRC] = np.uint32(crc32c(weights)).view(np.int32)
    header[CHECKPOINT_HEADER_CRC] = np.uint32(_header_checksum(header)).view(np.int32)

    def write(f):
        f.write(header.tobytes())
        f.write(weights)
    _write_atomically(path, write)


def read_checkpoint(path):
    """(ModelConfig, {name: float32 array}) from a model file; InputError names what is wrong."""
    how_to_fix = "expected a model checkpoint written by train_gpt2cu or by gpt2_reference.py --out"
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as error:
        raise InputError(f"{path}: cannot read the model checkpoint: {error.strerror}") from None
    header_bytes = 4 * CHECKPOINT_HEADER_INTS
    if len(blob) < header_bytes:
        raise InputError(f"{path}: {len(blob)} bytes is shorter than the {header_bytes}-byte header; {how_to_fix}")
    header = np.frombuffer(blob, dtype="<i4", count=CHECKPOINT_HEADER_INTS)
    if header[0] != CHECKPOINT_MAGIC:
        raise InputError(f"{path}: magic {header[0]} is not {CHECKPOINT_MAGIC}; {how_to_fix}")
    if header[1] not in (1, CHECKPOINT_VERSION):
        raise InputError(f"{path}: checkpoint version {header[1]}; this reads versions 1 and {CHECKPOINT_VERSION}; "
                         f"{how_to_fix}")
    if header[1] >= 2:
        _check_checksum(path, f"header's {header_bytes} bytes", int(header[CHECKPOINT_HEADER_CRC].view(np.uint32)),
                        _header_checksum(header))
    if header[6] != VOCAB_SIZE:
        raise InputError(f"{path}: vocabulary {header[6]} is not GPT-2's {VOCAB_SIZE}")
    if header[11] != 0:
        raise InputError(f"{path}: weight dtype code {header[11]} is not 0 (fp32), the only one supported")
    cfg = ModelConfig(n_layer=int(header[2]), n_embd=int(header[3]), n_head=int(header[4]),
                      max_seq_len=int(header[5]), padded_vocab_size=int(header[7]), flags=int(header[8]),
                      rotary_dim=int(header[9]), rotary_base=int(header[10]))
    cfg.validate(path)
    shapes = parameter_shapes(cfg)
    expected = header_bytes + 4 * sum(int(np.prod(shape)) for _, shape in shapes)
    if len(blob) != expected:
        raise InputError(f"{path}: {len(blob)} bytes, but its header describes {expected} "
                         f"(truncated or not an fp32 checkpoint); {how_to_fix}")
    if header[1] >= 2:
        _check_checksum(path, "weights", int(header[CHECKPOINT_WEIGHTS_CRC].view(np.uint32)),
                        crc32c(memoryview(blob)[header_bytes:]))
    params, position = {}, header_bytes
    for name, shape in shapes:
        count = int(np.prod(shape))
        params[name] = np.frombuffer(blob, dtype="<f4", count=count, offset=position).reshape(shape).copy()
        position += 4 * count
    return cfg, params


def write_bundle(path, tensors):
    """tensors: list of (name, numpy array of float32, int32 or float64)."""
    codes = {np.dtype(d).newbyteorder("="): code for code, d in BUNDLE_DTYPES.items()}

    def write(f):
        f.write(struct.pack("<iii", BUNDLE_MAGIC, BUNDLE_VERSION, len(tensors)))
        for name, array in tensors:
            array = np.asarray(array)
            code = codes.get(array.dtype.newbyteorder("="))
            if code is None:
                raise TypeError(f"bundle tensor {name}: dtype {array.dtype} is not float32, int32 or float64")
            encoded = name.encode("utf-8")
            f.write(struct.pack("<i", len(encoded)) + encoded)
            f.write(struct.pack(f"<ii{array.ndim}q", code, array.ndim, *array.shape))
            f.write(np.ascontiguousarray(array, dtype=BUNDLE_DTYPES[code]).tobytes())
    _write_atomically(path, write)


def write_hellaswag_items(path, items):
    """A HellaSwag items file as ./data_prep/prepare hellaswag writes it (host/hellaswag.h).
    items: list of (label, context tokens, [4 lists of ending tokens]); an item's index is its
    position."""
    body, total, longest = [], 0, 0
    for index, (label, context, endings) in enumerate(items):
        body += [index, label, len(context)] + [len(e) for e in endings] + list(context)
        for ending in endings:
            body += list(ending)
        total += len(context) + sum(len(e) for e in endings)
        longest = max([longest] + [len(context) + len(e) for e in endings])
    header = [HELLASWAG_MAGIC, HELLASWAG_VERSION, len(items), 4, total, longest, VOCAB_SIZE, 0]
    _write_atomically(path, lambda f: f.write(np.array(header + body, dtype="<i4").tobytes()))


def read_bundle(path):
    """{name: array} in file order; raises InputError on any malformed content."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as error:
        raise InputError(f"{path}: cannot read the tensor bundle: {error.strerror}") from None
    position = 0

    def take(count, what):
        nonlocal position
        if position + count > len(blob):
            raise InputError(f"{path}: truncated while reading {what} at byte {position}")
        position += count
        return blob[position - count:position]

    magic, version, count = struct.unpack("<iii", take(12, "the header"))
    if magic != BUNDLE_MAGIC or version != BUNDLE_VERSION:
        raise InputError(f"{path}: magic/version {magic}/{version}, expected {BUNDLE_MAGIC}/{BUNDLE_VERSION}")
    tensors = {}
    for _ in range(count):
        (name_length,) = struct.unpack("<i", take(4, "a name length"))
        name = take(name_length, "a name").decode("utf-8")
        code, ndim = struct.unpack("<ii", take(8, f"the dtype of {name}"))
        if code not in BUNDLE_DTYPES:
            raise InputError(f"{path}: tensor {name} has unknown dtype code {code}")
        shape = struct.unpack(f"<{ndim}q", take(8 * ndim, f"the shape of {name}"))
        dtype = BUNDLE_DTYPES[code]
        data = take(dtype.itemsize * int(np.prod(shape, dtype=np.int64)), f"the data of {name}")
        tensors[name] = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if position != len(blob):
        raise InputError(f"{path}: {len(blob) - position} unexpected bytes after the last tensor")
    return tensors


def write_synthetic_shards(out_dir, seed, splits):
    """Shards of uniformly random tokens for the GPU test scripts: one version-1 shard per
    (split, token count) in `splits`, named synthetic_<split>_000000.bin. Returns the generator,
    so a script can draw more from the same seeded stream."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in splits:
        tokens = rng.integers(0, VOCAB_SIZE, size=count, dtype=np.uint16)
        header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
        header[:3] = (SHARD_MAGIC, 1, count)
        _write_atomically(os.path.join(out_dir, f"synthetic_{split}_000000.bin"),
                          lambda f: f.write(header.tobytes() + tokens.astype("<u2").tobytes()))
    return rng


def read_shard_tokens(path, count):
    """The first `count` tokens of a token shard (host/shard.h format), without reading the rest."""
    header_bytes = 4 * SHARD_HEADER_INTS
    try:
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(header_bytes), dtype="<i4")
            if header.size < SHARD_HEADER_INTS:
                raise InputError(f"--tokens-from {path}: shorter than a shard header; "
                                 "expected a token shard written by data_prep")
            if header[0] != SHARD_MAGIC or header[1] not in SHARD_TOKEN_DTYPES:
                raise InputError(f"--tokens-from {path}: magic/version {header[0]}/{header[1]} is not a token shard "
                                 f"({SHARD_MAGIC}/1 or 2); expected a shard written by data_prep")
            dtype = SHARD_TOKEN_DTYPES[int(header[1])]
            if file_size != header_bytes + int(header[2]) * dtype.itemsize:
                raise InputError(f"--tokens-from {path}: header says {header[2]} tokens but the file size "
                                 f"{file_size} disagrees (truncated?)")
            if header[2] < count:
                raise InputError(f"--tokens-from {path}: has {header[2]} tokens, the batch needs {count}; "
                                 "use a bigger shard or a smaller --batch/--seq-len")
            tokens = np.fromfile(f, dtype=dtype, count=count).astype(np.int64)
    except OSError as error:
        raise InputError(f"--tokens-from {path}: cannot read: {error.strerror}") from None
    if tokens.max() >= VOCAB_SIZE:
        raise InputError(f"--tokens-from {path}: token id {tokens.max()} is outside the vocabulary of {VOCAB_SIZE}")
    return tokens
