#!/usr/bin/env bash
# ./data_prep/hf against an independent reading of the formats, on the CPU: tiny checkpoints
# written by the PyTorch reference (dev/reference) are exported; the safetensors files are read
# by dev/reference/hf_files.py (json + numpy, not our reader) and the transformers forward pass it
# implements (GPT2LMHeadModel, GPTNeoXForCausalLM) must give the reference model's logits, in
# float64. A hub-style GPT-2 directory written in Python (no "transformer." prefix, the causal
# mask buffer, BF16 weights) is imported and checked the same way. Post-norm is refused.
# transformers itself is not needed (CI has none); scripts/test_hf_interop.py does the same
# against transformers on the GPU machine. Exit 0 = pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# The data_prep tools under test (make test-asan points this at sanitized builds).
export DATA_PREP_BIN=${DATA_PREP_BIN:-./data_prep}

python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$p" -c 'import torch, numpy' >/dev/null 2>&1; then python=$p; break; fi
done
[ -n "$python" ] || { echo "FAIL: no Python with PyTorch and numpy (install python3-torch, or set PYTHON)"; exit 1; }
[ -x "$DATA_PREP_BIN/hf" ] || { echo "FAIL: build the tools first (make data_prep)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name flags rotary_dim: flags are the checkpoint's (1 learned positions, 4 interleaved, 8 scaling).
variants="gpt2:1:0 gpt2_scaled:9:0 rotary_scaled:8:4 interleaved_scaled:12:4"
"$python" - "$work" $variants <<'EOF'
import sys
import numpy as np
sys.path.insert(0, "dev/reference")
from reference_model import ModelConfig, parameter_shapes
from reference_files import write_checkpoint
work, variants = sys.argv[1], sys.argv[2:]
rng = np.random.default_rng(5)
for variant in variants:
    name, flags, rotary_dim = variant.split(":")
    cfg = ModelConfig(n_layer=3, n_embd=32, n_head=4, max_seq_len=16, padded_vocab_size=50304,
                      flags=int(flags), rotary_dim=int(rotary_dim))
    # Every weight random (LayerNorm gains around 1), padded vocabulary rows too: they must not matter.
    params = {n: rng.normal(1.0 if n.startswith("ln") else 0.0, 0.3, shape).astype(np.float32)
              for n, shape in parameter_shapes(cfg)}
    write_checkpoint(f"{work}/{name}.bin", cfg, params)
EOF

vocab_args=(--no-tokenizer)
[ -f data/vocab/encoder.json ] && vocab_args=(--vocab data/vocab)
for variant in $variants; do
    name=${variant%%:*}
    "$DATA_PREP_BIN"/hf export "$work/$name.bin" "$work/$name" "${vocab_args[@]}" >"$work/$name.log"
done
"$DATA_PREP_BIN"/hf export "$work/gpt2_scaled.bin" "$work/gpt2_scaled_flag" --layer-scaling flag --no-tokenizer >/dev/null

"$python" - "$work" <<'EOF'
import json, os, sys
import numpy as np
import torch
sys.path.insert(0, "dev/reference")
import hf_files
from reference_files import read_checkpoint
from reference_model import Dropout, forward

work = sys.argv[1]
tokens = torch.tensor(np.random.default_rng(1).integers(0, 50257, size=(2, 16)))
failures = 0


def reference_logits(checkpoint):
    cfg, params = read_checkpoint(checkpoint)
    params = {n: torch.tensor(v, dtype=torch.float64) for n, v in params.items()}
    return forward(params, cfg, tokens, Dropout(0.0, 0, 0, cfg.n_layer))


def compare(label, ours, theirs, tolerance):
    global failures
    difference = (ours - theirs).abs().max().item()
    scale = ours.abs().max().item()
    verdict = "ok" if difference <= tolerance * max(1.0, scale) else "FAIL"
    failures += verdict == "FAIL"
    print(f"{verdict}: {label}: max |logit difference| {difference:.3e} (largest logit {scale:.2f}, "
          f"tolerance {tolerance:g} relative)")


# Exact layouts give the same float64 sums up to order: 1e-9. Folding rounds each query weight
# once to float32 (relative 2^-24 = 6e-8); through the attention scores that moves the logits by
# about that much relative: 1e-6 leaves a margin and still catches any wrong layout (O(1)).
cases = {"gpt2": 1e-9, "gpt2_scaled": 1e-6, "gpt2_scaled_flag": 1e-9, "rotary_scaled": 1e-6,
         "interleaved_scaled": 1e-6}
for name, tolerance in cases.items():
    directory = f"{work}/{name}"
    checkpoint = f"{work}/{name.removesuffix('_flag')}.bin"
    metadata, tensors = hf_files.read_safetensors(f"{directory}/model.safetensors", require_aligned=True)
    if metadata.get("format") != "pt" or any(t.dtype != np.float32 for t in tensors.values()):
        print(f"FAIL: {name}: metadata {metadata} or a dtype other than F32"); failures += 1
    compare(f"{name} export: transformers' math on the export vs the reference on the checkpoint",
            reference_logits(checkpoint), hf_files.hf_forward(directory, tokens), tolerance)

if os.path.exists("data/vocab/encoder.json"):
    same = open("data/vocab/encoder.json", "rb").read() == open(f"{work}/gpt2/vocab.json", "rb").read()
    merges = open(f"{work}/gpt2/merges.txt").readline()
    ok = same and merges.startswith("#version")
    failures += not ok
    print(f"{'ok' if ok else 'FAIL'}: tokenizer files (vocab.json = encoder.json, merges.txt starts with {merges.strip()!r})")

# A hub-style GPT-2 directory: base-model names, the causal-mask buffer, BF16 weights.
rng = np.random.default_rng(9)
L, C, T, V = 2, 32, 16, 50257
hub = {"wte.weight": rng.normal(0, 0.3, (V, C)), "wpe.weight": rng.normal(0, 0.3, (T, C)),
       "ln_f.weight": rng.normal(1, 0.3, C), "ln_f.bias": rng.normal(0, 0.3, C)}
for l in range(L):
    p = f"h.{l}."
    hub.update({p + "ln_1.weight": rng.normal(1, 0.3, C), p + "ln_1.bias": rng.normal(0, 0.3, C),
                p + "attn.c_attn.weight": rng.normal(0, 0.3, (C, 3 * C)), p + "attn.c_attn.bias": rng.normal(0, 0.3, 3 * C),
                p + "attn.c_proj.weight": rng.normal(0, 0.3, (C, C)), p + "attn.c_proj.bias": rng.normal(0, 0.3, C),
                p + "ln_2.weight": rng.normal(1, 0.3, C), p + "ln_2.bias": rng.normal(0, 0.3, C),
                p + "mlp.c_fc.weight": rng.normal(0, 0.3, (C, 4 * C)), p + "mlp.c_fc.bias": rng.normal(0, 0.3, 4 * C),
                p + "mlp.c_proj.weight": rng.normal(0, 0.3, (4 * C, C)), p + "mlp.c_proj.bias": rng.normal(0, 0.3, C),
                p + "attn.bias": np.tril(np.ones((T, T)))[None, None]})
os.makedirs(f"{work}/hub")
hf_files.write_safetensors(f"{work}/hub/model.safetensors", hub, {"format": "pt"}, dtype="BF16")
config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": L, "n_embd": C, "n_head": 4,
          "n_positions": T, "n_ctx": T, "vocab_size": V, "activation_function": "gelu_new",
          "layer_norm_epsilon": 1e-5, "scale_attn_by_inverse_layer_idx": True}
json.dump(config, open(f"{work}/hub/config.json", "w"))
status = os.system(f"{os.environ['DATA_PREP_BIN']}/hf import {work}/hub {work}/hub.bin > {work}/import.log 2>&1")
if status:
    print("FAIL: import of the hub-style directory:", open(f"{work}/import.log").read()); sys.exit(1)
cfg, params = read_checkpoint(f"{work}/hub.bin")
padded_rows_zero = cfg.padded_vocab_size == 50304 and not params["wte"][V:].any()
failures += not padded_rows_zero
print(f"{'ok' if padded_rows_zero else 'FAIL'}: import pads the vocabulary to {cfg.padded_vocab_size} with zero rows")
compare("import of a BF16 hub-style GPT-2 with 1/(layer+1) scaling: the reference on the import vs transformers' math",
        reference_logits(f"{work}/hub.bin"), hf_files.hf_forward(f"{work}/hub", tokens), 1e-9)
sys.exit(1 if failures else 0)
EOF

"$python" - "$work" <<'EOF'
import sys
sys.path.insert(0, "dev/reference")
import numpy as np
from reference_model import FLAG_POST_NORM, ModelConfig, parameter_shapes
from reference_files import write_checkpoint
cfg = ModelConfig(n_layer=1, n_embd=32, n_head=4, max_seq_len=16, padded_vocab_size=50304, flags=1 | FLAG_POST_NORM,
                  rotary_dim=0)
write_checkpoint(f"{sys.argv[1]}/post_norm.bin", cfg, {n: np.zeros(s, np.float32) for n, s in parameter_shapes(cfg)})
EOF
if "$DATA_PREP_BIN"/hf export "$work/post_norm.bin" "$work/post_norm" --no-tokenizer >"$work/out" 2>"$work/err"; then
    echo "FAIL: a post-norm model was exported"; exit 1
fi
grep -q "no Hugging Face architecture computes that exactly" "$work/err" || { echo "FAIL: post-norm message: $(cat "$work/err")"; exit 1; }
echo "ok: post-norm refused: $(cut -c1-120 "$work/err")..."
echo "PASS: hf_interop"
