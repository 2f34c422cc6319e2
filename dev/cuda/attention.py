"""PyTorch baselines for dev/cuda/attention.cu: causal scaled_dot_product_attention through the
FlashAttention-2 ("flash") and cuDNN ("cudnn") backends, timed on the same GPU in the same run.

usage: python3 dev/cuda/attention.py BxHxTxD [BxHxTxD ...]

Prints one line per measurement, "<backend>_<fwd|bwd|fwdbwd>_<B>x<H>x<T>x<D> <milliseconds>", the
format workbench::run_torch_baseline reads. bf16, q/k/v of shape (B, H, T, D), median of CUDA-event
timings after warm-up. A backend that cannot run a shape says why on stderr and prints nothing.
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def time_shape(backend, B, H, T, D):
    def make():
        return torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    q, k, v = make(), make(), make()
    dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(BACKENDS[backend]):
        # Forward as in training: inputs require grad, so the backend also saves its softmax statistics.
        fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))

        def fwd_bwd():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(o, (q, k, v), dout)

        both = median_ms(fwd_bwd)
    return fwd, bwd, both


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if not torch.cuda.is_available():
        sys.exit("attention.py: no CUDA device visible to PyTorch")
    for spec in sys.argv[1:]:
        try:
            B, H, T, D = (int(x) for x in spec.split("x"))
        except ValueError:
            sys.exit(f"attention.py: shape '{spec}' is not BxHxTxD (e.g. 32x12x1024x64)")
        for backend in BACKENDS:
            try:
                fwd, bwd, both = time_shape(backend, B, H, T, D)
            except RuntimeError as error:  # backend unavailable for this GPU/shape/build
                print(f"attention.py: {backend} backend failed on {spec}: {error}", file=sys.stderr)
                continue
            finally:
                torch.cuda.empty_cache()
            print(f"{backend}_fwd_{spec} {fwd:.5f}")
            print(f"{backend}_bwd_{spec} {bwd:.5f}")
            print(f"{backend}_fwdbwd_{spec} {both:.5f}", flush=True)


if __name__ == "__main__":
    main()
