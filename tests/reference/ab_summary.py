"""The table of an ab_bench.sh run: every benchmark's figures by round for the base and the head
build, their medians and head / base, as markdown.

    python3 tests/reference/ab_summary.py OUT_DIR      (ab_bench.sh runs it)

Reads OUT_DIR/csv/{base,head}_BENCH_ROUND.csv (what `attnlab bench ... --csv` wrote) and
OUT_DIR/benches.txt (the benchmarks' command lines, one a line). A CSV's columns say which
benchmark wrote it: train (tokens/s, peak memory; higher tokens/s is faster), kernels (a row per
core, form and shape; ms, lower is faster) or decode (a row per context; ms)."""
import csv
import glob
import os
import re
import statistics
import sys

# by the column that marks a benchmark's CSV: the columns naming a row, and the figures compared
# (column, label)
KINDS = [
    ("tokens_per_s", ["mixers"], [("tokens_per_s", "tokens/s"), ("peak_bytes", "peak MiB")]),
    ("fwd_bwd_ms", ["core", "form", "B", "T", "H", "D"], [("fwd_ms", "fwd ms"), ("fwd_bwd_ms", "fwd+bwd ms")]),
    ("hybrid_ms", ["context"], [("full_ms", "full ms"), ("hybrid_ms", "hybrid ms")]),
]


def fail(msg):
    sys.exit(f"ab_summary.py: {msg}")


def read_runs(out):
    """{bench: {side: {round: rows}}} from the CSV files' names"""
    runs = {}
    for path in glob.glob(os.path.join(out, "csv", "*.csv")):
        m = re.fullmatch(r"(base|head)_(\d+)_(\d+)\.csv", os.path.basename(path))
        if not m:
            fail(f"{path}: not a name ab_bench.sh writes (SIDE_BENCH_ROUND.csv)")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            fail(f"{path}: no rows")
        runs.setdefault(int(m[2]), {}).setdefault(m[1], {})[int(m[3])] = rows
    if not runs:
        fail(f"no CSV files in {out}/csv")
    return runs


def kind_of(rows, path_hint):
    for marker, keys, metrics in KINDS:
        if marker in rows[0]:
            return keys, metrics
    fail(f"benchmark {path_hint}: columns {list(rows[0])} are none of bench train's, kernels' or decode's")


def number(row, col):
    v = float(row[col])
    return v / 2**20 if col == "peak_bytes" else v


def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ab_summary.py OUT_DIR")
    out = sys.argv[1]
    runs = read_runs(out)
    with open(os.path.join(out, "benches.txt")) as f:
        benches = [line.rstrip("\n") for line in f]
    print("# A/B: head against base, one run on one machine\n")
    print("Medians of the rounds; head / base above 1 means the head is higher (faster for tokens/s,")
    print("slower for ms).\n")
    for b in sorted(runs):
        sides = runs[b]
        if set(sides) != {"base", "head"} or sorted(sides["base"]) != sorted(sides["head"]):
            fail(f"benchmark {b}: base and head ran different rounds")
        rounds = sorted(sides["base"])
        keys, metrics = kind_of(sides["base"][rounds[0]], b)
        device = sides["base"][rounds[0]][0].get("device", "?")
        print(f"## {b}: `attnlab bench {benches[b - 1] if b <= len(benches) else '?'}` ({device}, "
              f"{len(rounds)} round{'s' if len(rounds) > 1 else ''})\n")
        print("| row | figure | base by round | head by round | base | head | head / base |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        row_keys = [tuple(r[k] for k in keys) for r in sides["base"][rounds[0]]]
        for key in row_keys:
            for col, label in metrics:
                vals = {}
                for side in ("base", "head"):
                    vals[side] = []
                    for rd in rounds:
                        match = [r for r in sides[side][rd] if tuple(r[k] for k in keys) == key]
                        if len(match) != 1:
                            fail(f"benchmark {b}, round {rd}, {side}: {len(match)} rows for {key}")
                        if match[0].get(col, "") == "":
                            break
                        vals[side].append(number(match[0], col))
                if len(vals["base"]) != len(rounds) or len(vals["head"]) != len(rounds):
                    continue  # a figure this device does not report (e.g. no peak on the CPU)
                mb, mh = statistics.median(vals["base"]), statistics.median(vals["head"])
                ratio = f"{mh / mb:.3f}" if mb else "-"
                print(f"| {' '.join(key)} | {label} | {' / '.join(fmt(v) for v in vals['base'])} | "
                      f"{' / '.join(fmt(v) for v in vals['head'])} | {fmt(mb)} | {fmt(mh)} | {ratio} |")
        print()


if __name__ == "__main__":
    main()
