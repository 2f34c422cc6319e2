#!/usr/bin/env python3
"""PyTorch reference of train_gpt2cu's GPT: the state that test_gpt2cu compares against.

    gpt2_reference.py --out DIR [model, mode, data and optimizer flags]
        writes DIR/model.bin (the weights the trainer starts from, checkpoint format) and
        DIR/ref.bin (tensor bundle: tokens, logits, loss, every gradient of the first step, and
        the loss and pre-clip gradient norm of each of --steps AdamW steps on the same batch)
    gpt2_reference.py --check DIR     structural and sanity checks of a written reference state
    gpt2_reference.py --self-test     Philox known answer, file round trips, causality, and
                                      finite-difference gradient checks of this model in float64

The model is computed with autograd in float64 (or --dtype float32), on CUDA when available.
It is written as the list of operations the trainer performs, in the trainer's order, and uses
the trainer's dropout masks bit for bit (philox.py), so dropout runs compare exactly.
Runs with PyTorch 1.13 and 2.x.
"""

import os

# cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import dataclasses
import math
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_checks import check_reference_state, self_test  # noqa: E402
from reference_files import read_checkpoint, read_shard_tokens, write_bundle, write_checkpoint  # noqa: E402
from reference_model import (DECAYED_PARAMETERS, FLAG_FP32_RESIDUAL, FLAG_LEARNED_POS_EMB,  # noqa: E402
                             FLAG_POST_NORM, FLAG_ROTARY_INTERLEAVED, FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX,
                             VOCAB_SIZE, Dropout, InputError, ModelConfig, OptimizerConfig, adamw_update,
                             clip_factor, cross_entropy_loss, forward, init_parameters, parameter_shapes)



# ---------------------------------------------------------------------------------------------
# The reference run


@dataclasses.dataclass
class ReferenceState:
    logits: np.ndarray  # (B, T, V) float32, first forward
    loss: float  # first forward
    grads: dict  # name -> float32 array, first backward
    losses: list  # per step, before its update
    grad_norms: list  # per step, before clipping


def run_reference(cfg, params_fp32, tokens, steps, dropout_p, seed, opt, device, dtype, log=print):
    params = {name: torch.tensor(value, dtype=dtype, device=device, requires_grad=True)
              for name, value in params_fp32.items()}
    names = [name for name, _ in parameter_shapes(cfg)]
    tokens_t = torch.tensor(tokens, dtype=torch.int64, device=device)
    inputs, targets = tokens_t[:, :-1], tokens_t[:, 1:]
    adam_m = {name: torch.zeros_like(params[name]) for name in names}
    adam_v = {name: torch.zeros_like(params[name]) for name in names}
    state = None
    losses, grad_norms = [], []
    for step in range(1, steps + 1):
        logits = forward(params, cfg, inputs, Dropout(dropout_p, seed, step, cfg.n_layer))
        loss = cross_entropy_loss(logits, targets)
        grads = dict(zip(names, torch.autograd.grad(loss, [params[name] for name in names])))
        grad_norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads.values()))
        if step == 1:
            state = ReferenceState(
                logits=logits.detach().float().cpu().numpy(), loss=float(loss),
                grads={name: g.float().cpu().numpy() for name, g in grads.items()}, losses=losses,
                grad_norms=grad_norms)
        losses.append(float(loss))
        grad_norms.append(grad_norm)
        log(f"step {step:3d}/{steps}  loss {float(loss):.6f}  grad norm {grad_norm:.6f}")
        factor = clip_factor(grad_norm, opt.grad_clip)
        for name in names:
            adamw_update(params[name], grads[name] * factor, adam_m[name], adam_v[name], step, opt,
                         name in DECAYED_PARAMETERS)
    return state


def config_vector(cfg, B, T, dropout_p, seed, steps):
    """The bundle's "config": (B, T, L, C, NH, Vp, flags, rotary_dim, dropout p * 1e6, seed, steps)."""
    return np.array([B, T, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.padded_vocab_size, cfg.flags, cfg.rotary_dim,
                     round(dropout_p * 1e6), seed, steps], dtype=np.int32)


def write_reference_bundle(path, cfg, tokens, state, dropout_p, seed, opt):
    tensors = [
        ("config", config_vector(cfg, tokens.shape[0], tokens.shape[1] - 1, dropout_p, seed, len(state.losses))),
        ("optimizer", opt.as_vector()),
        ("tokens", tokens.astype(np.int32)),
        ("logits", state.logits),
        ("loss", np.array([state.loss])),
    ]
    tensors += [(f"grad.{name}", state.grads[name]) for name, _ in parameter_shapes(cfg)]
    tensors += [("losses", np.array(state.losses)), ("grad_norm", np.array(state.grad_norms))]
    write_bundle(path, tensors)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", metavar="DIR", help="write DIR/model.bin and DIR/ref.bin")
    what.add_argument("--check", metavar="DIR", help="check a reference state written by --out")
    what.add_argument("--self-test", action="store_true", help="check the reference itself (float64, CPU)")

    model = parser.add_argument_group("model (taken from the checkpoint with --init-from)")
    model.add_argument("--init-from", metavar="MODEL_BIN", help="start from this checkpoint instead of a fresh init")
    model.add_argument("--n-layer", type=int, help="default 2")
    model.add_argument("--n-embd", type=int, help="default 64")
    model.add_argument("--n-head", type=int, help="default 4")
    model.add_argument("--max-seq-len", type=int, help="rows of the position embedding; default --seq-len")
    model.add_argument("--padded-vocab", type=int, help="rows of wte (>= 50257); default 50264")
    model.add_argument("--post-norm", action="store_true", help="post-norm blocks, no final LayerNorm")
    model.add_argument("--rotary-fraction", type=float,
                       help="rotary embedding on this fraction of each head's dims (learned positions off)")
    model.add_argument("--rotary-interleaved", action="store_true", help="rotate pairs (2i, 2i+1), not halves")
    model.add_argument("--rotary-base", type=int, help="default 10000")
    model.add_argument("--scale-attn-by-inverse-layer-idx", action="store_true",
                       help="attention scale 1/sqrt(HD) * 1/(layer_index + 1)")
    model.add_argument("--fp32-residual", action="store_true",
                       help="record the trainer's fp32 residual stream flag (the math here is unchanged)")

    run = parser.add_argument_group("run")
    run.add_argument("--batch", type=int, default=2, help="B (default 2)")
    run.add_argument("--seq-len", type=int, help="T (default 32, or the checkpoint's max_seq_len)")
    run.add_argument("--dropout", type=float, default=0.0, help="p at all three sites (default 0)")
    run.add_argument("--seed", type=int, default=1111, help="init, random tokens and dropout masks (default 1111)")
    run.add_argument("--tokens-from", metavar="SHARD", help="take B windows of T+1 tokens from the start of a shard")
    run.add_argument("--steps", type=int, default=10, help="AdamW steps on the same batch (default 10)")
    run.add_argument("--lr", type=float, default=OptimizerConfig.lr, help="constant (default 1e-4)")
    run.add_argument("--beta1", type=float, default=OptimizerConfig.beta1)
    run.add_argument("--beta2", type=float, default=OptimizerConfig.beta2)
    run.add_argument("--adam-eps", type=float, default=OptimizerConfig.eps)
    run.add_argument("--weight-decay", type=float, default=OptimizerConfig.weight_decay,
                     help="on qkv_w, attn_proj_w, fc_w, fc_proj_w only (default 0.1)")
    run.add_argument("--grad-clip", type=float, default=OptimizerConfig.grad_clip, help="global norm (default 1.0)")
    run.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto = cuda when available")
    return parser.parse_args(argv)


def model_config_from_args(args):
    """The model: from --init-from (model flags must agree with it), else from the flags."""
    if args.init_from:
        cfg, params = read_checkpoint(args.init_from)
        given = {"--n-layer": (args.n_layer, cfg.n_layer), "--n-embd": (args.n_embd, cfg.n_embd),
                 "--n-head": (args.n_head, cfg.n_head), "--max-seq-len": (args.max_seq_len, cfg.max_seq_len),
                 "--padded-vocab": (args.padded_vocab, cfg.padded_vocab_size),
                 "--rotary-base": (args.rotary_base, cfg.rotary_base)}
        switches = {"--post-norm": (args.post_norm, cfg.post_norm),
                    "--rotary-interleaved": (args.rotary_interleaved, cfg.rotary_interleaved),
                    "--scale-attn-by-inverse-layer-idx": (args.scale_attn_by_inverse_layer_idx,
                                                          cfg.scale_attn_by_inverse_layer_idx),
                    "--fp32-residual": (args.fp32_residual, bool(cfg.flags & FLAG_FP32_RESIDUAL))}
        conflicts = [flag for flag, (value, actual) in given.items() if value is not None and value != actual]
        conflicts += [flag for flag, (value, actual) in switches.items() if value and not actual]
        if args.rotary_fraction is not None and args.rotary_fraction * cfg.head_dim != cfg.rotary_dim:
            conflicts.append("--rotary-fraction")
        if conflicts:
            raise InputError(f"{' '.join(conflicts)} disagree with the model in --init-from {args.init_from}; "
                             "the model comes from the checkpoint, so drop these flags")
        return cfg, params
    n_embd = 64 if args.n_embd is None else args.n_embd
    n_head = 4 if args.n_head is None else args.n_head
    if n_head <= 0 or n_embd <= 0 or n_embd % n_head:
        raise InputError(f"--n-embd {n_embd} must be a positive multiple of --n-head {n_head}")
    head_dim = n_embd // n_head
    rotary_dim = 0
    if args.rotary_fraction is not None:
        exact = args.rotary_fraction * head_dim
        rotary_dim = round(exact)
        if not 0.0 < args.rotary_fraction <= 1.0 or abs(exact - rotary_dim) > 1e-9 or rotary_dim % 2:
            raise InputError(f"--rotary-fraction {args.rotary_fraction} times head_dim {head_dim} must be an even "
                             "whole number of dims within (0, head_dim], e.g. 0.5 or 1.0")
    elif args.rotary_interleaved:
        raise InputError("--rotary-interleaved needs --rotary-fraction")
    flags = ((0 if rotary_dim else FLAG_LEARNED_POS_EMB) | (FLAG_POST_NORM if args.post_norm else 0) |
             (FLAG_ROTARY_INTERLEAVED if args.rotary_interleaved else 0) |
             (FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX if args.scale_attn_by_inverse_layer_idx else 0) |
             (FLAG_FP32_RESIDUAL if args.fp32_residual else 0))
    seq_len = 32 if args.seq_len is None else args.seq_len
    cfg = ModelConfig(n_layer=2 if args.n_layer is None else args.n_layer, n_embd=n_embd, n_head=n_head,
                      max_seq_len=seq_len if args.max_seq_len is None else args.max_seq_len,
                      padded_vocab_size=50264 if args.padded_vocab is None else args.padded_vocab,
                      flags=flags, rotary_dim=rotary_dim,
                      rotary_base=10000 if args.rotary_base is None else args.rotary_base)
    cfg.validate("model flags")
    return cfg, init_parameters(cfg, args.seed)


def validate_run_flags(args):
    problems = {
        "--batch": (args.batch > 0, "must be positive"),
        "--dropout": (0.0 <= args.dropout < 1.0, "must be in [0, 1)"),
        "--seed": (0 <= args.seed < 2**31, "must be in [0, 2^31) (the bundle stores it as int32)"),
        "--steps": (args.steps > 0, "must be positive"),
        "--lr": (args.lr >= 0.0, "must not be negative"),
        "--beta1": (0.0 <= args.beta1 < 1.0, "must be in [0, 1)"),
        "--beta2": (0.0 <= args.beta2 < 1.0, "must be in [0, 1)"),
        "--adam-eps": (args.adam_eps > 0.0, "must be positive"),
        "--weight-decay": (args.weight_decay >= 0.0, "must not be negative"),
        "--grad-clip": (args.grad_clip > 0.0, "must be positive"),
    }
    for flag, (ok, requirement) in problems.items():
        if not ok:
            raise InputError(f"{flag} {getattr(args, flag[2:].replace('-', '_'))} {requirement}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this PyTorch sees no CUDA device; use --device cpu")


def write_reference(args):
    validate_run_flags(args)
    cfg, params = model_config_from_args(args)
    B = args.batch
    T = cfg.max_seq_len if args.seq_len is None else args.seq_len
    if not 0 < T <= cfg.max_seq_len:
        raise InputError(f"--seq-len {T} must be within [1, max_seq_len {cfg.max_seq_len}]")
    opt = OptimizerConfig(lr=args.lr, beta1=args.beta1, beta2=args.beta2, eps=args.adam_eps,
                          weight_decay=args.weight_decay, grad_clip=args.grad_clip)
    if args.tokens_from:
        tokens = read_shard_tokens(args.tokens_from, B * (T + 1)).reshape(B, T + 1)
    else:
        tokens = np.random.default_rng(np.random.SeedSequence([args.seed, 1])).integers(0, VOCAB_SIZE, size=(B, T + 1))
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    os.makedirs(args.out, exist_ok=True)
    model_path, bundle_path = os.path.join(args.out, "model.bin"), os.path.join(args.out, "ref.bin")
    # The reference steps are numbered 1..steps (and so are its dropout offsets): the trainer
    # starts from this file as from a fresh model.
    write_checkpoint(model_path, cfg, params, step=0)
    print(f"reference: B={B} T={T} L={cfg.n_layer} C={cfg.n_embd} NH={cfg.n_head} Vp={cfg.padded_vocab_size} "
          f"flags=0x{cfg.flags:x} rotary_dim={cfg.rotary_dim} dropout={args.dropout} seed={args.seed} "
          f"steps={args.steps} on {device} in {args.dtype}")
    started = time.time()
    state = run_reference(cfg, params, tokens, args.steps, args.dropout, args.seed, opt, device, dtype)
    write_reference_bundle(bundle_path, cfg, tokens, state, args.dropout, args.seed, opt)
    print(f"wrote {model_path} and {bundle_path} in {time.time() - started:.1f} s")


def main(argv):
    args = parse_args(argv)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("highest")  # no TF32 in --dtype float32 runs on GPU
    try:
        if args.self_test:
            self_test()
            print("self-test: PASS")
        elif args.check:
            print(check_reference_state(args.check))
            print("check: PASS")
        else:
            write_reference(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AssertionError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
