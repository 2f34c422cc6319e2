#!/usr/bin/env python3
"""Plots of training runs: one PNG with train and val loss against steps and against tokens, the
learning rate, throughput and the gradient norm, several runs overlaid.

  python3 scripts/plot_runs.py RUN_DIR... [--out PLOT.png] [--reference CURVE.csv] [--title TEXT]

Each RUN_DIR holds the trainer's log.jsonl (train and val events) and config.json (its
tokens_per_step gives the tokens axis; without it the token panels show only the reference).
--reference CSV: a header row naming `step` and/or `tokens` and a `loss` (or `val_loss`) column,
drawn as a dashed curve on the matching loss panels (e.g. a published loss curve). The default
output is RUN_DIR/plot.png for one run and ./runs_plot.png for several; the path is printed.
Needs matplotlib (Debian: python3-matplotlib); draws with the Agg backend, no display needed.
"""

import argparse
import csv
import json
import math
import os
import sys


def read_run(directory):
    """{'label', 'train': {field: [...]}, 'val': {...}, 'tokens_per_step'} from a run directory."""
    log_path = os.path.join(directory, "log.jsonl")
    if not os.path.exists(log_path):
        raise SystemExit(f"plot_runs: {log_path} does not exist: pass run directories written by train_gpt2cu")
    run = {"label": os.path.basename(os.path.normpath(directory)), "train": {}, "val": {}, "tokens_per_step": None}
    with open(log_path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(f"plot_runs: {log_path}:{number} is not JSON ({error})") from None
            kind = event.get("event")
            if kind not in ("train", "val"):
                continue
            for key, value in event.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    run[kind].setdefault(key, []).append(value)
                elif value is None and key != "event":
                    run[kind].setdefault(key, []).append(math.nan)
    config_path = os.path.join(directory, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            run["tokens_per_step"] = json.load(f).get("tokens_per_step")
    return run


def read_reference(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot_runs: {path} has no rows")
    loss_key = next((k for k in ("loss", "val_loss") if k in rows[0]), None)
    if loss_key is None or not ({"step", "tokens"} & set(rows[0])):
        raise SystemExit(f"plot_runs: {path} needs a header with step and/or tokens, and loss or val_loss "
                         f"(it has {', '.join(rows[0])})")
    reference = {"label": os.path.basename(path), "loss": [float(r[loss_key]) for r in rows]}
    for axis in ("step", "tokens"):
        if axis in rows[0]:
            reference[axis] = [float(r[axis]) for r in rows]
    return reference


def plot(runs, reference, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(16, 9))
    panels = {"loss_steps": axes[0][0], "loss_tokens": axes[0][1], "lr": axes[0][2],
              "throughput": axes[1][0], "grad_norm": axes[1][1], "val_ppl": axes[1][2]}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        color, label = colors[index % len(colors)], run["label"]
        train, val, per_step = run["train"], run["val"], run["tokens_per_step"]
        to_tokens = (lambda steps: [s * per_step for s in steps]) if per_step else None
        if "loss" in train:
            panels["loss_steps"].plot(train["step"], train["loss"], color=color, alpha=0.6, lw=1, label=f"{label} train")
            if to_tokens:
                panels["loss_tokens"].plot(to_tokens(train["step"]), train["loss"], color=color, alpha=0.6, lw=1,
                                           label=f"{label} train")
        if "loss" in val:
            panels["loss_steps"].plot(val["step"], val["loss"], "o-", color=color, ms=3, label=f"{label} val")
            if to_tokens:
                panels["loss_tokens"].plot(to_tokens(val["step"]), val["loss"], "o-", color=color, ms=3,
                                           label=f"{label} val")
        if "ppl" in val:
            panels["val_ppl"].plot(val["step"], val["ppl"], "o-", color=color, ms=3, label=label)
        for key, panel in (("lr", "lr"), ("tokens_per_s", "throughput"), ("grad_norm", "grad_norm")):
            if key in train:
                panels[panel].plot(train["step"], train[key], color=color, lw=1, label=label)
    if reference:
        for axis, panel in (("step", "loss_steps"), ("tokens", "loss_tokens")):
            if axis in reference:
                panels[panel].plot(reference[axis], reference["loss"], "k--", lw=1, label=reference["label"])
    titles = {"loss_steps": ("loss", "step"), "loss_tokens": ("loss", "tokens"), "lr": ("learning rate", "step"),
              "throughput": ("tokens/s", "step"), "grad_norm": ("gradient norm", "step"),
              "val_ppl": ("val perplexity", "step")}
    for name, panel in panels.items():
        ylabel, xlabel = titles[name]
        panel.set_title(ylabel if name != "loss_tokens" else "loss against tokens")
        panel.set_xlabel(xlabel)
        panel.grid(alpha=0.3)
        if panel.lines:
            panel.legend(fontsize=7)
        else:
            panel.text(0.5, 0.5, "no data", ha="center", va="center", transform=panel.transAxes, color="gray")
    if panels["val_ppl"].lines:
        panels["val_ppl"].set_yscale("log")
    figure.suptitle(title or ", ".join(run["label"] for run in runs))
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", default=None)
    parser.add_argument("--reference", default=None, metavar="CSV")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    runs = [read_run(directory) for directory in args.runs]
    reference = read_reference(args.reference) if args.reference else None
    out = args.out or (os.path.join(args.runs[0], "plot.png") if len(args.runs) == 1 else "runs_plot.png")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("plot_runs: matplotlib is missing: install python3-matplotlib (Debian) or pip install "
                         "matplotlib") from None
    plot(runs, reference, out, args.title)
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
