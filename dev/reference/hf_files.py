"""Hugging Face model directories without transformers: a safetensors reader and writer written
from the format's description (json + numpy only, independent of host/safetensors.cpp), and the
forward pass of GPT2LMHeadModel and GPTNeoXForCausalLM as transformers' modeling files define it,
in float64, so that ./data_prep/hf export/import can be checked on a machine without
transformers (tests/hf_interop.sh) and the same checks run against transformers itself where it
is installed (scripts/test_hf_interop.py)."""

import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                      "I8": "i1", "U8": "u1", "BOOL": "?"}
MAX_HEADER_BYTES = 100_000_000


class FormatError(Exception):
    pass


def read_safetensors(path, require_aligned=False):
    """(metadata dict, {name: numpy array}) with every rule of the format checked; BF16 is
    widened to float32. require_aligned: the data buffer must start at a multiple of 8 bytes."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise FormatError(f"{path}: shorter than the 8-byte header length")
    (header_bytes,) = struct.unpack("<Q", blob[:8])
    if header_bytes > MAX_HEADER_BYTES or 8 + header_bytes > len(blob):
        raise FormatError(f"{path}: header length {header_bytes} out of bounds")
    text = blob[8:8 + header_bytes].decode("utf-8")
    if not text.startswith("{") or text.rstrip(" ") != text.rstrip():
        raise FormatError(f"{path}: header must start with '{{' and be padded with spaces only")

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise FormatError(f"{path}: duplicate keys in the header")
        return dict(pairs)
    header = json.loads(text, object_pairs_hook=no_duplicates)
    if require_aligned and (8 + header_bytes) % 8:
        raise FormatError(f"{path}: the data buffer starts at byte {8 + header_bytes}, not a multiple of 8")
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError(f"{path}: __metadata__ must map strings to strings")
    data = blob[8 + header_bytes:]
    spans, tensors = [], {}
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{path}: {name} has fields {sorted(info)}")
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        itemsize = 2 if dtype == "BF16" else np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if end - begin != itemsize * math.prod(shape):
            raise FormatError(f"{path}: {name} spans {end - begin} bytes for {dtype} {shape}")
        spans.append((begin, end, name))
        raw = data[begin:end]
        if dtype == "BF16":
            values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(raw, dtype=SAFETENSORS_DTYPES[dtype])
        tensors[name] = values.reshape(shape)
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise FormatError(f"{path}: {name} starts at {begin}, the previous tensor ends at {position}")
        position = end
    if position != len(data):
        raise FormatError(f"{path}: tensors cover {position} of {len(data)} data bytes")
    return metadata, tensors


def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """tensors: {name: array}, written as F32, F16 or BF16 (rounded to nearest even)."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if dtype == "F32":
            raw = array.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = array.astype("<f2").tobytes()
        elif dtype == "BF16":
            bits = array.view(np.uint32).astype(np.uint64)
            raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ---------------------------------------------------------------------------------------------
# transformers' forward passes (eager attention), float64


def _linear(x, weight, bias=None):
    return x @ weight.t() + (0 if bias is None else bias)


def _gelu_tanh(x):  # transformers' "gelu_new"
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _causal_softmax(scores):
    T = scores.shape[-1]
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def gpt2_forward(config, tensors, tokens):
    """GPT2LMHeadModel (modeling_gpt2.py): Conv1D computes x @ W + b with W (in, out); lm_head
    is wte. tokens (B, T) int64 -> logits (B, T, vocab_size)."""
    t = {k.removeprefix("transformer."): torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in tensors.items()}
    C, H, eps = config["n_embd"], config["n_head"], config.get("layer_norm_epsilon", 1e-5)
    B, T = tokens.shape
    x = t["wte.weight"][tokens] + t["wpe.weight"][:T]
    for layer in range(config["n_layer"]):
        p = f"h.{layer}."
        h = F.layer_norm(x, (C,), t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        q, k, v = (h @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (z.view(B, T, H, C // H).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
        if config.get("scale_attn_by_inverse_layer_idx", False):
            scores = scores / float(layer + 1)
        y = (_causal_softmax(scores) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
        h = _gelu_tanh(h @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"])
        x = x + h @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), t["ln_f.weight"], t["ln_f.bias"], eps)
    return x @ t["wte.weight"].t()


def neox_forward(config, tensors, tokens):
    """GPTNeoXForCausalLM (modeling_gpt_neox.py) with use_parallel_residual false: the fused
    query_key_value viewed as (heads, 3 * head_size), rotate_half on the first
    int(head_size * rotary_pct) dims, embed_out = embed_in when tie_word_embeddings."""
    t = {k.removeprefix("gpt_neox."): torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in tensors.items()}
    C, H = config["hidden_size"], config["num_attention_heads"]
    hd, eps = C // H, config.get("layer_norm_eps", 1e-5)
    r = int(hd * config["rotary_pct"])
    B, T = tokens.shape
    inv_freq = 1.0 / (config["rotary_emb_base"] ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()

    def rotate(z):
        rot, rest = z[..., :r], z[..., r:]
        half = torch.cat((-rot[..., r // 2:], rot[..., :r // 2]), dim=-1)
        return torch.cat((rot * cos + half * sin, rest), dim=-1)

    x = t["embed_in.weight"][tokens]
    for layer in range(config["num_hidden_layers"]):
        p = f"layers.{layer}."
        h = F.layer_norm(x, (C,), t[p + "input_layernorm.weight"], t[p + "input_layernorm.bias"], eps)
        qkv = _linear(h, t[p + "attention.query_key_value.weight"], t.get(p + "attention.query_key_value.bias"))
        qkv = qkv.view(B, T, H, 3 * hd).transpose(1, 2)
        q, k, v = rotate(qkv[..., :hd]), rotate(qkv[..., hd:2 * hd]), qkv[..., 2 * hd:]
        y = (_causal_softmax(q @ k.transpose(-1, -2) / math.sqrt(hd)) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + _linear(y, t[p + "attention.dense.weight"], t.get(p + "attention.dense.bias"))
        h = F.layer_norm(x, (C,), t[p + "post_attention_layernorm.weight"], t[p + "post_attention_layernorm.bias"], eps)
        h = _gelu_tanh(_linear(h, t[p + "mlp.dense_h_to_4h.weight"], t[p + "mlp.dense_h_to_4h.bias"]))
        x = x + _linear(h, t[p + "mlp.dense_4h_to_h.weight"], t[p + "mlp.dense_4h_to_h.bias"])
    x = F.layer_norm(x, (C,), t["final_layer_norm.weight"], t["final_layer_norm.bias"], eps)
    head = t["embed_out.weight"] if "embed_out.weight" in t else t["embed_in.weight"]
    return x @ head.t()


def hf_forward(directory, tokens):
    """Logits of the model in `directory` (config.json + model.safetensors) on tokens (B, T)."""
    with open(f"{directory}/config.json") as f:
        config = json.load(f)
    _, tensors = read_safetensors(f"{directory}/model.safetensors")
    forward = {"gpt2": gpt2_forward, "gpt_neox": neox_forward}[config["model_type"]]
    return forward(config, tensors, tokens)
