"""PyTorch baselines for dev/cuda/layernorm.cu (run by it; prints "<name> <milliseconds>" lines).

The same op as kernels/layernorm.cuh in its pre-norm form: s = residual + dropout(x);
ln = LayerNorm(s) * weight + bias; returns (ln, s). x, weight, bias and ln are bf16; the
residual stream s is bf16 or fp32 (then LayerNorm runs on fp32 s, as the fused kernel does).
Post-norm does the same work (out = LayerNorm(s), s saved), so it has no separate baseline.

For each C and residual type, in eager mode and under torch.compile:
  <impl>_fwd_<residual>_C<C>     forward with autograd recording (what training runs)
  <impl>_fwdbwd_<residual>_C<C>  forward + torch.autograd.grad for x, residual, weight, bias
Timing: CUDA events, 3 warm-up calls, median of 20 (as dev/cuda/workbench.cuh).
"""
import argparse
import sys

import torch
import torch.nn.functional as F
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def prenorm(x, residual, weight, bias, p, eps):
    s = residual + F.dropout(x, p, training=True)
    ln = F.layer_norm(s, (s.shape[-1],), weight.to(s.dtype), bias.to(s.dtype), eps).to(x.dtype)
    return ln, s


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--N", type=int, required=True)
    parser.add_argument("--C", required=True, help="comma-separated hidden sizes")
    parser.add_argument("--p", type=float, required=True, help="dropout probability")
    parser.add_argument("--eps", type=float, required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("layernorm.py: PyTorch sees no CUDA device")

    for C in (int(c) for c in args.C.split(",")):
        for residual_name, residual_dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            def leaf(shape, dtype, scale=1.0, shift=0.0):
                return (torch.randn(shape, device="cuda", dtype=dtype) * scale + shift).requires_grad_()

            x = leaf((args.N, C), torch.bfloat16)
            residual = leaf((args.N, C), residual_dtype)
            weight = leaf((C,), torch.bfloat16, 0.2, 1.0)
            bias = leaf((C,), torch.bfloat16, 0.2)
            d_ln = torch.randn(args.N, C, device="cuda", dtype=torch.bfloat16)
            d_s = torch.randn(args.N, C, device="cuda", dtype=residual_dtype)
            inputs = (x, residual, weight, bias)

            torch._dynamo.reset()
            implementations = [("eager", prenorm)]
            implementations.append(("compile", torch.compile(prenorm, dynamic=False, fullgraph=True)))
            for impl, fn in implementations:
                def forward():
                    return fn(x, residual, weight, bias, args.p, args.eps)

                def forward_backward():
                    torch.autograd.grad(forward(), inputs, (d_ln, d_s))

                key = f"{residual_name}_C{C}"
                try:
                    print(f"{impl}_fwd_{key} {median_ms(forward):.5f}", flush=True)
                    print(f"{impl}_fwdbwd_{key} {median_ms(forward_backward):.5f}", flush=True)
                except Exception as error:  # report and carry on: the C++ side prints '-' for it
                    print(f"layernorm.py: {impl} failed for {key}: {error}", file=sys.stderr)
            del x, residual, weight, bias, d_ln, d_s, inputs


if __name__ == "__main__":
    main()
