#!/usr/bin/env python3
"""PyTorch reference of train_gpt2cu's GPT: the state that test_gpt2cu compares against.

    gpt2_reference.py --out DIR [model, mode, data and optimizer flags]
        writes DIR/model.bin (the weights the trainer starts from, checkpoint format) and
        DIR/ref.bin (tensor bundle: tokens, logits, loss, every gradient of the first step, and
        the loss and pre-clip gradient norm of each of --steps AdamW steps on the same batch)
    gpt2_reference.py --check DIR     structural and sanity checks of a written reference state
    gpt2_reference.py --self-test     Philox known answer, file round trips, causality, and
                                      finite-difference gradient checks of this model in float64

The model is computed with autograd in float64 (or --dtype float32), on CUDA when available.
It is written as the list of operations the trainer performs, in the trainer's order, and uses
the trainer's dropout masks bit for bit (philox.py), so dropout runs compare exactly.
Runs with PyTorch 1.13 and 2.x.
"""

import os

# cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import dataclasses
import math
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox  # noqa: E402

VOCAB_SIZE = 50257
LAYERNORM_EPS = 1e-5

CHECKPOINT_MAGIC = 20261127
CHECKPOINT_VERSION = 1
CHECKPOINT_HEADER_INTS = 256
FLAG_LEARNED_POS_EMB = 1 << 0
FLAG_POST_NORM = 1 << 1
FLAG_ROTARY_INTERLEAVED = 1 << 2
FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX = 1 << 3
FLAG_FP32_RESIDUAL = 1 << 4  # storage precision of the trainer's residual stream; same math here
KNOWN_FLAGS = (1 << 5) - 1

BUNDLE_MAGIC = 20261129
BUNDLE_VERSION = 1
BUNDLE_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i4"), 2: np.dtype("<f8")}

SHARD_MAGIC = 20240520
SHARD_HEADER_INTS = 256
SHARD_TOKEN_DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}

# Linear-layer weights: the only tensors AdamW decays (never embeddings, biases or LayerNorm).
DECAYED_PARAMETERS = {"qkv_w", "attn_proj_w", "fc_w", "fc_proj_w"}


class InputError(Exception):
    """A bad flag or input file; main() prints it without a traceback."""


# ---------------------------------------------------------------------------------------------
# Model configuration and the parameter table (checkpoint order)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    n_layer: int
    n_embd: int
    n_head: int
    max_seq_len: int
    padded_vocab_size: int
    flags: int
    rotary_dim: int  # leading dims of each q/k head that are rotated; 0 = no rotary
    rotary_base: int = 10000

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def learned_pos_emb(self):
        return bool(self.flags & FLAG_LEARNED_POS_EMB)

    @property
    def post_norm(self):
        return bool(self.flags & FLAG_POST_NORM)

    @property
    def rotary_interleaved(self):
        return bool(self.flags & FLAG_ROTARY_INTERLEAVED)

    @property
    def scale_attn_by_inverse_layer_idx(self):
        return bool(self.flags & FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX)

    def validate(self, source):
        """Raises InputError naming `source` (a file or the flags) for an impossible model."""
        def fail(what):
            raise InputError(f"{source}: {what}")
        for name in ("n_layer", "n_embd", "n_head", "max_seq_len"):
            if getattr(self, name) <= 0:
                fail(f"{name} = {getattr(self, name)} must be positive")
        if self.n_embd % self.n_head:
            fail(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.padded_vocab_size < VOCAB_SIZE:
            fail(f"padded vocabulary {self.padded_vocab_size} is smaller than the vocabulary {VOCAB_SIZE}")
        if self.flags & ~KNOWN_FLAGS:
            fail(f"unknown flag bits 0x{self.flags & ~KNOWN_FLAGS:x} (known: 0x{KNOWN_FLAGS:x})")
        if self.rotary_dim < 0 or self.rotary_dim > self.head_dim or self.rotary_dim % 2:
            fail(f"rotary_dim {self.rotary_dim} must be even and within [0, head_dim {self.head_dim}]")
        if self.rotary_dim and self.rotary_base <= 0:
            fail(f"rotary_base {self.rotary_base} must be positive")
        if self.rotary_interleaved and not self.rotary_dim:
            fail("the rotary_interleaved flag is set but rotary_dim is 0")


def parameter_shapes(cfg):
    """(name, shape) of every parameter, in checkpoint order. Linear weights are (out, in)."""
    L, C, Vp = cfg.n_layer, cfg.n_embd, cfg.padded_vocab_size
    shapes = [("wte", (Vp, C))]
    if cfg.learned_pos_emb:
        shapes.append(("wpe", (cfg.max_seq_len, C)))
    shapes += [
        ("ln1_w", (L, C)), ("ln1_b", (L, C)),
        ("qkv_w", (L, 3 * C, C)), ("qkv_b", (L, 3 * C)),  # output columns ordered (3, NH, HD)
        ("attn_proj_w", (L, C, C)), ("attn_proj_b", (L, C)),
        ("ln2_w", (L, C)), ("ln2_b", (L, C)),
        ("fc_w", (L, 4 * C, C)), ("fc_b", (L, 4 * C)),
        ("fc_proj_w", (L, C, 4 * C)), ("fc_proj_b", (L, C)),
    ]
    if not cfg.post_norm:
        shapes += [("lnf_w", (C,)), ("lnf_b", (C,))]
    return shapes


def init_parameters(cfg, seed):
    """experiments.md's init as float32 arrays (what model.bin stores): linear and embedding
    weights N(0, 0.02), output projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorm (1, 0)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    std = 0.02
    output_projection_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    params = {}
    for name, shape in parameter_shapes(cfg):
        if name in ("wte", "wpe", "qkv_w", "fc_w"):
            value = rng.normal(0.0, std, shape)
        elif name in ("attn_proj_w", "fc_proj_w"):
            value = rng.normal(0.0, output_projection_std, shape)
        elif name in ("ln1_w", "ln2_w", "lnf_w"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[name] = value.astype(np.float32)
    # Padded rows are never an input token and never a logit; zero keeps them inert everywhere.
    params["wte"][VOCAB_SIZE:] = 0.0
    return params


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

    def write(f):
        f.write(header.tobytes())
        for name, shape in parameter_shapes(cfg):
            value = np.ascontiguousarray(params[name], dtype="<f4")
            assert value.shape == shape, (name, value.shape, shape)
            f.write(value.tobytes())
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
    if header[1] != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {header[1]} is not {CHECKPOINT_VERSION}; {how_to_fix}")
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


# ---------------------------------------------------------------------------------------------
# The model


class Dropout:
    """The trainer's dropout during one optimizer step (one micro-step, one rank): the mask of a
    call site is a pure function of (seed, offset(step, site), element index)."""

    def __init__(self, p, seed, step, n_layer):
        self.p, self.seed, self.step, self.n_layer = p, seed, step, n_layer
        self.factors = {}  # (site, shape, device, dtype) -> keep mask times the kept values' scale

    def __call__(self, x, site):
        """Embedding and residual dropout: element index = flat row-major index of x."""
        return self._apply(x, site, philox.keep_mask, philox.keep_scale)

    def attention_probs(self, probs, layer):
        """Attention-probability dropout of probs (B, NH, T, T): the attention kernels' own mask."""
        return self._apply(probs, philox.site_attention_probs(layer), philox.attention_keep_mask,
                           philox.attention_keep_scale)

    def _apply(self, x, site, keep_mask, keep_scale):
        if self.p == 0.0:
            return x
        key = (site, tuple(x.shape), x.device, x.dtype)
        if key not in self.factors:
            offset = philox.dropout_offset(self.step, 0, 1, 1, 0, self.n_layer, site)
            keep = keep_mask(self.p, self.seed, offset, tuple(x.shape))
            self.factors[key] = torch.from_numpy(keep).to(device=x.device, dtype=x.dtype) * keep_scale(self.p)
        return x * self.factors[key]


def layer_norm(x, weight, bias):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, LAYERNORM_EPS)


def rotary_tables(cfg, T, device, dtype):
    """cos and sin (T, rotary_dim/2) of angle t * base^(-2i/rotary_dim), positions t = 0..T-1."""
    inverse_frequency = cfg.rotary_base ** (-np.arange(0, cfg.rotary_dim, 2, dtype=np.float64) / cfg.rotary_dim)
    angles = np.outer(np.arange(T, dtype=np.float64), inverse_frequency)
    return (torch.tensor(np.cos(angles), device=device, dtype=dtype),
            torch.tensor(np.sin(angles), device=device, dtype=dtype))


def apply_rotary(x, cos, sin, rotary_dim, interleaved):
    """Rotates pairs of the first rotary_dim dims of each head of x (B, NH, T, HD): pairs are
    (2i, 2i+1) when interleaved (GPT-J), else (i, i + rotary_dim/2) (GPT-NeoX rotate-half)."""
    rotated, passthrough = x[..., :rotary_dim], x[..., rotary_dim:]
    if interleaved:
        a, b = rotated[..., 0::2], rotated[..., 1::2]
    else:
        a, b = rotated[..., :rotary_dim // 2], rotated[..., rotary_dim // 2:]
    a, b = a * cos - b * sin, b * cos + a * sin
    rotated = torch.stack((a, b), dim=-1).flatten(-2) if interleaved else torch.cat((a, b), dim=-1)
    return torch.cat((rotated, passthrough), dim=-1)


def causal_self_attention(x, cfg, layer, p, rotary, dropout):
    """x (B, T, C) -> (B, T, C). p: this layer's parameters."""
    B, T, C = x.shape
    NH, HD = cfg.n_head, cfg.head_dim
    qkv = F.linear(x, p["qkv_w"], p["qkv_b"])  # (B, T, 3C), columns (3, NH, HD)
    q, k, v = qkv.view(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4)  # each (B, NH, T, HD)
    if rotary is not None:
        q = apply_rotary(q, *rotary, cfg.rotary_dim, cfg.rotary_interleaved)
        k = apply_rotary(k, *rotary, cfg.rotary_dim, cfg.rotary_interleaved)
    scale = 1.0 / math.sqrt(HD)
    if cfg.scale_attn_by_inverse_layer_idx:
        scale /= layer + 1
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, NH, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    probs = dropout.attention_probs(probs, layer)  # probs (B, NH, T, T) indexed (b, h, q, k)
    y = (probs @ v).transpose(1, 2).reshape(B, T, C)
    return F.linear(y, p["attn_proj_w"], p["attn_proj_b"])


def mlp(x, p):
    hidden = F.gelu(F.linear(x, p["fc_w"], p["fc_b"]), approximate="tanh")
    return F.linear(hidden, p["fc_proj_w"], p["fc_proj_b"])


LAYER_PARAMETERS = ("ln1_w", "ln1_b", "qkv_w", "qkv_b", "attn_proj_w", "attn_proj_b",
                    "ln2_w", "ln2_b", "fc_w", "fc_b", "fc_proj_w", "fc_proj_b")


def forward(params, cfg, inputs, dropout):
    """Logits (B, T, V) over the real vocabulary (padded columns are never computed).
    params: {name: tensor} (stacked over layers); inputs: (B, T) int64 token ids."""
    T = inputs.shape[1]
    x = F.embedding(inputs, params["wte"])  # (B, T, C)
    if cfg.learned_pos_emb:
        x = x + params["wpe"][:T]
    # Both block styles start from the dropped-out embedding: the pre-norm residual stream, or
    # the post-norm input of block 0.
    h = dropout(x, philox.SITE_EMBEDDING)
    rotary = rotary_tables(cfg, T, x.device, x.dtype) if cfg.rotary_dim else None
    for layer in range(cfg.n_layer):
        p = {name: params[name][layer] for name in LAYER_PARAMETERS}
        attention_site = philox.site_residual_after_attention(layer)
        mlp_site = philox.site_residual_after_mlp(layer)
        if cfg.post_norm:
            attention = causal_self_attention(h, cfg, layer, p, rotary, dropout)
            h = layer_norm(h + dropout(attention, attention_site), p["ln1_w"], p["ln1_b"])
            h = layer_norm(h + dropout(mlp(h, p), mlp_site), p["ln2_w"], p["ln2_b"])
        else:
            attention = causal_self_attention(layer_norm(h, p["ln1_w"], p["ln1_b"]), cfg, layer, p, rotary, dropout)
            h = h + dropout(attention, attention_site)
            h = h + dropout(mlp(layer_norm(h, p["ln2_w"], p["ln2_b"]), p), mlp_site)
    if not cfg.post_norm:
        h = layer_norm(h, params["lnf_w"], params["lnf_b"])
    return h @ params["wte"][:VOCAB_SIZE].t()  # tied LM head, no bias


def cross_entropy_loss(logits, targets):
    """Mean over all B*T targets. logits (B, T, V), targets (B, T) int64."""
    return F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------
# Optimizer


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    # 1e-4: ten steps on one batch then lower the loss smoothly (10.86 -> 8.85 for test_gpt2cu's
    # base model) instead of oscillating, so that 16-bit rounding is not amplified (test_gpt2.cu).
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def as_vector(self):
        return np.array([self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.grad_clip])


def clip_factor(grad_norm, grad_clip):
    """Gradients are scaled by grad_clip/(norm + 1e-6) when the global norm exceeds grad_clip:
    torch.nn.utils.clip_grad_norm_'s factor, and the trainer's."""
    return grad_clip / (grad_norm + 1e-6) if grad_norm > grad_clip else 1.0


@torch.no_grad()
def adamw_update(param, grad, m, v, step, opt, decay):
    """Decoupled AdamW (Loshchilov & Hutter), torch.optim.AdamW's formula; step counts from 1."""
    m.mul_(opt.beta1).add_(grad, alpha=1.0 - opt.beta1)
    v.mul_(opt.beta2).addcmul_(grad, grad, value=1.0 - opt.beta2)
    m_hat = m / (1.0 - opt.beta1 ** step)
    v_hat = v / (1.0 - opt.beta2 ** step)
    update = m_hat / (v_hat.sqrt() + opt.eps)
    if decay:
        update = update + opt.weight_decay * param
    param.sub_(opt.lr * update)


# ---------------------------------------------------------------------------------------------
# The reference run


@dataclasses.dataclass
class ReferenceState:
    logits: np.ndarray  # (B, T, V) float32, first forward
    loss: float  # first forward
    grads: dict  # name -> float32 array, first backward
    losses: list  # per step, before its update
    grad_norms: list  # per step, before clipping


def run_reference(cfg, params_fp32, tokens, steps, dropout_p, seed, opt, device, dtype, log=print):
    params = {name: torch.tensor(value, dtype=dtype, device=device, requires_grad=True)
              for name, value in params_fp32.items()}
    names = [name for name, _ in parameter_shapes(cfg)]
    tokens_t = torch.tensor(tokens, dtype=torch.int64, device=device)
    inputs, targets = tokens_t[:, :-1], tokens_t[:, 1:]
    adam_m = {name: torch.zeros_like(params[name]) for name in names}
    adam_v = {name: torch.zeros_like(params[name]) for name in names}
    state = None
    losses, grad_norms = [], []
    for step in range(1, steps + 1):
        logits = forward(params, cfg, inputs, Dropout(dropout_p, seed, step, cfg.n_layer))
        loss = cross_entropy_loss(logits, targets)
        grads = dict(zip(names, torch.autograd.grad(loss, [params[name] for name in names])))
        grad_norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads.values()))
        if step == 1:
            state = ReferenceState(
                logits=logits.detach().float().cpu().numpy(), loss=float(loss),
                grads={name: g.float().cpu().numpy() for name, g in grads.items()}, losses=losses,
                grad_norms=grad_norms)
        losses.append(float(loss))
        grad_norms.append(grad_norm)
        log(f"step {step:3d}/{steps}  loss {float(loss):.6f}  grad norm {grad_norm:.6f}")
        factor = clip_factor(grad_norm, opt.grad_clip)
        for name in names:
            adamw_update(params[name], grads[name] * factor, adam_m[name], adam_v[name], step, opt,
                         name in DECAYED_PARAMETERS)
    return state


def config_vector(cfg, B, T, dropout_p, seed, steps):
    """The bundle's "config": (B, T, L, C, NH, Vp, flags, rotary_dim, dropout p * 1e6, seed, steps)."""
    return np.array([B, T, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.padded_vocab_size, cfg.flags, cfg.rotary_dim,
                     round(dropout_p * 1e6), seed, steps], dtype=np.int32)


def write_reference_bundle(path, cfg, tokens, state, dropout_p, seed, opt):
    tensors = [
        ("config", config_vector(cfg, tokens.shape[0], tokens.shape[1] - 1, dropout_p, seed, len(state.losses))),
        ("optimizer", opt.as_vector()),
        ("tokens", tokens.astype(np.int32)),
        ("logits", state.logits),
        ("loss", np.array([state.loss])),
    ]
    tensors += [(f"grad.{name}", state.grads[name]) for name, _ in parameter_shapes(cfg)]
    tensors += [("losses", np.array(state.losses)), ("grad_norm", np.array(state.grad_norms))]
    write_bundle(path, tensors)


# ---------------------------------------------------------------------------------------------
# Checks of a written reference state (--check)


def check_reference_state(directory):
    """Raises AssertionError/InputError unless DIR/model.bin and DIR/ref.bin agree with each other
    and every value is finite and plausible. Returns a one-line summary."""
    cfg, params = read_checkpoint(os.path.join(directory, "model.bin"))
    bundle = read_bundle(os.path.join(directory, "ref.bin"))
    B, T, L, C, NH, Vp, flags, rotary_dim, _, _, steps = (int(x) for x in bundle["config"])
    assert (L, C, NH, Vp, flags, rotary_dim) == (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.padded_vocab_size,
                                                 cfg.flags, cfg.rotary_dim), "config disagrees with model.bin"
    expected = {"config": (11,), "optimizer": (6,), "tokens": (B, T + 1), "logits": (B, T, VOCAB_SIZE), "loss": (1,),
                "losses": (steps,), "grad_norm": (steps,)}
    expected.update({f"grad.{name}": shape for name, shape in parameter_shapes(cfg)})
    assert set(bundle) == set(expected), f"tensors {sorted(set(bundle) ^ set(expected))} missing or unexpected"
    for name, shape in expected.items():
        assert bundle[name].shape == shape, f"{name}: shape {bundle[name].shape}, expected {shape}"
        assert np.isfinite(bundle[name]).all(), f"{name} has non-finite values"
    tokens = bundle["tokens"]
    assert tokens.min() >= 0 and tokens.max() < VOCAB_SIZE, "token ids outside the vocabulary"
    # The loss recomputed from the stored float32 logits: rounding moves each logit by at most
    # 2^-24 * max|logit|, so each token's log-sum-exp minus target logit by at most twice that;
    # the tolerance doubles this bound again for the float64 arithmetic.
    logits = bundle["logits"].astype(np.float64)
    peak = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - peak).sum(axis=-1)) + peak[..., 0]
    target_logit = np.take_along_axis(logits, tokens[:, 1:, None].astype(np.int64), axis=-1)[..., 0]
    recomputed = float((log_z - target_logit).mean())
    tolerance = 4 * 2.0**-24 * np.abs(logits).max() + 1e-12
    assert abs(recomputed - bundle["loss"][0]) <= tolerance, f"loss {bundle['loss'][0]} but logits give {recomputed}"
    assert bundle["losses"][0] == bundle["loss"][0], "losses[0] is not the first forward's loss"
    assert (bundle["grad_norm"] > 0).all(), "a gradient norm is zero"
    # Rows no token uses get exactly zero gradient: padded wte rows, and wpe beyond position T.
    assert not bundle["grad.wte"][VOCAB_SIZE:].any(), "padded wte rows have a gradient"
    if cfg.learned_pos_emb:
        assert not bundle["grad.wpe"][T:].any(), "wpe rows beyond the sequence have a gradient"
    assert all(np.isfinite(v).all() for v in params.values()), "model.bin has non-finite weights"
    return (f"{directory}: B={B} T={T} L={L} C={C} NH={NH} Vp={Vp} flags=0x{flags:x} rotary_dim={rotary_dim}; "
            f"loss {bundle['loss'][0]:.6f}, losses {bundle['losses'][0]:.4f} -> {bundle['losses'][-1]:.4f}")


# ---------------------------------------------------------------------------------------------
# Self-test: is the reference itself right?


def _gradient_check(cfg, dropout_p, rng, log):
    """Central finite differences in float64 against autograd, on randomized weights (so every
    parameter has a sizeable gradient), for the largest-gradient entry and two random entries of
    every tensor, plus one random direction through all parameters at once."""
    B, T = 2, cfg.max_seq_len
    weights = init_parameters(cfg, seed=7)
    params = {name: torch.tensor(value.astype(np.float64) + rng.normal(0.0, 0.1, value.shape), requires_grad=True)
              for name, value in weights.items()}
    names = list(params)
    tokens = torch.tensor(rng.integers(0, VOCAB_SIZE, size=(B, T + 1)))
    dropout = Dropout(dropout_p, seed=1234, step=3, n_layer=cfg.n_layer)

    def loss_at():
        return cross_entropy_loss(forward(params, cfg, tokens[:, :-1], dropout), tokens[:, 1:])

    grads = dict(zip(names, torch.autograd.grad(loss_at(), [params[n] for n in names])))
    # Step 1e-5: the truncation error (h^2/6)|f'''| stays below ~1e-10 for these weights, and the
    # rounding error of a float64 loss near 11 (a few ulp, ~1e-14) divided by 2h is ~1e-9. The
    # tolerance 1e-8 + 1e-6*|g| is 10x that budget (errors seen: <= 3e-10) yet far below any
    # real bug, which shows up as O(|g|).
    h = 1e-5
    worst = 0.0
    with torch.no_grad():
        def central_difference(perturb):
            perturb(+h)
            plus = float(loss_at())
            perturb(-2 * h)
            minus = float(loss_at())
            perturb(+h)
            return (plus - minus) / (2 * h)

        def check(label, numeric, analytic):
            nonlocal worst
            error = abs(numeric - analytic)
            worst = max(worst, error / (1e-8 + 1e-6 * abs(analytic)))
            if error > 1e-8 + 1e-6 * abs(analytic):
                raise AssertionError(f"gradient check failed at {label}: finite difference {numeric:.10e}, "
                                     f"autograd {analytic:.10e}")

        for name in names:
            flat = params[name].view(-1)
            entries = [int(grads[name].abs().argmax())] + list(rng.integers(0, flat.numel(), size=2))
            for index in entries:
                def perturb(delta, flat=flat, index=index):
                    flat[index] += delta
                check(f"{name}[{index}]", central_difference(perturb), float(grads[name].view(-1)[index]))
        direction = {name: torch.tensor(rng.normal(size=params[name].shape)) for name in names}
        norm = math.sqrt(sum(float(d.square().sum()) for d in direction.values()))

        def perturb_all(delta):
            for name in names:
                params[name].add_(direction[name], alpha=delta / norm)
        check("a random direction", central_difference(perturb_all),
              sum(float((grads[name] * direction[name]).sum()) for name in names) / norm)
    log(f"  gradient check ok: {cfg}, dropout {dropout_p} (worst error {worst:.3f} of its tolerance)")


def _causality_check(cfg, rng, log):
    """Changing the token at position t must not change any logit before t."""
    weights = {name: torch.tensor(value, dtype=torch.float64) for name, value in init_parameters(cfg, 3).items()}
    tokens = torch.tensor(rng.integers(0, VOCAB_SIZE, size=(1, cfg.max_seq_len)))
    dropout = Dropout(0.1, seed=5, step=1, n_layer=cfg.n_layer)
    before = forward(weights, cfg, tokens, dropout)
    t = cfg.max_seq_len // 2
    tokens[0, t] = (tokens[0, t] + 1) % VOCAB_SIZE
    after = forward(weights, cfg, tokens, dropout)
    assert torch.equal(before[:, :t], after[:, :t]), "a logit depends on a later token"
    assert not torch.equal(before[:, t], after[:, t]), "the changed token had no effect"
    log("  causality ok")


def _rotary_check(rng, log):
    """Rotary's defining property: with the same q and k vector at every position, the score
    between positions t and s depends only on t - s, and rotation preserves norms."""
    T, HD = 8, 16
    for interleaved in (False, True):
        cfg = ModelConfig(n_layer=1, n_embd=HD, n_head=1, max_seq_len=T, padded_vocab_size=VOCAB_SIZE,
                          flags=FLAG_ROTARY_INTERLEAVED if interleaved else 0, rotary_dim=8)
        cos, sin = rotary_tables(cfg, T, torch.device("cpu"), torch.float64)
        q = apply_rotary(torch.tensor(rng.normal(size=HD)).expand(1, 1, T, HD), cos, sin, 8, interleaved)
        k = apply_rotary(torch.tensor(rng.normal(size=HD)).expand(1, 1, T, HD), cos, sin, 8, interleaved)
        scores = (q @ k.transpose(-2, -1))[0, 0]
        for shift in range(-T + 1, T):
            diagonal = torch.diagonal(scores, shift)
            assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), rtol=0, atol=1e-12), \
                f"rotary (interleaved={interleaved}) scores depend on absolute position"
        assert torch.allclose(q.norm(dim=-1), q[..., 0, :].norm(), rtol=0, atol=1e-12), "rotary changes norms"
        assert torch.equal(q[..., 8:], q[..., 0:1, 8:].expand(1, 1, T, HD - 8)), "rotary touches dims past rotary_dim"
    log("  rotary relative-position property ok (both pairings)")


def self_test(log=print):
    philox.check_known_answer()
    keep = philox.keep_mask(0.1, 1111, 7, (1 << 20,))
    sigma = math.sqrt(0.1 * 0.9 / keep.size)
    assert abs(keep.mean() - 0.9) < 5 * sigma, f"dropout keeps {keep.mean():.5f}, expected 0.9 +- {5 * sigma:.5f}"
    rate = philox.attention_threshold(0.1) / 65536
    keep = philox.attention_keep_mask(0.1, 1111, 7, (2, 4, 100, 100))
    sigma = math.sqrt(rate * (1 - rate) / keep.size)
    assert abs(keep.mean() - (1 - rate)) < 5 * sigma, \
        f"attention dropout keeps {keep.mean():.5f}, expected {1 - rate:.5f} +- {5 * sigma:.5f}"
    offsets = {philox.dropout_offset(step, micro, 2, 3, rank, 4, site)
               for step in (1, 2) for micro in (0, 1) for rank in (0, 1, 2) for site in range(13)}
    assert len(offsets) == 2 * 2 * 3 * 13, "two dropout sites share an offset"
    log("  philox known answer, keep rates and distinct offsets ok")

    rng = np.random.default_rng(2026)
    micro = dict(n_layer=2, n_embd=16, n_head=2, max_seq_len=8, padded_vocab_size=50264, rotary_base=10000)
    with tempfile.TemporaryDirectory() as directory:
        cfg = ModelConfig(**micro, flags=FLAG_ROTARY_INTERLEAVED | FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, rotary_dim=4)
        weights = init_parameters(cfg, 1)
        write_checkpoint(os.path.join(directory, "model.bin"), cfg, weights, step=5)
        cfg_read, weights_read = read_checkpoint(os.path.join(directory, "model.bin"))
        assert cfg_read == cfg and all(np.array_equal(weights[n], weights_read[n]) for n in weights)
        tensors = [("a", np.arange(6, dtype=np.float32).reshape(2, 3)), ("scalar", np.array(2.5)),
                   ("é", np.zeros((0, 4), dtype=np.int32))]
        write_bundle(os.path.join(directory, "b.bin"), tensors)
        read = read_bundle(os.path.join(directory, "b.bin"))
        assert list(read) == [n for n, _ in tensors]
        assert all(read[n].dtype == a.dtype and np.array_equal(read[n], a) for n, a in tensors)
    log("  checkpoint and bundle round trips ok")

    _rotary_check(rng, log)
    _causality_check(ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB, rotary_dim=4), rng, log)
    modes = [
        (ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB, rotary_dim=0), 0.0),
        (ModelConfig(**micro, flags=FLAG_LEARNED_POS_EMB | FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, rotary_dim=0), 0.1),
        (ModelConfig(**micro, flags=FLAG_POST_NORM, rotary_dim=4), 0.1),
        (ModelConfig(**micro, flags=FLAG_ROTARY_INTERLEAVED, rotary_dim=8), 0.2),
    ]
    for cfg, dropout_p in modes:
        _gradient_check(cfg, dropout_p, rng, log)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", metavar="DIR", help="write DIR/model.bin and DIR/ref.bin")
    what.add_argument("--check", metavar="DIR", help="check a reference state written by --out")
    what.add_argument("--self-test", action="store_true", help="check the reference itself (float64, CPU)")

    model = parser.add_argument_group("model (taken from the checkpoint with --init-from)")
    model.add_argument("--init-from", metavar="MODEL_BIN", help="start from this checkpoint instead of a fresh init")
    model.add_argument("--n-layer", type=int, help="default 2")
    model.add_argument("--n-embd", type=int, help="default 64")
    model.add_argument("--n-head", type=int, help="default 4")
    model.add_argument("--max-seq-len", type=int, help="rows of the position embedding; default --seq-len")
    model.add_argument("--padded-vocab", type=int, help="rows of wte (>= 50257); default 50264")
    model.add_argument("--post-norm", action="store_true", help="post-norm blocks, no final LayerNorm")
    model.add_argument("--rotary-fraction", type=float,
                       help="rotary embedding on this fraction of each head's dims (learned positions off)")
    model.add_argument("--rotary-interleaved", action="store_true", help="rotate pairs (2i, 2i+1), not halves")
    model.add_argument("--rotary-base", type=int, help="default 10000")
    model.add_argument("--scale-attn-by-inverse-layer-idx", action="store_true",
                       help="attention scale 1/sqrt(HD) * 1/(layer_index + 1)")
    model.add_argument("--fp32-residual", action="store_true",
                       help="record the trainer's fp32 residual stream flag (the math here is unchanged)")

    run = parser.add_argument_group("run")
    run.add_argument("--batch", type=int, default=2, help="B (default 2)")
    run.add_argument("--seq-len", type=int, help="T (default 32, or the checkpoint's max_seq_len)")
    run.add_argument("--dropout", type=float, default=0.0, help="p at all three sites (default 0)")
    run.add_argument("--seed", type=int, default=1111, help="init, random tokens and dropout masks (default 1111)")
    run.add_argument("--tokens-from", metavar="SHARD", help="take B windows of T+1 tokens from the start of a shard")
    run.add_argument("--steps", type=int, default=10, help="AdamW steps on the same batch (default 10)")
    run.add_argument("--lr", type=float, default=OptimizerConfig.lr, help="constant (default 1e-4)")
    run.add_argument("--beta1", type=float, default=OptimizerConfig.beta1)
    run.add_argument("--beta2", type=float, default=OptimizerConfig.beta2)
    run.add_argument("--adam-eps", type=float, default=OptimizerConfig.eps)
    run.add_argument("--weight-decay", type=float, default=OptimizerConfig.weight_decay,
                     help="on qkv_w, attn_proj_w, fc_w, fc_proj_w only (default 0.1)")
    run.add_argument("--grad-clip", type=float, default=OptimizerConfig.grad_clip, help="global norm (default 1.0)")
    run.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto = cuda when available")
    return parser.parse_args(argv)


def model_config_from_args(args):
    """The model: from --init-from (model flags must agree with it), else from the flags."""
    if args.init_from:
        cfg, params = read_checkpoint(args.init_from)
        given = {"--n-layer": (args.n_layer, cfg.n_layer), "--n-embd": (args.n_embd, cfg.n_embd),
                 "--n-head": (args.n_head, cfg.n_head), "--max-seq-len": (args.max_seq_len, cfg.max_seq_len),
                 "--padded-vocab": (args.padded_vocab, cfg.padded_vocab_size),
                 "--rotary-base": (args.rotary_base, cfg.rotary_base)}
        switches = {"--post-norm": (args.post_norm, cfg.post_norm),
                    "--rotary-interleaved": (args.rotary_interleaved, cfg.rotary_interleaved),
                    "--scale-attn-by-inverse-layer-idx": (args.scale_attn_by_inverse_layer_idx,
                                                          cfg.scale_attn_by_inverse_layer_idx),
                    "--fp32-residual": (args.fp32_residual, bool(cfg.flags & FLAG_FP32_RESIDUAL))}
        conflicts = [flag for flag, (value, actual) in given.items() if value is not None and value != actual]
        conflicts += [flag for flag, (value, actual) in switches.items() if value and not actual]
        if args.rotary_fraction is not None and args.rotary_fraction * cfg.head_dim != cfg.rotary_dim:
            conflicts.append("--rotary-fraction")
        if conflicts:
            raise InputError(f"{' '.join(conflicts)} disagree with the model in --init-from {args.init_from}; "
                             "the model comes from the checkpoint, so drop these flags")
        return cfg, params
    n_embd = 64 if args.n_embd is None else args.n_embd
    n_head = 4 if args.n_head is None else args.n_head
    if n_head <= 0 or n_embd <= 0 or n_embd % n_head:
        raise InputError(f"--n-embd {n_embd} must be a positive multiple of --n-head {n_head}")
    head_dim = n_embd // n_head
    rotary_dim = 0
    if args.rotary_fraction is not None:
        exact = args.rotary_fraction * head_dim
        rotary_dim = round(exact)
        if not 0.0 < args.rotary_fraction <= 1.0 or abs(exact - rotary_dim) > 1e-9 or rotary_dim % 2:
            raise InputError(f"--rotary-fraction {args.rotary_fraction} times head_dim {head_dim} must be an even "
                             "whole number of dims within (0, head_dim], e.g. 0.5 or 1.0")
    elif args.rotary_interleaved:
        raise InputError("--rotary-interleaved needs --rotary-fraction")
    flags = ((0 if rotary_dim else FLAG_LEARNED_POS_EMB) | (FLAG_POST_NORM if args.post_norm else 0) |
             (FLAG_ROTARY_INTERLEAVED if args.rotary_interleaved else 0) |
             (FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX if args.scale_attn_by_inverse_layer_idx else 0) |
             (FLAG_FP32_RESIDUAL if args.fp32_residual else 0))
    seq_len = 32 if args.seq_len is None else args.seq_len
    cfg = ModelConfig(n_layer=2 if args.n_layer is None else args.n_layer, n_embd=n_embd, n_head=n_head,
                      max_seq_len=seq_len if args.max_seq_len is None else args.max_seq_len,
                      padded_vocab_size=50264 if args.padded_vocab is None else args.padded_vocab,
                      flags=flags, rotary_dim=rotary_dim,
                      rotary_base=10000 if args.rotary_base is None else args.rotary_base)
    cfg.validate("model flags")
    return cfg, init_parameters(cfg, args.seed)


def validate_run_flags(args):
    problems = {
        "--batch": (args.batch > 0, "must be positive"),
        "--dropout": (0.0 <= args.dropout < 1.0, "must be in [0, 1)"),
        "--seed": (0 <= args.seed < 2**31, "must be in [0, 2^31) (the bundle stores it as int32)"),
        "--steps": (args.steps > 0, "must be positive"),
        "--lr": (args.lr >= 0.0, "must not be negative"),
        "--beta1": (0.0 <= args.beta1 < 1.0, "must be in [0, 1)"),
        "--beta2": (0.0 <= args.beta2 < 1.0, "must be in [0, 1)"),
        "--adam-eps": (args.adam_eps > 0.0, "must be positive"),
        "--weight-decay": (args.weight_decay >= 0.0, "must not be negative"),
        "--grad-clip": (args.grad_clip > 0.0, "must be positive"),
    }
    for flag, (ok, requirement) in problems.items():
        if not ok:
            raise InputError(f"{flag} {getattr(args, flag[2:].replace('-', '_'))} {requirement}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this PyTorch sees no CUDA device; use --device cpu")


def write_reference(args):
    validate_run_flags(args)
    cfg, params = model_config_from_args(args)
    B = args.batch
    T = cfg.max_seq_len if args.seq_len is None else args.seq_len
    if not 0 < T <= cfg.max_seq_len:
        raise InputError(f"--seq-len {T} must be within [1, max_seq_len {cfg.max_seq_len}]")
    opt = OptimizerConfig(lr=args.lr, beta1=args.beta1, beta2=args.beta2, eps=args.adam_eps,
                          weight_decay=args.weight_decay, grad_clip=args.grad_clip)
    if args.tokens_from:
        tokens = read_shard_tokens(args.tokens_from, B * (T + 1)).reshape(B, T + 1)
    else:
        tokens = np.random.default_rng(np.random.SeedSequence([args.seed, 1])).integers(0, VOCAB_SIZE, size=(B, T + 1))
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    os.makedirs(args.out, exist_ok=True)
    model_path, bundle_path = os.path.join(args.out, "model.bin"), os.path.join(args.out, "ref.bin")
    # The reference steps are numbered 1..steps (and so are its dropout offsets): the trainer
    # starts from this file as from a fresh model.
    write_checkpoint(model_path, cfg, params, step=0)
    print(f"reference: B={B} T={T} L={cfg.n_layer} C={cfg.n_embd} NH={cfg.n_head} Vp={cfg.padded_vocab_size} "
          f"flags=0x{cfg.flags:x} rotary_dim={cfg.rotary_dim} dropout={args.dropout} seed={args.seed} "
          f"steps={args.steps} on {device} in {args.dtype}")
    started = time.time()
    state = run_reference(cfg, params, tokens, args.steps, args.dropout, args.seed, opt, device, dtype)
    write_reference_bundle(bundle_path, cfg, tokens, state, args.dropout, args.seed, opt)
    print(f"wrote {model_path} and {bundle_path} in {time.time() - started:.1f} s")


def main(argv):
    args = parse_args(argv)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("highest")  # no TF32 in --dtype float32 runs on GPU
    try:
        if args.self_test:
            self_test()
            print("self-test: PASS")
        elif args.check:
            print(check_reference_state(args.check))
            print("check: PASS")
        else:
            write_reference(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AssertionError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
