"""PyTorch baseline for dev/cuda/encoder.cu: token + position embedding, forward and forward +
backward (gradients of wte and wpe), eager and torch.compile, on the same GPU. Prints
"<name> <milliseconds>" lines, name = encoder.<dtype>.<fwd|fwd_bwd>.<eager|compiled>.
"""
import argparse

import torch
import torch.nn.functional as F
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def embed(tokens, positions, wte, wpe):
    return F.embedding(tokens, wte) + F.embedding(positions, wpe)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--B", type=int, required=True)
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--C", type=int, required=True)
    parser.add_argument("--Vp", type=int, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    # Zipf(1) token frequencies with shuffled ids, as the C++ benchmark.
    weights = 1.0 / torch.arange(1, args.Vp + 1, device="cuda", dtype=torch.float64)
    ranks = torch.multinomial(weights, args.B * args.T, replacement=True)
    tokens = torch.randperm(args.Vp, device="cuda")[ranks].view(args.B, args.T)
    positions = torch.arange(args.T, device="cuda").expand(args.B, args.T)
    compiled = torch.compile(embed, dynamic=False)
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        wte = torch.randn(args.Vp, args.C, device="cuda", dtype=dtype, requires_grad=True)
        wpe = torch.randn(args.T, args.C, device="cuda", dtype=dtype, requires_grad=True)
        dout = torch.randn(args.B, args.T, args.C, device="cuda", dtype=dtype)
        for mode, fn in (("eager", embed), ("compiled", compiled)):
            with torch.no_grad():
                print(f"encoder.{name}.fwd.{mode} {median_ms(lambda: fn(tokens, positions, wte, wpe)):.6f}", flush=True)

            def forward_backward():
                return torch.autograd.grad(fn(tokens, positions, wte, wpe), (wte, wpe), dout)
            print(f"encoder.{name}.fwd_bwd.{mode} {median_ms(forward_backward):.6f}", flush=True)


if __name__ == "__main__":
    main()
