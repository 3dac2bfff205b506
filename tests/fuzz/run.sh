#!/bin/bash
# Runs each libFuzzer harness for a bounded time from its seed corpus of hostile files, then prints
# one line per harness: executions, corpus size, and whether it found anything. Fails on any crash,
# hang (a unit over 30 s), leak or sanitizer report.
# usage: tests/fuzz/run.sh SECONDS NAME...
set -u
cd "$(dirname "$0")/../.."
seconds=$1; shift
status=0
summary=()
for name in "$@"; do
    bin=build/fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    found=build/fuzz/found/$name
    log=build/fuzz/$name.log
    mkdir -p "$found"
    dict=(); [ -f tests/fuzz/$name.dict ] && dict=(-dict=tests/fuzz/$name.dict)
    extra=(); [ "$name" = config ] && extra=(configs) # the real configs are seeds too
    echo "fuzz $name: ${seconds}s from $(ls "$seeds" | wc -l) seed files"
    # the first corpus folder receives new inputs; the committed seeds stay as they are
    "$bin" "$found" "$seeds" "${extra[@]}" "${dict[@]}" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix=build/fuzz/crash-$name- >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [ $rc -ne 0 ]; then
        status=1
        summary+=("FAIL fuzz $name: exit $rc after ${execs:-?} executions (see $log and build/fuzz/crash-$name-*)")
        grep -m5 -E "ERROR|SUMMARY|runtime error" "$log"
    else
        summary+=("ok   fuzz $name: ${execs} executions in ${seconds}s, corpus $(ls "$found" | wc -l) new + $(ls "$seeds" | wc -l) seeds, no crash, hang, leak or sanitizer report")
    fi
done
printf '%s\n' "${summary[@]}"
exit $status
