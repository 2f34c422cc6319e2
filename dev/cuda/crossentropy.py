"""PyTorch baseline for dev/cuda/crossentropy.cu: F.cross_entropy over the real classes of padded
logits, forward and backward (the gradient with respect to the whole padded buffer), eager and
torch.compile, on the same GPU. Prints "<name> <milliseconds>" lines, name =
cross_entropy.<dtype>.<eager|compiled>.
"""
import argparse

import torch
import torch.nn.functional as F
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--N", type=int, required=True, help="rows (tokens)")
    parser.add_argument("--V", type=int, default=50257, help="real classes")
    parser.add_argument("--Vp", type=int, default=50304, help="padded row length")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    args = parser.parse_args()

    def loss_fn(logits, targets):
        return F.cross_entropy(logits[:, : args.V], targets, ignore_index=-100,
                               label_smoothing=args.label_smoothing)

    compiled_loss = torch.compile(loss_fn, dynamic=False)
    torch.manual_seed(0)
    targets = torch.randint(0, args.V, (args.N,), device="cuda")
    targets[torch.rand(args.N, device="cuda") < 0.12] = -100
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        logits = (torch.rand(args.N, args.Vp, device="cuda", dtype=dtype) * 8 - 4).requires_grad_()
        for mode, fn in (("eager", loss_fn), ("compiled", compiled_loss)):
            def step():
                return torch.autograd.grad(fn(logits, targets), logits)[0]
            print(f"cross_entropy.{name}.{mode} {median_ms(step):.6f}", flush=True)
        del logits
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
