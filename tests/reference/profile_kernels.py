#!/usr/bin/env python3
"""Where a GPU command's time goes, kernel by kernel (issue 13's profile summary): runs the command
under Nsight Compute (ncu, in the CUDA toolkit), which times every kernel alone, and sums the times
by kernel and by kind of work.

    python3 tests/reference/profile_kernels.py --out DIR --per 3 -- \\
        ./attnlab bench train --set device=cuda ... --steps 1

--per divides the sums (bench train runs 2 warm-up steps before its N: --steps 1 runs 3). Writes
DIR/ncu.csv (ncu's raw rows) and DIR/profile.md: the time per kind of work and the 15 costliest
kernels, in ms per --per unit and as shares of the summed kernel time. Kernels run back to back
under ncu, so the sum leaves out launch gaps and overlap: compare it with the command's own
timing to see how much of a step is the GPU waiting for the host. --from-csv FILE re-summarizes
an earlier ncu.csv without a GPU. Standard library only."""
import argparse
import csv
import os
import re
import subprocess
import sys
from collections import defaultdict

# kinds of work by kernel name, first match wins. cuBLAS's kernels are named *gemm*, nvjet_*,
# gemv*, dot_kernel, reduce_*, and for small or batched products plainly "kernel" or "Kernel2";
# the cuBLAS products inside the chunkwise cores count as matmuls, and so do our own few-row
# products (gemv_kernel, core/cuda/gemv.cu).
KINDS = [
    ("matmuls (cuBLAS, gemv.cu)", r"nvjet|gemm|gemv|xmma|cutlass|splitKreduce|cublas|^dot_kernel|^reduce_1Block|^[kK]ernel\d*$"),
    ("softmax attention", r"^(flash_|attention_|decode_softmax|decode_split|decode_combine)"),
    ("linear-time cores (besides their matmuls)", r"^(chunk|delta|dplr_|state_|gates_|pairs|scale_rows|beta_grad|"
     r"finish_grads|sum_channels|to_chunks|from_chunks|mask_upper|unit_lower|dblast|exclusive_|lin_|rec_)"),
    ("LM head cross-entropy (besides its matmuls)", r"^xent"),
    ("optimizer", r"^(adamw|sum_squares)"),
    ("norms", r"^(rmsnorm|l2norm)"),
    ("other elementwise", r"."),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return KINDS[-1][0]


def read_ncu_csv(path):
    """(kernel name, ms) per launch from ncu --csv --page raw output."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages are unquoted
    rows = list(csv.reader(lines))
    if not rows:
        sys.exit(f"profile_kernels.py: {path}: no ncu rows (did ncu profile any kernel?)")
    head = rows[0]
    try:
        name_col, time_col = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
    except ValueError:
        sys.exit(f"profile_kernels.py: {path}: expected columns 'Kernel Name' and 'gpu__time_duration.sum'")
    body = rows[1:]
    scale = 1e-6  # ns -> ms unless the units row says otherwise
    if body and not re.match(r"^[\d.,]+$", body[0][time_col]):
        unit = body[0][time_col]
        scale = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0, "second": 1e3,
                 "s": 1e3}.get(unit)
        if scale is None:
            sys.exit(f"profile_kernels.py: {path}: unknown time unit '{unit}'")
        body = body[1:]
    return [(r[name_col], float(r[time_col].replace(",", "")) * scale) for r in body]


def summarize(launches, per, title):
    total = sum(ms for _, ms in launches)
    by_kind, by_kernel, calls = defaultdict(float), defaultdict(float), defaultdict(int)
    for name, ms in launches:
        by_kind[kind_of(name)] += ms
        by_kernel[name] += ms
        calls[name] += 1
    out = [f"# {title}", "", f"{len(launches)} kernel launches, {total / per:.2f} ms of kernel time per unit "
           f"(sums over the run divided by {per}).", "", "| kind of work | ms | share |", "| --- | --- | --- |"]
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        out.append(f"| {kind} | {ms / per:.2f} | {100 * ms / total:.1f}% |")
    out += ["", "| kernel | launches | ms | share |", "| --- | --- | --- | --- |"]
    for name, ms in sorted(by_kernel.items(), key=lambda kv: -kv[1])[:15]:
        short = name if len(name) <= 70 else name[:67] + "..."
        out.append(f"| `{short}` | {calls[name] / per:g} | {ms / per:.2f} | {100 * ms / total:.1f}% |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for ncu.csv and profile.md")
    ap.add_argument("--per", type=float, default=1.0, help="divide the sums by this (steps the command ran)")
    ap.add_argument("--title", default="kernel profile")
    ap.add_argument("--from-csv", help="summarize this ncu.csv instead of running a command")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to profile")
    a = ap.parse_args()
    if a.per <= 0:
        sys.exit(f"profile_kernels.py: --per must be positive, got {a.per}")
    os.makedirs(a.out, exist_ok=True)
    raw = a.from_csv
    if raw is None:
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        if not cmd:
            sys.exit("profile_kernels.py: give the command to profile after --, or --from-csv FILE")
        raw = os.path.join(a.out, "ncu.csv")
        ncu = ["ncu", "--csv", "--page", "raw", "--metrics", "gpu__time_duration.sum", "--print-kernel-base",
               "function", "--cache-control", "none", "--clock-control", "none"]
        with open(raw, "w") as f:
            rc = subprocess.run(ncu + cmd, stdout=f).returncode
        if rc != 0:
            sys.exit(f"profile_kernels.py: ncu exited with {rc} (its rows so far are in {raw})")
    text = summarize(read_ncu_csv(raw), a.per, a.title)
    with open(os.path.join(a.out, "profile.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
