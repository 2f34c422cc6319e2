#!/usr/bin/env python3
"""Compares the training losses of two runs, step by step (the GPU test drivers' check).

  compare_losses.py NAME A/log.jsonl B/log.jsonl [--first N] [--last M] [--tolerance X] [--show]

Passes when every step FIRST..LAST (default 1..20) has a `train` event in both logs and
|loss_B - loss_A| / loss_A <= X (default 2e-3; 0 means bit-identical). --show prints both losses
of every step. Prints one summary line; exit status 0 on pass, 1 on failure.
"""
import argparse
import json
import sys


def train_losses(path):
    with open(path) as log:
        return {e["step"]: e["loss"] for e in map(json.loads, log) if e.get("event") == "train"}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("reference")
    parser.add_argument("candidate")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--last", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=2e-3)
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args(argv)
    x, y = train_losses(args.reference), train_losses(args.candidate)
    steps = range(args.first, args.last + 1)
    worst = max((abs(x[s] - y[s]) / x[s] if s in x and s in y else float("inf")) for s in steps)
    if args.show:
        for s in steps:
            print(f"  step {s}: {x.get(s)!r}  {y.get(s)!r}")
    ok = worst <= args.tolerance
    print(f"  {args.name:34s} max |dloss|/loss over steps {args.first}..{args.last} = {worst:.2e} "
          f"(tolerance {args.tolerance:g}) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
