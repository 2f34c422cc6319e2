"""The reference GPT in PyTorch autograd: its configuration and parameter table (checkpoint
order), the model as the list of operations train_gpt2cu performs (with the trainer's dropout
masks, philox.py), and AdamW as torch.optim.AdamW computes it."""

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

import philox

VOCAB_SIZE = 50257
LAYERNORM_EPS = 1e-5

FLAG_LEARNED_POS_EMB = 1 << 0
FLAG_POST_NORM = 1 << 1
FLAG_ROTARY_INTERLEAVED = 1 << 2
FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX = 1 << 3
FLAG_FP32_RESIDUAL = 1 << 4  # storage precision of the trainer's residual stream; same math here
KNOWN_FLAGS = (1 << 5) - 1

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
