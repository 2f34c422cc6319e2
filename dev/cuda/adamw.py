"""PyTorch baseline for dev/cuda/adamw.cu: one AdamW step over n fp32 parameters (one flat
tensor, as our single arena) followed by the bf16 compute copy, and the gradient norm; eager and
torch.compile, on the same GPU. Prints "<name> <milliseconds>" lines, name =
adamw.<n>.<step_fused|step_foreach|step|norm>.<eager|compiled>.
"""
import argparse

import torch
from torch_timing import median_ms  # noqa: E402 (dev/cuda is sys.path[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", required=True, help="comma-separated parameter counts")
    args = parser.parse_args()
    hyper = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for n in (int(x) for x in args.n.split(",")):
        master = torch.nn.Parameter(torch.rand(n, device="cuda") * 2 - 1)
        master.grad = torch.rand(n, device="cuda") * 2 - 1
        params = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        for variant, options in (("step_fused", dict(fused=True)), ("step_foreach", dict(foreach=True))):
            optimizer = torch.optim.AdamW([master], **hyper, **options)

            def step():
                optimizer.step()
                params.copy_(master.detach())
            print(f"adamw.{n}.{variant}.eager {median_ms(step):.6f}", flush=True)
            del optimizer
        optimizer = torch.optim.AdamW([master], **hyper, foreach=False)

        @torch.compile
        def compiled_step():
            optimizer.step()
            params.copy_(master.detach())
        print(f"adamw.{n}.step.compiled {median_ms(compiled_step):.6f}", flush=True)

        def norm(g):
            return torch.linalg.vector_norm(g)
        compiled_norm = torch.compile(norm, dynamic=False)
        print(f"adamw.{n}.norm.eager {median_ms(lambda: norm(master.grad)):.6f}", flush=True)
        print(f"adamw.{n}.norm.compiled {median_ms(lambda: compiled_norm(master.grad)):.6f}", flush=True)
        del master, params, optimizer
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
