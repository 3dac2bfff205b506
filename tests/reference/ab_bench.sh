#!/usr/bin/env bash
# Two builds of attnlab measured side by side in one run, the way a change's speed is shown here
# (medians and ratios from one run on one machine): the same benchmarks in rounds, base and head
# taking turns (which goes first alternates by round, so a drifting machine favours neither),
# every run's CSV kept under OUT_DIR/csv, then OUT_DIR/ab.md: each benchmark's figures by round,
# their medians and head / base (ab_summary.py).
#
#   bash tests/reference/ab_bench.sh OUT_DIR BASE [--rounds N] -- BENCH_ARGS... [-- BENCH_ARGS...]...
#
# Run from the repository root of the head build (./attnlab built). BASE is a directory holding
# the other build (its own ./attnlab), or a patch of the head against the base (`git diff BASE_REV
# -- core variants experiments Makefile`): the script copies this tree to OUT_DIR/base, reverse-
# applies the patch there and builds it with $BUILD (default `make cuda`; the copy keeps this
# tree's objects, so only what the patch touches is compiled again). A patch is what a machine
# without the history (a lent GPU host) can be given. Each BENCH_ARGS is an `attnlab bench` command
# line without --csv, e.g. `train --set device=cuda --set model.mixer=mla --steps 30`. Stops at
# the first failing step, naming it.
set -euo pipefail
usage="usage: ab_bench.sh OUT_DIR BASE [--rounds N] -- BENCH_ARGS... [-- BENCH_ARGS...]..."
die() { echo "ab_bench.sh: $1" >&2; exit "${2:-1}"; }
[ $# -ge 2 ] || die "$usage" 2
out=$1 base=$2
case "$base" in -*) die "BASE $base: expected the base build's directory or a patch file after OUT_DIR $out" 2 ;; esac
shift 2
rounds=2
if [ "${1:-}" = --rounds ]; then
    [ $# -ge 2 ] || die "$usage" 2
    rounds=$2
    shift 2
fi
[[ "$rounds" =~ ^[1-9][0-9]?$ ]] || die "--rounds $rounds: expected a whole number from 1 to 99" 2
[ "${1:-}" = -- ] || die "$usage" 2
shift
benches=() labels=() # each an argument list, quoted for eval, and as it reads
cur='' label=''
for a in "$@"; do
    if [ "$a" = -- ]; then
        benches+=("$cur") labels+=("$label")
        cur='' label=''
    else
        cur+="${cur:+ }$(printf %q "$a")" label+="${label:+ }$a"
    fi
done
benches+=("$cur") labels+=("$label")
for i in "${!benches[@]}"; do
    [ -n "${benches[$i]}" ] || die "benchmark $((i + 1)) is empty: each -- must be followed by an attnlab bench command line" 2
    case " ${benches[$i]} " in *" --csv "*) die "benchmark $((i + 1)): leave --csv out (the script writes the CSVs)" 2 ;; esac
done
[ -x ./attnlab ] || die "no ./attnlab here: run from the head build's repository root" 2

mkdir -p "$out/csv"
out=$(cd "$out" && pwd)
rm -f "$out"/csv/*.csv "$out/ab.md"
if [ -d "$base" ]; then
    base_dir=$(cd "$base" && pwd)
elif [ -f "$base" ]; then
    patch_file=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")
    base_dir=$out/base
    rm -rf "$base_dir"
    mkdir -p "$base_dir"
    inside=$(realpath -m --relative-to=. "$out") # OUT_DIR itself is not copied where it lies in this tree
    case "$inside" in ../* | /*) skip=() ;; *) skip=(--exclude="./$inside") ;; esac
    tar "${skip[@]}" -cf - . | tar -xf - -C "$base_dir" || die "copying this tree to $base_dir failed"
    (cd "$base_dir" && patch -s -R -p1 <"$patch_file") >"$out/base_patch.txt" 2>&1 ||
        die "$base: the patch does not reverse-apply to this tree (see $out/base_patch.txt)"
    (cd "$base_dir" && eval "${BUILD:-make cuda}") >"$out/base_build.txt" 2>&1 ||
        die "building the base failed (see $out/base_build.txt)"
else
    die "BASE $base: neither a directory nor a patch file" 2
fi
[ -x "$base_dir/attnlab" ] || die "no attnlab in $base_dir (build it, or give a patch)" 2

head_dir=$(pwd)
printf '%s\n' "${labels[@]}" >"$out/benches.txt"
echo "$base_dir" >"$out/base_dir.txt"
run() { # run SIDE DIR BENCH ROUND
    local dir=$2 csv="$out/csv/${1}_$(($3 + 1))_$4.csv"
    echo "== round $4, benchmark $(($3 + 1)), $1" >>"$out/log.txt"
    eval "set -- ${benches[$3]}"
    (cd "$dir" && ./attnlab bench "$@" --csv "$csv") >>"$out/log.txt" 2>&1 ||
        die "attnlab bench $* failed in $dir (see $out/log.txt)"
}
for r in $(seq 1 "$rounds"); do
    for i in "${!benches[@]}"; do
        if [ $((r % 2)) = 1 ]; then
            run base "$base_dir" "$i" "$r"
            run head "$head_dir" "$i" "$r"
        else
            run head "$head_dir" "$i" "$r"
            run base "$base_dir" "$i" "$r"
        fi
    done
    echo "ab_bench.sh: round $r of $rounds done" >&2
done
python3 "$(dirname "$0")/ab_summary.py" "$out" >"$out/ab.md" || die "ab_summary.py failed"
cat "$out/ab.md"
