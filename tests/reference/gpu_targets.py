#!/usr/bin/env python3
"""Issue 13's table of GPU speed targets from one run's CSV files (tests/reference/gpu_targets.sh
writes them into one folder, every side on the same GPU):

    python3 tests/reference/gpu_targets.py DIR > DIR/targets.md

Reads, where present: kernels.csv (`attnlab bench kernels --set device=cuda`), fla.csv
(bench_fla.py), sdpa.csv (bench_sdpa.py), train.csv (`attnlab bench train`), torch_train.csv
(bench_torch_train.py), torch_fla_3_1.csv and torch_fla_1_0.csv (bench_torch_train.py --ratio, fla's
KDA layers; with _again before .csv, a second run: the faster is taken and both are named), decode.csv (`attnlab bench decode`). A row whose measurement is missing
says so instead of a number. The ratio is always the time of the row's first side over the
second's (for throughput: the second's tokens/s over the first's; for memory: bytes over bytes),
so below 1x the first side is faster or smaller, and each target is written in those terms.
Standard library only."""
import csv
import math
import os
import sys

SHAPES = ["8,2048,8,64", "4,4096,16,128"]


def read(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def shape_of(row):
    return ",".join(row[k] for k in ("B", "T", "H", "D"))


def kernel_ms(rows, key, shape, column, **match):
    for r in rows:
        if shape_of(r) == shape and all(r.get(k) == v for k, v in match.items()):
            return num(r[column])
    return math.nan


def fmt(x, unit=""):
    if x is None:
        return "-"
    if math.isnan(x):
        return "not measured"
    if unit == "tok/s":
        return f"{x:,.0f} tok/s"
    if unit == "GiB":
        return f"{x / 2**30:.2f} GiB"
    return f"{x:.3f} ms" if unit == "ms" else f"{x:.3g}{unit}"


def verdict(value, bound, at_most=True):
    if math.isnan(value) or math.isnan(bound):
        return "-"
    return "met" if (value <= bound if at_most else value >= bound) else "not met"


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: gpu_targets.py DIR (the folder gpu_targets.sh wrote)")
    d = sys.argv[1]
    kernels, fla, sdpa = read(d, "kernels.csv"), read(d, "fla.csv"), read(d, "sdpa.csv")
    train, torch_train, decode = read(d, "train.csv"), read(d, "torch_train.csv"), read(d, "decode.csv")
    rows = []  # (what, attnlab, alternative, ratio, target, verdict)

    def add(what, ours, theirs, ratio, target, ok, unit="ms"):
        rows.append((what, fmt(ours, unit), fmt(theirs, unit), fmt(ratio, "x") if theirs is not None else "-", target, ok))

    for shape in SHAPES:
        for core, fla_kernel in (("kda", "kda"), ("gdn", "kda")):
            ours = kernel_ms(kernels, "core", shape, "fwd_bwd_ms", core=core, form="chunk64")
            theirs = kernel_ms(fla, "kernel", shape, "fwd_bwd_ms", kernel=fla_kernel)
            add(f"{core} chunk fwd+bwd ({shape}) vs fla chunk_{fla_kernel}", ours, theirs, ours / theirs, "<= 1x",
                verdict(ours, theirs))
        ours = kernel_ms(kernels, "core", shape, "fwd_ms", core="gdn", form="chunk64")
        theirs = kernel_ms(fla, "kernel", shape, "fwd_ms", kernel="gdn")
        add(f"gdn chunk fwd ({shape}) vs fla chunk_gated_delta_rule", ours, theirs, ours / theirs, "<= 1x",
            verdict(ours, theirs))
        ours = kernel_ms(kernels, "core", shape, "fwd_bwd_ms", core="softmax", form="flash")
        theirs = math.nan
        for r in sdpa:
            if shape_of(r) == shape:
                theirs = num(r["fwd_bwd_ms"])
        add(f"causal attention fwd+bwd ({shape}) vs SDPA", ours, theirs, ours / theirs, "<= 1.25x",
            verdict(ours, 1.25 * theirs))

    def layer_counts(mixers):  # "9 kda, 3 mla" -> {"kda": 9, "mla": 3}; "softmax" -> {"softmax": 1}
        counts = {}
        for part in mixers.split(","):
            words = part.split()
            counts[words[-1]] = int(words[0]) if len(words) == 2 else 1
        return counts

    def ours_train(mixers):  # mixers as bench train names them, or a ratio such as "3 kda, 1 mla"
        want = layer_counts(mixers)
        for r in train:
            have = layer_counts(r["mixers"])
            if have.keys() == want.keys():
                scale = {have[k] / want[k] for k in want}
                if len(scale) == 1:
                    return num(r["tokens_per_s"]), num(r.get("peak_bytes"))
        return math.nan, math.nan

    soft, soft_peak = ours_train("softmax")
    compiled = eager = peak_torch = math.nan
    for r in torch_train:
        if r["mode"] == "compile":
            compiled, peak_torch = num(r["tokens_per_s"]), num(r["peak_bytes"])
        elif r["mode"] == "eager":
            eager = num(r["tokens_per_s"])
            if math.isnan(peak_torch):
                peak_torch = num(r["peak_bytes"])
    add("train softmax vs PyTorch torch.compile", soft, compiled, compiled / soft, "<= 1x",
        verdict(soft, compiled, at_most=False), "tok/s")
    add("train softmax vs PyTorch eager", soft, eager, eager / soft, "(none)", "-", "tok/s")
    for mixers, share in (("mla", 0.85), ("3 kda, 1 mla", 0.75)):
        tps, _ = ours_train(mixers)
        add(f"train {mixers} vs our softmax", tps, soft, soft / tps, f"<= {1 / share:.2f}x ({share} of its tok/s)",
            verdict(tps, share * soft, at_most=False), "tok/s")
    add("train softmax peak memory vs PyTorch", soft_peak, peak_torch, soft_peak / peak_torch, "<= 1x",
        verdict(soft_peak, peak_torch), "GiB")
    for ratio, mixers, what in (("3_1", "3 kda, 1 softmax", "3:1 KDA/softmax"), ("1_0", "kda", "all KDA")):
        tps, peak = ours_train(mixers)
        runs = [r for name in (f"torch_fla_{ratio}.csv", f"torch_fla_{ratio}_again.csv") for r in read(d, name)
                if r["mode"] == "eager"]
        fla_tps = max((num(r["tokens_per_s"]) for r in runs), default=math.nan)
        fla_peak = min((num(r["peak_bytes"]) for r in runs), default=math.nan)
        what_fla = f"PyTorch + fla (eager{', faster of ' + ' and '.join(fmt(num(r['tokens_per_s']), 'tok/s') for r in runs) if len(runs) > 1 else ''})"
        add(f"train {what} vs {what_fla}", tps, fla_tps, fla_tps / tps, "(none)", "-", "tok/s")
        add(f"train {what} peak memory vs PyTorch + fla", peak, fla_peak, peak / fla_peak, "<= 1x",
            verdict(peak, fla_peak), "GiB")

    def decode_at(context, column):
        for r in decode:
            if r["context"] == str(context):
                return num(r[column])
        return math.nan

    one_k = decode_at(1024, "full_ms")
    add("decode a token at 1K context (MLA)", one_k, None, None, "< 0.5 ms", verdict(one_k, 0.5))
    full, hybrid = decode_at(131072, "full_ms"), decode_at(131072, "hybrid_ms")
    add("decode at 128K: 3:1 hybrid vs MLA", hybrid, full, hybrid / full, "<= 0.29x (3.5x faster)",
        verdict(hybrid / full, 1 / 3.5))

    print("| what | attnlab | alternative | ratio | target | |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
