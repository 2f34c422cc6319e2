"""Groups the kernels of one profiled training step (an `ncu --csv --page raw` file with
gpu__time_duration.sum) by op and prints a markdown table against the step's wall time.

    python3 dev/bench/step_breakdown.py KERNELS.csv --step-ms 70.9 [--title TEXT] [--top 15]

Standard library only (runs with any python3).
"""
import argparse
import collections
import csv
import io
import re
import sys

# (group, pattern over the demangled kernel name); the first match wins.
GROUPS = [
    ("matmul (cuBLASLt GEMMs and their reductions)", r"gemm|xmma|nvjet|cutlass|cublas|BgradAB|splitKreduce"),
    ("matmul side kernels (bias, GELU, column sums)", r"add_bias|gelu_forward|gelu_backward|column_sum"),
    # ncu names our kernels by their innermost namespace (tensor_cores::, hopper::, cuda_cores::).
    ("attention forward", r"(tensor_cores|hopper|cuda_cores)::forward_kernel"),
    ("attention backward", r"backward_dq_kernel|backward_dkdv_kernel|attention_backward_row_dot"),
    ("LayerNorm (+dropout, residual)", r"layernorm"),
    ("cross-entropy", r"cross_entropy"),
    ("embedding", r"encoder_"),
    ("optimizer (AdamW, grad norm)", r"adamw|norm_squared|copy_master"),
    ("rotary", r"rotary"),
    ("dropout", r"dropout_add"),
    ("communication (NCCL)", r"nccl"),
]


def group_of(name):
    for group, pattern in GROUPS:
        if re.search(pattern, name, re.IGNORECASE):
            return group
    return "other"


def read_kernels(path):
    """(name, ns) per profiled kernel. ncu's raw CSV has a header row, a units row, then data."""
    with open(path, newline="") as f:
        text = f.read()
    # ncu may print its own log lines (==PROF==) before the CSV.
    start = text.find('"ID"')
    if start < 0:
        sys.exit(f"{path}: no ncu CSV header (\"ID\",...) found; was the step profiled?")
    rows = list(csv.reader(io.StringIO(text[start:])))
    header = rows[0]
    try:
        name_col = header.index("Kernel Name")
        time_col = header.index("gpu__time_duration.sum")
    except ValueError:
        sys.exit(f"{path}: expected columns 'Kernel Name' and 'gpu__time_duration.sum', got {header[:12]}...")
    kernels = []
    for row in rows[1:]:
        if len(row) <= max(name_col, time_col):
            continue
        try:
            ns = float(row[time_col].replace(",", ""))
        except ValueError:
            continue  # the units row
        kernels.append((row[name_col], ns))
    if not kernels:
        sys.exit(f"{path}: no kernel rows")
    return kernels


def short_name(name):
    """The function name without return type, template arguments and parameters."""
    name = re.sub(r"\(.*$", "", name)
    depth, out = 0, []
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).replace("void ", "").strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--step-ms", type=float, required=True, help="the unprofiled median step time")
    parser.add_argument("--title", default="")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    kernels = read_kernels(args.csv)
    step_ns = args.step_ms * 1e6
    by_group = collections.defaultdict(lambda: [0.0, 0])
    by_kernel = collections.defaultdict(lambda: [0.0, 0])
    for name, ns in kernels:
        by_group[group_of(name)][0] += ns
        by_group[group_of(name)][1] += 1
        by_kernel[short_name(name)][0] += ns
        by_kernel[short_name(name)][1] += 1
    kernel_ns = sum(ns for _, ns in kernels)

    print(f"### One training step: {args.title}")
    print()
    print(f"Step {args.step_ms:.2f} ms (median, unprofiled run); {len(kernels)} kernels, "
          f"{kernel_ns / 1e6:.2f} ms of kernel time (Nsight Compute, each kernel alone).")
    print()
    print("| group | kernels | ms | % of step |")
    print("| --- | --- | --- | --- |")
    for group, (ns, count) in sorted(by_group.items(), key=lambda item: -item[1][0]):
        print(f"| {group} | {count} | {ns / 1e6:.2f} | {100 * ns / step_ns:.1f}% |")
    gap_ns = step_ns - kernel_ns
    print(f"| step minus kernel time (launch gaps, syncs, copies, lower clocks under load) | - | {gap_ns / 1e6:.2f} | "
          f"{100 * gap_ns / step_ns:.1f}% |")
    print()
    print(f"Top {args.top} kernels by time:")
    print()
    print("| kernel | calls | ms | % of step |")
    print("| --- | --- | --- | --- |")
    for name, (ns, count) in sorted(by_kernel.items(), key=lambda item: -item[1][0])[: args.top]:
        print(f"| `{name[:90]}` | {count} | {ns / 1e6:.2f} | {100 * ns / step_ns:.1f}% |")


if __name__ == "__main__":
    main()
