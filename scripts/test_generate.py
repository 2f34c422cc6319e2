#!/usr/bin/env python3
"""Generation with the KV cache on the GPU (train/generator.cuh), self-checking: PASS or FAIL
per check, exit status 1 on any failure. tests/run_all.sh runs it in `make test-gpu`.

  python3 scripts/test_generate.py [--work DIR] [--trainer ./train_gpt2cu]

Needs ./train_gpt2cu and a Python with numpy and PyTorch (dev/reference writes the checkpoints);
data/vocab (make setup) for check 3 only.

1. KV cache against full recompute. Small random models of every kind the decode path meets,
   in bf16 and fp16: learned positions with the fp32 residual stream and the 1/(layer+1)
   scaling (heads of 64); rotary on half of heads of 96 with the scaling; post-norm (heads of
   80); interleaved rotary on whole heads of 128. Greedy generation (--temperature 0) of two
   prompts, 7 and 270 tokens (the longer one's 270+ keys take the decode attention's split
   over 256-key blocks and its merge), with the logits each token came from
   (--generate-logits-out). The ordinary forward pass (--logits-out, the trainer's own) over
   prompt + generated tokens gives, at each generated position, the logits a full recompute
   sees. Checks: (a) relative L2 of the cached path's logits against those <= the precision's
   tolerance; (b) every greedy token (the GPU's argmax, kernels/row_argmax.cuh) is numpy's argmax
   of its own logits; (c) every greedy token is
   the full recompute's argmax, up to the first step where the recompute's top two logits are
   closer than the precision can order (near_tie: 8u of the larger, u = 2^-8 in bf16, 2^-11 in
   fp16); how many steps that compared is printed.
2. A batch equals each prompt alone: the two prompts in one batch (different lengths, so
   different positions per sequence) against each prompt generated alone: logits within the
   tolerance up to the first step whose tokens differ, and tokens equal up to the first near tie
   (as in 1c). The batch's decode steps replayed as CUDA graphs (the default) equal the same
   steps launched one kernel at a time (--generate-cuda-graph 0) bit for bit.
3. With data/vocab: text prompts (--generate "..."), --generate-out's JSON lines, and the
   trainer's periodic samples (the same generation path) on a resumed run equal those of the
   run it resumed.
4. Errors: a prompt that leaves no room for --max-new-tokens fails with the message that says so.

Tolerances (relative L2, ||ours - recompute|| / ||recompute|| over a sequence's generated steps):
test_gpt2.cu's per-precision ones, bf16 2e-2 and fp16 4e-3, which hold the trainer's logits
against a float64 reference; both paths here are the trainer's own arithmetic in that precision
and differ only in summation order (matmuls of 1 row against many, the decode kernel's softmax
against FlashAttention's), so each is within the tolerance of the exact logits.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "dev", "reference"))
from reference_files import read_bundle, write_bundle, write_checkpoint, write_synthetic_shards  # noqa: E402
from reference_model import (FLAG_FP32_RESIDUAL, FLAG_LEARNED_POS_EMB, FLAG_POST_NORM,  # noqa: E402
                             FLAG_ROTARY_INTERLEAVED, FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX, ModelConfig,
                             parameter_shapes)

TOLERANCE = {"bf16": 2e-2, "fp16": 4e-3}
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
NEW_TOKENS = 24
MAX_SEQ = 320
PROMPT_LENGTHS = (7, 270)
SCALED = FLAG_SCALE_ATTN_BY_INVERSE_LAYER_IDX
# name, (n_layer, n_embd, n_head, flags, rotary_dim)
MODELS = [
    ("learned-fp32residual-hd64", (3, 128, 2, FLAG_LEARNED_POS_EMB | FLAG_FP32_RESIDUAL | SCALED, 0)),
    ("rotary-half-hd96", (2, 192, 2, SCALED, 48)),
    ("postnorm-hd80", (2, 160, 2, FLAG_LEARNED_POS_EMB | FLAG_POST_NORM, 0)),
    ("rotary-interleaved-hd128", (2, 256, 2, FLAG_ROTARY_INTERLEAVED, 128)),
]


class Report:
    def __init__(self):
        self.failures = 0

    def check(self, passed, text):
        self.failures += not passed
        print(f"  {'PASS' if passed else 'FAIL'}  {text}", flush=True)
        return passed


def run(command, expect_failure=False):
    result = subprocess.run(command, capture_output=True, text=True)
    if bool(result.returncode) != expect_failure:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def make_checkpoint(path, shape, seed):
    n_layer, n_embd, n_head, flags, rotary_dim = shape
    cfg = ModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=n_head, max_seq_len=MAX_SEQ, padded_vocab_size=50304,
                      flags=flags, rotary_dim=rotary_dim)
    rng = np.random.default_rng(seed)
    # Weights of 0.1 (LayerNorm gains around 1) make every sublayer matter and spread the logits.
    params = {n: rng.normal(1.0 if n.startswith("ln") and n.endswith("_w") else 0.0, 0.1, s).astype(np.float32)
              for n, s in parameter_shapes(cfg)}
    write_checkpoint(path, cfg, params)


def generate(trainer, checkpoint, precision, prompts, work, name, extra=()):
    """Greedy completions of token-id prompts: (tokens per prompt, logits (prompts, N, V))."""
    prompt_file, logits_file = os.path.join(work, f"{name}.prompts"), os.path.join(work, f"{name}.logits.bin")
    with open(prompt_file, "w") as f:
        f.write("".join(" ".join(map(str, p)) + "\n" for p in prompts))
    output = run([trainer, "-e", checkpoint, "--precision", precision, "--prompt-file", prompt_file,
                  "--prompt-format", "tokens", "--temperature", "0", "--max-new-tokens", str(NEW_TOKENS),
                  "--generate-logits-out", logits_file] + list(extra))
    if "tokens/s" not in output:
        raise RuntimeError(f"no decode speed line in the output:\n{output}")
    bundle = read_bundle(logits_file)
    tokens = [[int(t) for t in row if t >= 0] for row in bundle["tokens"]]
    return tokens, bundle["logits"].astype(np.float64)


def recompute(trainer, checkpoint, precision, prompt, tokens, work):
    """The ordinary forward pass's logits at the positions that chose each generated token."""
    sequence = np.array([list(prompt) + tokens[:-1]], dtype=np.int32)
    tokens_path, logits_path = os.path.join(work, "recompute.tokens.bin"), os.path.join(work, "recompute.logits.bin")
    write_bundle(tokens_path, [("tokens", sequence)])
    run([trainer, "-e", checkpoint, "--precision", precision, "--logits-in", tokens_path, "--logits-out", logits_path])
    logits = read_bundle(logits_path)["logits"][0].astype(np.float64)
    return logits[len(prompt) - 1:len(prompt) - 1 + len(tokens)]


def relative_l2(ours, reference):
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def near_tie(reference_row, precision):
    """Whether the reference's two largest logits are too close for the precision to order: a
    logit computed in bf16 or fp16 is within 4u of its size of the exact value (u, the unit
    roundoff: its final rounding is u/2, and the hidden state it comes from carries the rounding
    of every layer, which test_gpt2cu measures at a few u), so two logits closer than 8u times
    the larger may come out in either order."""
    top_two = np.sort(reference_row)[-2:]
    return top_two[1] - top_two[0] < 8 * UNIT_ROUNDOFF[precision] * abs(top_two[1])


def tokens_before_tie(tokens, reference_logits, precision):
    """(steps compared, first mismatch or None): tokens against the argmax of the reference
    logits, step by step, up to the first near tie."""
    for step, token in enumerate(tokens):
        if near_tie(reference_logits[step], precision):
            return step, None
        if token != int(np.argmax(reference_logits[step])):
            return step, step
    return len(tokens), None


def compared_text(compared, total):
    return f"{compared} of {total} steps" + ("" if compared == total else " (then a near tie)")


def check_model(report, args, work, name, shape, seed, precision):
    checkpoint = os.path.join(work, f"{name}.bin")
    make_checkpoint(checkpoint, shape, seed)
    rng = np.random.default_rng(seed + 100)
    prompts = [rng.integers(0, 50256, size=n).tolist() for n in PROMPT_LENGTHS]
    tolerance = TOLERANCE[precision]
    batch_tokens, batch_logits = generate(args.trainer, checkpoint, precision, prompts, work, "batch")
    eager_tokens, eager_logits = generate(args.trainer, checkpoint, precision, prompts, work, "eager",
                                          ["--generate-cuda-graph", "0"])
    report.check(eager_tokens == batch_tokens and np.array_equal(eager_logits, batch_logits),
                 f"{name} {precision}: each decode step replayed as a CUDA graph gives the eager steps' tokens and "
                 f"logits bit for bit")
    for i, prompt in enumerate(prompts):
        what = f"{name} {precision}, prompt of {len(prompt)}"
        alone_tokens, alone_logits = generate(args.trainer, checkpoint, precision, [prompt], work, "alone")
        tokens, logits = alone_tokens[0], alone_logits[0, :len(alone_tokens[0])]
        full = recompute(args.trainer, checkpoint, precision, prompt, tokens, work)
        error = relative_l2(logits, full)
        report.check(error <= tolerance, f"{what}: cached vs recomputed logits over {len(tokens)} steps: relative L2 "
                                         f"{error:.2e} (tolerance {tolerance:g})")
        report.check([int(np.argmax(row)) for row in logits] == tokens,
                     f"{what}: every greedy token (the GPU's argmax) is the argmax of its logits")
        compared, mismatch = tokens_before_tie(tokens, full, precision)
        report.check(mismatch is None,
                     f"{what}: greedy tokens equal the full recompute's argmax for {compared_text(compared, len(tokens))}"
                     if mismatch is None else f"{what}: token {mismatch} is {tokens[mismatch]}, the full recompute's "
                                              f"argmax {int(np.argmax(full[mismatch]))}")

        # The same prompt in the batch: logits compared up to the first step whose tokens differ
        # (beyond it the two sequences no longer share their context).
        theirs = batch_tokens[i]
        steps = min(len(theirs), len(tokens))
        differ = next((s for s in range(steps) if theirs[s] != tokens[s]), None)
        steps = steps if differ is None else differ + 1
        error = relative_l2(batch_logits[i, :steps], logits[:steps])
        report.check(error <= tolerance, f"{what}: in a batch of 2 vs alone: logits over {steps} steps, relative L2 "
                                         f"{error:.2e} (tolerance {tolerance:g})")
        compared, mismatch = tokens_before_tie(theirs[:steps], logits[:steps], precision)
        report.check(mismatch is None, f"{what}: in a batch of 2 vs alone: the same tokens for "
                                       f"{compared_text(compared, len(tokens))}")


def check_text_and_samples(report, args, work):
    vocab = os.path.join(REPO, "data", "vocab")
    if not os.path.exists(os.path.join(vocab, "encoder.json")):
        print("  SKIP  text prompts and the trainer's samples: no data/vocab (make setup)")
        return
    checkpoint = os.path.join(work, f"{MODELS[0][0]}.bin")
    out = os.path.join(work, "text.jsonl")
    output = run([args.trainer, "-e", checkpoint, "--generate", "The quick brown fox", "--generate", "",
                  "--max-new-tokens", "8", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.9",
                  "--generate-out", out])
    lines = [json.loads(line) for line in open(out)]
    report.check(len(lines) == 2 and lines[0]["prompt_tokens"][:2] == [464, 2068] and "text" in lines[0]
                 and lines[1]["prompt_tokens"] == [50256] and all(1 <= len(l["tokens"]) <= 8 for l in lines)
                 and "=== 1/2" in output,
                 "text prompts: encoded, printed and written as JSON lines; an empty prompt is <|endoftext|>")

    shards = os.path.join(work, "shards")
    write_synthetic_shards(shards, 4321, [("train", 200_000), ("val", 20_000)])
    common = ["-e", "d2", "--n-embd", "128", "--n-head", "2", "--max-seq-len", "64", "--seq-len", "64",
              "--device-batch", "4", "--global-batch-tokens", "256", "--steps", "10", "--val-every", "0",
              "--sample-every", "5", "--sample-tokens", "40", "--checkpoint-every", "5", "--lr", "1e-3",
              "--train-glob", os.path.join(shards, "synthetic_train_*.bin"),
              "--val-glob", os.path.join(shards, "synthetic_val_*.bin")]
    straight, resumed = os.path.join(work, "straight"), os.path.join(work, "resumed")
    run([args.trainer] + common + ["--out-dir", straight])
    run([args.trainer] + common + ["--out-dir", resumed, "--resume", os.path.join(straight, "model_00000005.bin")])

    def samples(run_dir):
        events = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
        return {e["step"]: e["text"] for e in events if e["event"] == "sample"}
    a, b = samples(straight), samples(resumed)
    report.check(set(a) == {5, 10} and 10 in b and a[10] == b[10] and len(a[10]) > 0,
                 f"trainer samples at steps 5 and 10; the resumed run's step-10 sample equals the original's "
                 f"({len(a.get(10, ''))} characters)")


def check_errors(report, args, work):
    checkpoint = os.path.join(work, f"{MODELS[0][0]}.bin")
    output = run([args.trainer, "-e", checkpoint, "--generate", " ".join(["11"] * 300), "--prompt-format", "tokens",
                  "--max-new-tokens", "30"], expect_failure=True)
    report.check("prompt 1 has 300 tokens; with --max-new-tokens 30 it needs 330 positions" in output,
                 "a prompt too long for --max-new-tokens is refused with a message that says so")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="directory for the files (default: a temporary one)")
    parser.add_argument("--trainer", default=os.path.join(REPO, "train_gpt2cu"))
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="test_generate_")
    shutil.rmtree(work, ignore_errors=True)  # runs and checkpoints of an earlier call would mix in
    os.makedirs(work)
    print(f"files in {work}")
    report = Report()

    def guarded(check, *check_args):  # a failed command fails its check, not the whole script
        try:
            check(report, args, work, *check_args)
        except (RuntimeError, OSError, KeyError, ValueError) as error:
            report.check(False, f"{check.__name__}{check_args[:1]}: {error}")

    print("== 1-2. the KV cache against full recompute, and a batch against each prompt alone")
    for seed, (name, shape) in enumerate(MODELS):
        for precision in ("bf16", "fp16"):
            guarded(check_model, name, shape, seed, precision)
    print("== 3. text prompts, and the trainer's samples across a resume")
    guarded(check_text_and_samples)
    print("== 4. errors")
    guarded(check_errors)
    print(f"test_generate: {'FAILED' if report.failures else 'PASSED'} ({report.failures} failure(s))")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
