"""PyTorch baselines for dev/cuda/rotary.cu (run by it; prints "<name> <milliseconds>" lines).

The same op as kernels/rotary.cuh: rotary embedding applied in place to q and k of a packed
(B, T, 3, NH, HD) bf16 tensor, rotary_dim = HD/2, base 10000, fp32 cos/sin tables computed
once beforehand (as a model caches them), in eager mode and under torch.compile, for the
rotate-half (GPT-NeoX, "neox") and interleaved (GPT-J, "gptj") layouts.
Timing: CUDA events, 3 warm-up calls, median of 20 (as dev/cuda/workbench.cuh).
"""
import argparse
import sys

import torch
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def rotate_half_layout(qkv, cos, sin, rotary_dim):
    half = rotary_dim // 2
    qk = qkv[:, :, :2, :, :rotary_dim]
    a = qk[..., :half].float()
    b = qk[..., half:].float()
    c = cos[None, :, None, None, :]
    s = sin[None, :, None, None, :]
    rotated = torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    qkv[:, :, :2, :, :rotary_dim] = rotated.to(qkv.dtype)


def interleaved_layout(qkv, cos, sin, rotary_dim):
    pairs = qkv[:, :, :2, :, :rotary_dim].float().unflatten(-1, (rotary_dim // 2, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    c = cos[None, :, None, None, :]
    s = sin[None, :, None, None, :]
    rotated = torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    qkv[:, :, :2, :, :rotary_dim] = rotated.to(qkv.dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--B", type=int, required=True)
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--heads", required=True, help="comma-separated NHxHD, e.g. 12x64,16x128")
    parser.add_argument("--base", type=float, default=10000.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("rotary.py: PyTorch sees no CUDA device")

    for spec in args.heads.split(","):
        nh, hd = (int(v) for v in spec.split("x"))
        rotary_dim = hd // 2
        exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32, device="cuda") / rotary_dim
        inv_freq = 1.0 / (args.base ** exponents)
        angles = torch.outer(torch.arange(args.T, dtype=torch.float32, device="cuda"), inv_freq)
        cos, sin = angles.cos(), angles.sin()
        qkv = torch.randn(args.B, args.T, 3, nh, hd, dtype=torch.bfloat16, device="cuda")
        for layout, fn in (("neox", rotate_half_layout), ("gptj", interleaved_layout)):
            key = f"{layout}_{nh}x{hd}"
            print(f"eager_{key} {median_ms(lambda: fn(qkv, cos, sin, rotary_dim)):.5f}", flush=True)
            torch._dynamo.reset()
            try:
                compiled = torch.compile(fn, dynamic=False, fullgraph=True)
                print(f"compile_{key} {median_ms(lambda: compiled(qkv, cos, sin, rotary_dim)):.5f}", flush=True)
            except Exception as error:  # report and carry on: the C++ side prints '-' for it
                print(f"rotary.py: torch.compile failed for {key}: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
