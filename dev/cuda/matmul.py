"""PyTorch baseline for dev/cuda/matmul.cu: the same layer GEMMs through PyTorch, eager and
torch.compile, on the same GPU. Prints one line per measurement: "<name> <milliseconds>", where
name = <model>.<layer>.<pass>.<dtype>.<eager|compiled> and pass is fwd, bwd_input or bwd_weight.

What each pass computes (the work of our matmul_forward / matmul_backward for that layer):
  fwd         pre = F.linear(x, w, b); out = gelu_tanh(pre) for fc (both are kept, as ours)
  bwd_input   dx = dout @ w, times gelu'(pre_in) for fc_proj, and dx.sum(0) there (fc's bias gradient)
  bwd_weight  dw = dout^T @ x, db = dout.sum(0) for qkv (the other biases' gradients come from the
              LayerNorm backward; PyTorch writes bf16 gradients; ours accumulate into fp32, which
              moves more bytes)
"""
import argparse

import torch
import torch.nn.functional as F
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def forward(x, w, b, gelu: bool):
    pre = F.linear(x, w, b)
    return (pre, F.gelu(pre, approximate="tanh")) if gelu else pre


def backward_input(dout, w, pre_in):
    dx = dout @ w
    if pre_in is None:
        return dx
    dx = torch.ops.aten.gelu_backward(dx, pre_in, approximate="tanh")
    return dx, dx.sum(0)


def backward_weight(dout, x, with_bias: bool):
    dw = dout.t() @ x
    return (dw, dout.sum(0)) if with_bias else dw


def layers(C, vp):
    # name, N, K, bias, gelu_out, gelu_in, dbias (as model_layers in matmul.cu)
    return [("qkv", 3 * C, C, True, False, False, True), ("attn_proj", C, C, True, False, False, False),
            ("fc", 4 * C, C, True, True, False, False), ("fc_proj", C, 4 * C, True, False, True, False),
            ("lm_head", vp, C, False, False, False, False)]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True, help="comma-separated name:M:C, e.g. gpt2s:32768:768")
    parser.add_argument("--vp", type=int, default=50304, help="padded vocabulary (LM head width)")
    parser.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    # One compiled graph per (function, shape): allow them all instead of falling back to eager.
    for limit in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, 64)
    compiled = {fn: torch.compile(fn, dynamic=False) for fn in (forward, backward_input, backward_weight)}

    torch.manual_seed(0)
    for spec in args.models.split(","):
        model, M, C = spec.split(":")
        M, C = int(M), int(C)
        for layer, N, K, bias, gelu_out, gelu_in, dbias in layers(C, args.vp):
            device = "cuda"
            x = torch.randn(M, K, device=device, dtype=dtype)
            w = torch.randn(N, K, device=device, dtype=dtype) / K**0.5
            b = torch.randn(N, device=device, dtype=dtype) if bias else None
            dout = torch.randn(M, N, device=device, dtype=dtype)
            pre_in = torch.randn(M, K, device=device, dtype=dtype) if gelu_in else None
            cases = [("fwd", forward, (x, w, b, gelu_out)), ("bwd_input", backward_input, (dout, w, pre_in)),
                     ("bwd_weight", backward_weight, (dout, x, dbias))]
            with torch.no_grad():
                for name, fn, fn_args in cases:
                    prefix = f"{model}.{layer}.{name}.{args.dtype}"
                    print(f"{prefix}.eager {median_ms(lambda: fn(*fn_args)):.6f}", flush=True)
                    print(f"{prefix}.compiled {median_ms(lambda: compiled[fn](*fn_args)):.6f}", flush=True)
            del x, w, b, dout, pre_in
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
