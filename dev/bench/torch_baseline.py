#!/usr/bin/env python3
"""PyTorch baseline of the end-to-end training benchmark (dev/bench/bench.sh).

Our own GPT training step in PyTorch with the trainer's architecture: learned absolute
positions, pre-norm blocks with a final LayerNorm (eps 1e-5), tanh-GELU MLP of 4*d_model, biases on
every linear layer but the LM head, the LM head tied to the token embedding, the vocabulary padded
to 50304 (the padded columns are sliced off before the loss, so they get no probability mass),
attention scaled by 1/sqrt(d_head)/(layer+1) through F.scaled_dot_product_attention (causal).
Trained the fast standard way: bf16 autocast over fp32 weights, torch.compile of the model,
fused AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.1 on linear weights only), gradient
clipping at 1.0, dropout 0 (the speed comparison's setting; --dropout changes it).

Tokens are synthetic (uniform random ids) but go through the usual path: a pinned host batch
copied to the GPU every step. Each step ends with loss.item(), as a trainer that logs the loss
does. tokens/s = B*T / median step time over --steps steps after --warmup steps (the first steps
include torch.compile's compilation). MFU counts 6*N + 6*L*d_model*T FLOPs per token (N = all
parameters, padded vocabulary included), as host/gpu_specs.h does, against the GPU's dense bf16
peak. peak_mem_gb = torch.cuda.max_memory_allocated() / 1e9 (the caching allocator's peak; the
CUDA context and allocator slack come on top).

  python3 dev/bench/torch_baseline.py --model gpt2s --batch 32
  python3 dev/bench/torch_baseline.py --config gpt2s:32:1024 --config gpt3xl:8:2048

One line per configuration, machine-readable (key=value, gpu quoted):
  BENCH impl=pytorch model=gpt2s batch=32 seq_len=1024 params=124475904 tokens_per_s=... mfu=... \
        peak_mem_gb=... step_ms=... first_step_s=... gpu="NVIDIA H100 80GB HBM3"
or, when a configuration fails (out of memory, ...), the failure and the reason:
  BENCH impl=pytorch model=gpt2xl batch=64 seq_len=1024 FAILED reason="CUDA out of memory ..."
Exit status 1 when any configuration failed.
"""
import argparse
import math
import statistics
import sys
import time

# name: (n_layer, d_model, n_head, default seq_len), from the presets (experiments.md).
MODELS = {
    "gpt2s": (12, 768, 12, 1024),
    "gpt2m": (24, 1024, 16, 1024),
    "gpt2l": (36, 1280, 20, 1024),
    "gpt2xl": (48, 1600, 25, 1024),
    "gpt3s": (12, 768, 12, 2048),
    "gpt3m": (24, 1024, 16, 2048),
    "gpt3l": (24, 1536, 16, 2048),
    "gpt3xl": (24, 2048, 16, 2048),
    "gpt3-2.7B": (32, 2560, 32, 2048),
}
VOCAB = 50257
PADDED_VOCAB = 50304

# Dense 16-bit tensor TFLOP/s: the same datasheet figures as host/gpu_specs.cpp's table, matched
# the same way (whole words of the device name; qualified rows first).
PEAK_TFLOPS = [
    ("H100", "PCIE", 756.0), ("H100", "NVL", 835.0), ("H100", "", 989.0), ("H200", "", 989.0),
    ("GH200", "", 989.0), ("B200", "", 2250.0), ("A100", "", 312.0), ("A10", "", 125.0),
    ("A10G", "", 125.0), ("L4", "", 121.0), ("L40S", "", 362.0), ("4090", "", 165.2),
    ("3090", "", 71.0), ("V100", "", 125.0),
]


def peak_tflops_for(device_name):
    words = "".join(c.upper() if c.isalnum() else " " for c in device_name).split()
    for token, qualifier, tflops in PEAK_TFLOPS:
        if token in words and (not qualifier or qualifier in words):
            return tflops
    return None


def build_model(torch, n_layer, d_model, n_head, seq_len, dropout):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self, layer_index):
            super().__init__()
            self.n_head = n_head
            self.ln_attn = nn.LayerNorm(d_model, eps=1e-5)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.attn_out = nn.Linear(d_model, d_model)
            self.ln_mlp = nn.LayerNorm(d_model, eps=1e-5)
            self.mlp_in = nn.Linear(d_model, 4 * d_model)
            self.mlp_out = nn.Linear(4 * d_model, d_model)
            self.dropout = nn.Dropout(dropout)
            # The seed's scale_attn_by_inverse_layer_idx.
            self.scale = 1.0 / math.sqrt(d_model // n_head) / (layer_index + 1)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln_attn(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                               dropout_p=dropout if self.training else 0.0)
            x = x + self.dropout(self.attn_out(y.transpose(1, 2).reshape(B, T, C)))
            h = F.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh")
            return x + self.dropout(self.mlp_out(h))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(PADDED_VOCAB, d_model)
            self.wpe = nn.Embedding(seq_len, d_model)
            self.dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block(i) for i in range(n_layer))
            self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif "ln_" in name:
                    nn.init.ones_(p)
                else:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("attn_out.weight", "mlp_out.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, tokens, targets):
            T = tokens.shape[1]
            x = self.dropout(self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device)))
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head, no bias
            # The padded columns are left out of the softmax; autocast runs cross_entropy in fp32.
            return F.cross_entropy(logits[..., :VOCAB].flatten(0, 1), targets.flatten())

    return GPT()


def make_optimizer(torch, model, device):
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2 and "wte" not in n
             and "wpe" not in n]
    decay_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if device.type == "cuda" else {}  # the fused kernel is CUDA-only
    return torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.999), eps=1e-8, **fused)


def run_config(torch, args, model_name, batch, seq_len):
    n_layer, d_model, n_head, _ = MODELS[model_name]
    device = torch.device(args.device)
    torch.manual_seed(1111)
    model = build_model(torch, n_layer, d_model, n_head, seq_len, args.dropout).to(device)
    num_params = sum(p.numel() for p in model.parameters())  # the tied matrix once
    optimizer = make_optimizer(torch, model, device)
    step_model = torch.compile(model, mode=args.compile_mode) if args.compile else model
    autocast_dtype = torch.bfloat16

    # A few distinct host batches, pinned, so that every step copies fresh tokens to the GPU.
    pinned = device.type == "cuda"
    batches = [torch.randint(0, VOCAB, (batch, seq_len + 1), dtype=torch.int64) for _ in range(4)]
    if pinned:
        batches = [b.pin_memory() for b in batches]

    def train_step(i):
        window = batches[i % len(batches)].to(device, non_blocking=True)
        inputs, targets = window[:, :-1], window[:, 1:]
        with torch.autocast(device_type=device.type, dtype=autocast_dtype):
            loss = step_model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    loss = float("nan")
    first_step_s = float("nan")  # torch.compile compiles during the first step
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = train_step(i)
        if i == 0:
            first_step_s = time.perf_counter() - start
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    if not math.isfinite(loss):
        raise RuntimeError(f"the loss is {loss}: the model diverged or is broken")

    step_s = statistics.median(times)
    tokens_per_s = batch * seq_len / step_s
    flops_per_token = 6 * num_params + 6 * n_layer * d_model * seq_len
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or peak_tflops_for(device_name)
    mfu = f"{100.0 * tokens_per_s * flops_per_token / (peak * 1e12):.2f}" if peak else "n/a"
    peak_mem_gb = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    return (f"params={num_params} tokens_per_s={tokens_per_s:.0f} mfu={mfu} peak_mem_gb={peak_mem_gb:.2f} "
            f"step_ms={step_s * 1e3:.2f} first_step_s={first_step_s:.1f} loss={loss:.4f} gpu=\"{device_name}\"")


def parse_config(text):
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in MODELS:
        raise argparse.ArgumentTypeError(
            f"--config '{text}': expected MODEL:BATCH[:SEQ_LEN] with MODEL one of {', '.join(MODELS)}")
    try:
        batch = int(parts[1])
        seq_len = int(parts[2]) if len(parts) == 3 else MODELS[parts[0]][3]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--config '{text}': BATCH and SEQ_LEN must be integers") from None
    if batch < 1 or seq_len < 1:
        raise argparse.ArgumentTypeError(f"--config '{text}': BATCH and SEQ_LEN must be positive")
    return parts[0], batch, seq_len


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), help="one configuration: this model ...")
    parser.add_argument("--batch", type=int, help="... at this device batch")
    parser.add_argument("--seq-len", type=int, help="... and sequence length (default: the model's)")
    parser.add_argument("--config", type=parse_config, action="append", default=[],
                        help="MODEL:BATCH[:SEQ_LEN]; repeatable; runs in order in one process")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median; default 20)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first, compilation included (default 10)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout probability (default 0)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager mode instead of torch.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune (default: default)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, for a GPU not in the table")
    parser.add_argument("--device", default="cuda", help="default cuda")
    args = parser.parse_args()

    configs = list(args.config)
    if args.model or args.batch:
        if not (args.model and args.batch):
            parser.error("--model and --batch go together (or use --config MODEL:BATCH[:SEQ_LEN])")
        configs.append((args.model, args.batch, args.seq_len or MODELS[args.model][3]))
    if not configs:
        parser.error("nothing to run: give --model and --batch, or --config MODEL:BATCH[:SEQ_LEN]")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")

    try:
        import torch
    except ImportError:
        print("torch_baseline.py: this Python has no PyTorch; run it with a Python that has "
              "(PYTHON=/path/to/python3 for bench.sh)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch_baseline.py: PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2

    failed = 0
    for model_name, batch, seq_len in configs:
        prefix = f"BENCH impl=pytorch model={model_name} batch={batch} seq_len={seq_len}"
        try:
            print(f"{prefix} {run_config(torch, args, model_name, batch, seq_len)}", flush=True)
        except Exception as error:  # one failed configuration (e.g. out of memory) must not stop the others
            failed += 1
            reason = " ".join(str(error).split())[:300].replace('"', "'")
            print(f'{prefix} FAILED reason="{type(error).__name__}: {reason}"', flush=True)
        finally:
            if "torch._dynamo" in sys.modules:
                torch._dynamo.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
