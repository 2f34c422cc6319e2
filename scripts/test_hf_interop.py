#!/usr/bin/env python3
"""Hugging Face interoperability against transformers itself (the GPU machine: transformers and
PyTorch installed; tests/hf_interop.sh checks the same on the CPU without transformers).

  python3 scripts/test_hf_interop.py [--work DIR] [--trainer ./train_gpt2cu] [--device cuda]

Needs ./data_prep/hf (make data_prep) and ./train_gpt2cu (make train_gpt2cu; --no-trainer skips
checks 3, 5 and 6); data/vocab (make setup) for the tokenizer check. tests/run_all.sh runs it in
`make test-gpu`. Runs:

1. Export. Tiny checkpoints written by the PyTorch reference (dev/reference), one per exportable
   kind (GPT-2; GPT-2 with the 1/(layer+1) scaling folded, and as transformers' flag; rotary;
   interleaved rotary with scaling), exported by ./data_prep/hf and loaded with
   AutoModelForCausalLM.from_pretrained (no custom code) with transformers' default attention
   and with eager attention; their float32 logits on the device are compared with the
   reference's float64 logits on the checkpoint. The flag variant is loaded with eager only and
   the default-attention result is printed for information (transformers' SDPA path ignored the
   flag before its PR #44397: why export folds by default).
2. Import. A randomly initialised GPT2LMHeadModel (and one with scale_attn_by_inverse_layer_idx)
   saved by save_pretrained (safetensors), imported by ./data_prep/hf; the reference's logits on
   the imported checkpoint are compared with transformers' on the saved model.
3. Our trainer: its logits on the same tokens (`./train_gpt2cu -e CHECKPOINT --logits-in
   TOKENS.bin --logits-out LOGITS.bin`: tensor bundles, "tokens" int32 (B, T) in, "logits"
   float32 (B, T, vocab_size) out, one forward pass without dropout), from each exported
   checkpoint and each imported one, against transformers'.
4. The tokenizer files: AutoTokenizer on an export encodes a text as ./data_prep/tokenize does.
5. HellaSwag scoring: random items in HellaSwag's format (an items file as ./data_prep/prepare
   hellaswag writes it) scored by `./train_gpt2cu -e CHECKPOINT --hellaswag-only 1` and by
   llm.c's scoring written here over transformers' logits of the export: the same choice on
   every item whose two best endings transformers separates by more than the precision's
   margin, so acc and acc_norm may differ by the close items only.
6. Greedy generation: `./train_gpt2cu -e CHECKPOINT --generate IDS --prompt-format tokens
   --temperature 0` (the KV cache) against transformers' greedy `generate` on the export, token
   for token up to the first step where transformers' two largest logits are closer than the
   precision can order (GENERATION_TIE below); the number of tokens compared is printed. The
   logits each of our tokens came from (--generate-logits-out) are held against transformers' at
   the same positions, while the two sequences agree, with check 3's tolerance.

Tolerances (relative L2 error ||a - b|| / ||b|| over all logits, as test_gpt2cu measures):
  transformers float32 vs reference float64: 1e-4. float32 keeps 24 bits (6e-8 per rounding);
  a logit passes through ~4 roundings per layer of C-term fp32 dot products, so errors of
  1e-6..1e-5 are expected; a wrong layout, transpose, scaling or rotary pairing gives O(1).
  TF32 is turned off so that the matmuls are float32.
  our trainer vs transformers: its precision's tolerance from test_gpt2.cu: bf16 2e-2, fp16 4e-3.
  The models have heads of 64 (n_embd 128, 2 heads): the trainer's attention kernels take head
  sizes 64, 80, 96 and 128.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "dev", "reference"))
from reference_files import (read_bundle, read_checkpoint, write_bundle, write_checkpoint,  # noqa: E402
                             write_hellaswag_items)
from reference_model import Dropout, ModelConfig, forward, parameter_shapes  # noqa: E402

HF_TOOL = os.path.join(REPO, "data_prep", "hf")
FP32_TOLERANCE = 1e-4
TRAINER_TOLERANCE = {"bf16": 2e-2, "fp16": 4e-3}


class Report:
    def __init__(self):
        self.failures = 0

    def compare(self, label, ours, reference, tolerance, informative=False):
        ours, reference = ours.double().cpu(), reference.double().cpu()
        relative = ((ours - reference).norm() / reference.norm()).item()
        max_abs = (ours - reference).abs().max().item()
        agree = (ours.argmax(-1) == reference.argmax(-1)).double().mean().item()
        passed = relative <= tolerance
        verdict = "info" if informative else ("ok" if passed else "FAIL")
        self.failures += verdict == "FAIL"
        print(f"{verdict:4}  {label}: relative L2 {relative:.3e} (tolerance {tolerance:g}), max |diff| {max_abs:.3e}, "
              f"argmax agreement {agree:.3f}")
        return passed

    def note(self, verdict, text):
        self.failures += verdict == "FAIL"
        print(f"{verdict:4}  {text}")


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def reference_logits(checkpoint, tokens):
    cfg, params = read_checkpoint(checkpoint)
    params = {n: torch.tensor(v, dtype=torch.float64) for n, v in params.items()}
    return forward(params, cfg, tokens.cpu(), Dropout(0.0, 0, 0, cfg.n_layer))


def load_transformers(directory, attention, device):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation=attention)
    except TypeError:  # transformers without attn_implementation: eager only
        model = AutoModelForCausalLM.from_pretrained(directory)
    model = model.float().to(device).eval()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return model, tied


def transformers_logits(model, tokens, device):
    with torch.no_grad():
        return model(tokens.to(device)).logits.float()


def trainer_logits(trainer, checkpoint, tokens, work, precision):
    tokens_path, logits_path = os.path.join(work, "tokens.bin"), os.path.join(work, "logits.bin")
    write_bundle(tokens_path, [("tokens", tokens.numpy().astype(np.int32))])
    run([trainer, "-e", checkpoint, "--precision", precision, "--logits-in", tokens_path, "--logits-out", logits_path])
    return torch.tensor(read_bundle(logits_path)["logits"])


def hellaswag_choices(model, items, device, margin):
    """llm.c's completion scoring over transformers' logits: per ending the summed and the mean
    loss of its tokens given the context. Per item: (sum choice, mean choice, whether the two
    lowest sums are within `margin` per token of theirs, whether the two lowest means are within
    2 * margin, label)."""
    choices = []
    for label, context, endings in items:
        sums, means = [], []
        for ending in endings:
            row = torch.tensor([list(context) + list(ending)], device=device)
            with torch.no_grad():
                logits = model(row).logits.double()[0, :-1]
            losses = torch.nn.functional.cross_entropy(logits, row[0, 1:], reduction="none")[len(context) - 1:]
            sums.append(losses.sum().item())
            means.append(losses.mean().item())
        by_sum, by_mean = np.argsort(sums, kind="stable"), np.argsort(means, kind="stable")
        sum_close = sums[by_sum[1]] - sums[by_sum[0]] <= margin * (len(endings[by_sum[0]]) + len(endings[by_sum[1]]))
        mean_close = means[by_mean[1]] - means[by_mean[0]] <= 2 * margin
        choices.append((int(by_sum[0]), int(by_mean[0]), sum_close, mean_close, label))
    return choices


def make_checkpoint(path, flags, rotary_dim, seed):
    cfg = ModelConfig(n_layer=4, n_embd=128, n_head=2, max_seq_len=64, padded_vocab_size=50304, flags=flags,
                      rotary_dim=rotary_dim)
    rng = np.random.default_rng(seed)
    params = {n: rng.normal(1.0 if n.startswith("ln") else 0.0, 0.1, shape).astype(np.float32)
              for n, shape in parameter_shapes(cfg)}
    write_checkpoint(path, cfg, params)


# Greedy generation: a logit computed in bf16 or fp16 is within 4u of its size of the exact value
# (u, the unit roundoff, bf16 2^-8 and fp16 2^-11: its final rounding is u/2, and the hidden
# state it comes from carries the rounding of every layer, which test_gpt2cu measures at a few
# u; transformers' float32 is exact by comparison). Two logits closer than 8u times the larger
# may therefore come out of our trainer in either order: from that step on the greedy
# continuations may part, and the comparison stops there.
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
GENERATION_NEW_TOKENS = 24


def generation_tie(logits_row, precision):
    top_two = np.sort(logits_row)[-2:]
    return top_two[1] - top_two[0] < 8 * UNIT_ROUNDOFF[precision] * abs(top_two[1])


def check_generation(report, args, work, name, seed):
    checkpoint = os.path.join(work, f"{name}.bin")  # check 1's, exported to work/name
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 50256, size=8).tolist()
    logits_path = os.path.join(work, f"{name}.generated.bin")
    run([args.trainer, "-e", checkpoint, "--precision", args.precision, "--generate", " ".join(map(str, prompt)),
         "--prompt-format", "tokens", "--temperature", "0", "--max-new-tokens", str(GENERATION_NEW_TOKENS),
         "--generate-logits-out", logits_path])
    generated = read_bundle(logits_path)
    ours = [int(t) for t in generated["tokens"][0] if t >= 0]
    our_logits = torch.tensor(generated["logits"][0, :len(ours)], dtype=torch.float64)
    model, _ = load_transformers(os.path.join(work, name), "eager", args.device)
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt], device=args.device), do_sample=False,
                                max_new_tokens=GENERATION_NEW_TOKENS, eos_token_id=50256, pad_token_id=50256,
                                attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=args.device))
        theirs = output[0, len(prompt):].tolist()
        # transformers' logits at the positions that chose each of its tokens (its own sequence)
        reference = model(output[:, :-1]).logits[0, len(prompt) - 1:].double().cpu()
    compared = next((step for step in range(len(theirs)) if generation_tie(reference[step].numpy(), args.precision)),
                    len(theirs))
    same = ours[:compared] == theirs[:compared]
    report.note("ok" if same else "FAIL",
                f"{name}: greedy generation ({args.precision}) equals transformers' for {compared} of {len(theirs)} "
                f"tokens{'' if compared == len(theirs) else ' (then a near tie)'}"
                + ("" if same else f": ours {ours[:compared]}, transformers {theirs[:compared]}"))
    agree = next((step for step in range(min(len(ours), len(theirs))) if ours[step] != theirs[step]),
                 min(len(ours), len(theirs)))
    steps = min(agree + 1, len(ours), len(theirs))  # the logits of the first differing step share their context
    report.compare(f"{name}: the logits of our generated tokens ({steps} steps) vs transformers'", our_logits[:steps],
                   reference[:steps], TRAINER_TOLERANCE[args.precision])


# A choice may differ only where transformers' two best endings are closer than the trainer's
# precision can tell apart: we allow each per-token loss to move by this many nats (bf16 logits
# are within 2e-2 relative, about a unit in size), so a sum over n tokens by n times it.
HELLASWAG_MARGIN = {"bf16": 0.25, "fp16": 0.05}


def check_hellaswag(report, args, work):
    rng = np.random.default_rng(11)
    items = []
    for _ in range(40):
        context = rng.integers(0, 50257, size=int(rng.integers(8, 30))).tolist()
        endings = [rng.integers(0, 50257, size=int(rng.integers(1, 30))).tolist() for _ in range(4)]
        items.append((int(rng.integers(0, 4)), context, endings))
    items_path = os.path.join(work, "hellaswag_items.bin")
    write_hellaswag_items(items_path, items)
    checkpoint = os.path.join(work, "gpt2.bin")  # check 1's plain GPT-2 and its export
    model, _ = load_transformers(os.path.join(work, "gpt2"), "eager", args.device)
    margin = HELLASWAG_MARGIN[args.precision]
    theirs = hellaswag_choices(model, items, args.device, margin)
    output = run([args.trainer, "-e", checkpoint, "--precision", args.precision, "--hellaswag-only", "1",
                  "--hellaswag-file", items_path, "--device-batch", "8"])
    line = [l for l in output.splitlines() if l.startswith("HELLASWAG ")]
    if not line:
        report.note("FAIL", f"no HELLASWAG line in the trainer's output:\n{output}")
        return
    ours = dict(field.split("=") for field in line[0].split()[1:])
    for key, column in (("acc", 0), ("acc_norm", 1)):
        right = sum(choice[column] == choice[4] for choice in theirs)
        close = sum(choice[2 + column] for choice in theirs)
        ours_right = round(float(ours[key]) * len(items))
        verdict = "ok" if abs(ours_right - right) <= close and int(ours["items"]) == len(items) else "FAIL"
        report.note(verdict, f"HellaSwag {key}: ours {ours_right}/{ours['items']}, transformers {right}/{len(items)} "
                             f"({close} item(s) too close to call in {args.precision} may differ)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="directory for the files (default: a temporary one)")
    parser.add_argument("--trainer", default=os.path.join(REPO, "train_gpt2cu"))
    parser.add_argument("--precision", default="bf16", choices=sorted(TRAINER_TOLERANCE))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-trainer", action="store_true", help="skip the checks of ./train_gpt2cu (3, 5 and 6)")
    args = parser.parse_args()
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    work = args.work or tempfile.mkdtemp(prefix="hf_interop_")
    os.makedirs(work, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "") + f", files in {work}")
    report = Report()
    tokens = torch.tensor(np.random.default_rng(1).integers(0, 50257, size=(2, 64)))
    use_trainer = not args.no_trainer
    if use_trainer and not os.access(args.trainer, os.X_OK):
        report.note("FAIL", f"{args.trainer} is missing: build it (make train_gpt2cu) or pass --no-trainer")
        use_trainer = False
    trained = []  # (label, checkpoint, transformers logits) for check 3

    print("== 1. export: transformers loads ./data_prep/hf's output")
    # name, checkpoint flags (1 learned positions, 4 interleaved, 8 scaling), rotary_dim, export args
    exports = [("gpt2", 1, 0, []), ("gpt2-scaled-folded", 9, 0, []), ("gpt2-scaled-flag", 9, 0, ["--layer-scaling", "flag"]),
               ("rotary-scaled", 8, 16, []), ("rotary-interleaved-scaled", 12, 16, [])]
    vocab = os.path.join(REPO, "data", "vocab")
    for seed, (name, flags, rotary_dim, export_args) in enumerate(exports):
        checkpoint, directory = os.path.join(work, f"{name}.bin"), os.path.join(work, name)
        make_checkpoint(checkpoint, flags, rotary_dim, seed)
        tokenizer_args = ["--vocab", vocab] if os.path.exists(os.path.join(vocab, "encoder.json")) else ["--no-tokenizer"]
        run([HF_TOOL, "export", checkpoint, directory] + tokenizer_args + export_args)
        expected = reference_logits(checkpoint, tokens)
        flagged = "flag" in export_args
        for attention in ("sdpa", "eager"):
            model, tied = load_transformers(directory, attention, args.device)
            report.note("ok" if tied else "FAIL", f"{name}: {type(model).__name__} loaded, LM head tied: {tied}")
            logits = transformers_logits(model, tokens, args.device)
            informative = flagged and attention == "sdpa"
            report.compare(f"{name} ({attention} attention) vs the reference", logits, expected, FP32_TOLERANCE,
                           informative=informative)
            if attention == "eager":
                trained.append((name, checkpoint, logits))

    print("== 2. import: ./data_prep/hf reads a GPT2LMHeadModel saved by transformers")
    from transformers import GPT2Config, GPT2LMHeadModel
    for name, scaled in (("random-gpt2", False), ("random-gpt2-scaled", True)):
        torch.manual_seed(7)
        config = GPT2Config(n_layer=4, n_embd=128, n_head=2, n_positions=64, scale_attn_by_inverse_layer_idx=scaled)
        model = GPT2LMHeadModel(config).eval()
        directory, checkpoint = os.path.join(work, name), os.path.join(work, f"{name}.bin")
        model.save_pretrained(directory, safe_serialization=True)
        run([HF_TOOL, "import", directory, checkpoint])
        model, _ = load_transformers(directory, "eager", args.device)
        logits = transformers_logits(model, tokens, args.device)
        report.compare(f"{name}: the reference on the import vs transformers (eager)", reference_logits(checkpoint, tokens),
                       logits, FP32_TOLERANCE)
        trained.append((name, checkpoint, logits))

    print(f"== 3. our trainer's logits ({args.precision}) vs transformers")
    if not use_trainer:
        report.note("SKIP", "no trainer (--no-trainer, or it is missing)")
    for name, checkpoint, logits in trained if use_trainer else []:
        ours = trainer_logits(args.trainer, checkpoint, tokens, work, args.precision)
        report.compare(f"{name}: train_gpt2cu vs transformers", ours, logits, TRAINER_TOLERANCE[args.precision])

    print("== 4. the tokenizer files")
    if os.path.exists(os.path.join(work, "gpt2", "vocab.json")):
        from transformers import AutoTokenizer
        text = "Hello world! It's 2026: tokenizers, ünïcödé and   spaces.\n"
        theirs = AutoTokenizer.from_pretrained(os.path.join(work, "gpt2")).encode(text)
        ours = [int(t) for t in subprocess.run([os.path.join(REPO, "data_prep", "tokenize"), "encode"], input=text,
                                               capture_output=True, text=True, check=True).stdout.split()]
        report.note("ok" if theirs == ours else "FAIL", f"AutoTokenizer on the export encodes as ./data_prep/tokenize "
                                                        f"({len(ours)} tokens)")
    else:
        report.note("SKIP", "no data/vocab (make setup): no tokenizer files were exported")

    print(f"== 5. HellaSwag scoring: train_gpt2cu --hellaswag-only ({args.precision}) vs transformers")
    if use_trainer:
        check_hellaswag(report, args, work)
    else:
        report.note("SKIP", "no trainer (--no-trainer, or it is missing)")

    print(f"== 6. greedy generation: train_gpt2cu --generate ({args.precision}, KV cache) vs transformers' generate")
    if use_trainer:
        for seed, name in enumerate(("gpt2", "gpt2-scaled-folded", "rotary-scaled", "rotary-interleaved-scaled")):
            check_generation(report, args, work, name, seed)
    else:
        report.note("SKIP", "no trainer (--no-trainer, or it is missing)")

    print(f"hf interop: {'FAILED' if report.failures else 'passed'} ({report.failures} failure(s))")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
