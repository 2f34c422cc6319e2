"""Groups the kernels of one profiled training step (an `ncu --csv --page raw` file with
gpu__time_duration.sum) by op and prints a markdown table against the step's wall time.

    python3 dev/bench/step_breakdown.py KERNELS.csv --step-ms 70.9 [--title TEXT] [--top 15]
                                        [--trace TRACE.csv [--traced-step-ms 71.2]]

--trace: the same step of a run without ncu, as dev/bench/kernel_trace.cpp recorded it (every
kernel, copy and memset with its start and end). It adds each group's time in the loaded step
beside ncu's and splits "step minus kernel time" into the GPU's idle time inside the step (the
spaces between its kernels: launch gaps, host synchronizations) and what lies outside the traced
span (the host before the step's first launch and after its last); the longest idle spaces are
listed with their neighbours. --traced-step-ms, the traced step's own time on the host's clock
(the trainer's "bench step" line), measures what lies outside the span against that step itself
rather than the unprofiled median, and says how far the traced step was from the median.

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


def read_trace(path):
    """(kind, start_ns, end_ns, name) per record of a kernel_trace.cpp CSV, sorted by start."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    expected = {"kind", "start_ns", "end_ns", "name"}
    if not rows or not expected <= set(rows[0]):
        sys.exit(f"{path}: expected a kernel_trace CSV with columns {sorted(expected)} and at least one record")
    records = [(row["kind"], int(row["start_ns"]), int(row["end_ns"]), row["name"]) for row in rows]
    return sorted(records, key=lambda record: record[1])


def idle_spaces(records):
    """The spaces inside the traced span when nothing ran: (ns, record before, record after)."""
    spaces, busy_until, last = [], records[0][2], records[0]
    for record in records[1:]:
        if record[1] > busy_until:
            spaces.append((record[1] - busy_until, last, record))
        if record[2] > busy_until:
            busy_until, last = record[2], record
    return spaces


def print_trace_split(records, kernels_ns_by_group, step_ns, traced_step_ns, top):
    """The loaded step's kernel time per group beside ncu's, then where the rest of the step went."""
    traced_by_group = collections.defaultdict(float)
    for kind, start, end, name in records:
        traced_by_group[group_of(name) if kind == "kernel" else f"{kind} (host and device copies)"] += end - start
    span_ns = max(end for _, _, end, _ in records) - records[0][1]
    spaces = idle_spaces(records)
    idle_ns = sum(ns for ns, _, _ in spaces)
    traced_ns, alone_ns = sum(traced_by_group.values()), sum(kernels_ns_by_group.values())

    print()
    print("The same step traced in a run without ncu (dev/bench/kernel_trace.cpp: kernels back to back, at the "
          "loaded GPU's clock):")
    print()
    print("| group | ms, ncu (alone) | ms, traced (loaded) | traced / ncu |")
    print("| --- | --- | --- | --- |")
    for group in sorted(set(kernels_ns_by_group) | set(traced_by_group),
                        key=lambda g: -max(kernels_ns_by_group.get(g, 0), traced_by_group.get(g, 0))):
        alone, loaded = kernels_ns_by_group.get(group, 0.0), traced_by_group.get(group, 0.0)
        ratio = f"{loaded / alone:.2f}" if alone > 0 else "-"
        print(f"| {group} | {alone / 1e6:.2f} | {loaded / 1e6:.2f} | {ratio} |")
    print(f"| all traced work | {alone_ns / 1e6:.2f} | {traced_ns / 1e6:.2f} | {traced_ns / max(alone_ns, 1):.2f} |")
    print()
    span = (f"Traced span {span_ns / 1e6:.2f} ms (first start to last end): the GPU idle inside it "
            f"{idle_ns / 1e6:.2f} ms ({100 * idle_ns / step_ns:.1f}% of the step) in {len(spaces)} spaces; ")
    if traced_step_ns is None:
        print(span + f"the step minus the span (the host before the first launch and after the last) "
              f"{(step_ns - span_ns) / 1e6:.2f} ms ({100 * (step_ns - span_ns) / step_ns:.1f}%).")
    else:
        outside_ns, off_median_ns = traced_step_ns - span_ns, traced_step_ns - step_ns
        print(span + f"the traced step took {traced_step_ns / 1e6:.2f} ms on the host's clock, of which "
              f"{outside_ns / 1e6:.2f} ms ({100 * outside_ns / traced_step_ns:.1f}%) lay outside the span (the "
              f"host before the first launch and after the last), and {abs(off_median_ns) / 1e6:.2f} ms "
              f"{'more' if off_median_ns >= 0 else 'less'} than the unprofiled median.")
    print()
    print(f"Longest {top} idle spaces:")
    print()
    print("| idle us | after this ended | until this started |")
    print("| --- | --- | --- |")
    for ns, before, after in sorted(spaces, key=lambda space: -space[0])[:top]:
        print(f"| {ns / 1e3:.1f} | `{trace_label(before)}` | `{trace_label(after)}` |")


def trace_label(record):
    kind, _, _, name = record
    return short_name(name)[:60] if kind == "kernel" else f"{kind} {name}"


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
    parser.add_argument("--trace", help="the same step traced without ncu (dev/bench/kernel_trace.cpp)")
    parser.add_argument("--traced-step-ms", type=float,
                        help="the traced step's own time on the host's clock (its run's 'bench step' line)")
    args = parser.parse_args()
    if args.traced_step_ms is not None and not args.trace:
        parser.error("--traced-step-ms goes with --trace (it is the traced step's time)")

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
    if args.trace:
        traced_step_ns = args.traced_step_ms * 1e6 if args.traced_step_ms is not None else None
        print_trace_split(read_trace(args.trace), {group: ns for group, (ns, _) in by_group.items()}, step_ns,
                          traced_step_ns, top=10)


if __name__ == "__main__":
    main()
