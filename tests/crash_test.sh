#!/usr/bin/env bash
# Crash safety, by killing real processes:
#  - training: KILL_TRIALS runs (20 by default) are each SIGKILLed twice, at random moments or
#    (half the trials' first kill) the moment a checkpoint's temporary file appears, and
#    resumed; each must end with the uninterrupted run's parameters and AdamW moments bit for
#    bit, its losses and final numbers, a readable checkpoint after every kill, and no temporary
#    file left behind;
#  - a checkpoint write that fails (file-size limit) reports the error and keeps the previous one;
#  - sweeps: a sweep SIGKILLed at random moments and restarted never redoes a finished run,
#    resumes the others to the same result, and its summary.csv has one whole row per run.
# Prints "ok"/"FAIL" lines like the C runner.
set -u
cd "$(dirname "$0")/.."
A="$(realpath "${ATTNLAB:-$PWD/attnlab}")"
TMP=$(mktemp -d)
[ -n "${KEEP_TMP:-}" ] && echo "keeping $TMP" || trap 'rm -rf "$TMP"' EXIT
FILTER="${1:-}"
TRIALS=${KILL_TRIALS:-20}
TINY="$PWD/tests/data/tiny.txt"
RANDOM=${KILL_SEED:-20261123} # the kill moments are random, but the same in every run of the test

ok() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; }
selected() { [ -z "$FILTER" ] || [[ "$1" == *"$FILTER"* ]]; }

cat >"$TMP/train.lua" <<EOF
return {
  out_dir = "$TMP/results", experiment = "crash",
  model = { d_model = 64, n_layers = 2, n_heads = 2, vocab_size = 2048 }, -- a 6 MB checkpoint, written every step
  train = { steps = 12, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 4, checkpoint_every = 1,
            warmup_steps = 2 },
  data = { path = "$TINY", split_block = 1024 },
  eval = { max_batches = 2 },
}
EOF

# The tensors of a checkpoint (parameters and both AdamW moments), without the header, whose
# metadata holds wall-clock times.
tensor_digest() {
    local n
    n=$(od -An -t u8 -j0 -N8 "$1" | tr -d ' ')
    tail -c +$((9 + n)) "$1" | sha256sum | cut -c1-16
}
# step and loss of every logged row
loss_rows() { grep -o '"step":[0-9]*,"loss":[^,}]*' "$1"; }
field() { grep -o "\"$2\":[^,]*" "$1" | head -1; } # field SUMMARY KEY: '"key":\tvalue'
now_ms() { date +%s%3N; }

# kill_at PID MS: SIGKILL the process after MS milliseconds (if still running); returns whether it was killed
kill_at() {
    local pid=$1 ms=$2
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 0
    fi
    wait "$pid" 2>/dev/null
    return 1
}

# kill_when_writing PID DIR: SIGKILL the process as soon as a checkpoint's temporary file appears
# in DIR (a busy wait in bash builtins, so it reacts within the write); returns whether it was killed
kill_when_writing() {
    local pid=$1 dir=$2
    while kill -0 "$pid" 2>/dev/null; do
        if compgen -G "$dir/checkpoint.safetensors.tmp.*" >/dev/null; then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 0
        fi
    done
    wait "$pid" 2>/dev/null
    return 1
}

if selected crash_kill_resume; then
    t0=$(now_ms)
    "$A" train "$TMP/train.lua" --set run=reference >"$TMP/ref.out" 2>&1
    duration=$(($(now_ms) - t0))
    ref_dir="$TMP/results/crash/reference"
    ref_digest=$(tensor_digest "$ref_dir/checkpoint.safetensors")
    ref_losses=$(loss_rows "$ref_dir/metrics.jsonl")
    ref_val=$(field "$ref_dir/summary.json" val_loss)
    kills=0 mid_write=0 torn=0 bad=()
    for i in $(seq 1 "$TRIALS"); do
        run="trial$i"
        dir="$TMP/results/crash/$run"
        trial_kills=0
        for round in 1 2 3 4; do # until two kills landed (a late kill may find the run finished)
            [ $trial_kills -ge 2 ] && break
            flags=()
            [ $round -gt 1 ] && flags=(--resume)
            "$A" train "$TMP/train.lua" --set run=$run "${flags[@]}" >>"$TMP/$run.out" 2>&1 &
            # odd trials: at a random moment; even trials' first kill: inside a checkpoint write
            if { [ $((i % 2)) -eq 0 ] && [ $round -eq 1 ] && kill_when_writing $! "$dir"; } ||
                { { [ $((i % 2)) -eq 1 ] || [ $round -gt 1 ]; } && kill_at $! $((RANDOM % (duration / round + 1))); }; then
                kills=$((kills + 1))
                trial_kills=$((trial_kills + 1))
                ls "$dir" 2>/dev/null | grep -q '^checkpoint\.safetensors\.tmp\.' && mid_write=$((mid_write + 1))
                # whatever checkpoint the kill left must be whole
                if [ -e "$dir/checkpoint.safetensors" ] && ! "$A" eval "$dir/checkpoint.safetensors" >/dev/null 2>>"$TMP/$run.out"; then
                    torn=$((torn + 1))
                    bad+=("$run: torn checkpoint after kill $round")
                fi
            fi
        done
        "$A" train "$TMP/train.lua" --set run=$run --resume >>"$TMP/$run.out" 2>&1 || bad+=("$run: resume failed: $(tail -1 "$TMP/$run.out")")
        [ -e "$dir/checkpoint.safetensors" ] || { bad+=("$run: no checkpoint"); continue; }
        [ "$(tensor_digest "$dir/checkpoint.safetensors")" = "$ref_digest" ] || bad+=("$run: parameters differ")
        [ "$(loss_rows "$dir/metrics.jsonl")" = "$ref_losses" ] || bad+=("$run: logged losses differ")
        [ "$(field "$dir/summary.json" status)" = "$(field "$ref_dir/summary.json" status)" ] || bad+=("$run: status $(field "$dir/summary.json" status)")
        [ "$(field "$dir/summary.json" val_loss)" = "$ref_val" ] || bad+=("$run: final val loss differs")
        leftover=$(ls "$dir" | grep '\.tmp\.')
        [ -z "$leftover" ] || bad+=("$run: temporary files left: $leftover")
    done
    echo "     ($TRIALS trials of a ${duration} ms run: $kills SIGKILLs, $mid_write of them during a checkpoint write, $torn torn checkpoints)"
    if [ ${#bad[@]} -eq 0 ] && [ "$kills" -ge "$TRIALS" ] && [ "$mid_write" -ge 1 ]; then
        ok crash_kill_resume_is_bit_identical
    else
        fail crash_kill_resume_is_bit_identical "${bad[*]:-$kills kills landed, $mid_write inside a checkpoint write}"
    fi
fi

if selected crash_killed_before_summary; then
    # the window between the final checkpoint and summary.json, made exact: a finished run's
    # summary put back to what it says while training
    dir="$TMP/results/crash/late"
    "$A" train "$TMP/train.lua" --set run=late >/dev/null 2>&1
    cp "$dir/summary.json" "$TMP/late-summary.json"
    sed -i 's/"status":	"finished"/"status":	"running"/' "$dir/summary.json"
    "$A" train "$TMP/train.lua" --set run=late --resume >"$TMP/late.out" 2>&1
    code=$?
    if [ $code -eq 0 ] && grep -q '"status":	"finished"' "$dir/summary.json" &&
        [ "$(field "$dir/summary.json" val_loss)" = "$(field "$TMP/late-summary.json" val_loss)" ] &&
        [ "$(field "$dir/summary.json" train_loss)" = "$(field "$TMP/late-summary.json" train_loss)" ] &&
        grep -q "finishing it" "$TMP/late.out"; then
        ok crash_killed_before_summary_is_finished_on_resume
    else
        fail crash_killed_before_summary_is_finished_on_resume "exit $code; $(grep -m2 -E 'status|val_loss' "$dir/summary.json" | tr '\n' ' ')"
    fi
fi

if selected crash_write_failure; then
    dir="$TMP/results/crash/full"
    "$A" train "$TMP/train.lua" --set run=full --set train.checkpoint_every=4 --stop-at 4 >/dev/null 2>&1
    before=$(tensor_digest "$dir/checkpoint.safetensors")
    # a file-size limit below the checkpoint's size: the next checkpoint write fails
    (ulimit -f 256 && exec "$A" train "$TMP/train.lua" --set run=full --set train.checkpoint_every=4 --resume) >"$TMP/full.out" 2>&1
    code=$?
    if [ $code -eq 1 ] && grep -q "^reason: cannot write '.*checkpoint.safetensors': File too large (the checkpoint of step 4 is kept)" "$TMP/full.out" &&
        grep -q '"status":	"failed"' "$dir/summary.json" && [ "$(tensor_digest "$dir/checkpoint.safetensors")" = "$before" ] &&
        "$A" eval "$dir/checkpoint.safetensors" 2>&1 | grep -q "(step 4)" && ! ls "$dir" | grep -q '\.tmp\.'; then
        ok crash_write_failure_keeps_the_previous_checkpoint
    else
        fail crash_write_failure_keeps_the_previous_checkpoint "exit $code; $(grep -m1 reason "$TMP/full.out")"
    fi
    # with room again, the run resumes from that checkpoint and ends as the uninterrupted one does
    "$A" train "$TMP/train.lua" --set run=full --set train.checkpoint_every=4 --resume >/dev/null 2>&1
    "$A" train "$TMP/train.lua" --set run=full-ref --set train.checkpoint_every=4 >/dev/null 2>&1
    if [ "$(tensor_digest "$dir/checkpoint.safetensors")" = "$(tensor_digest "$TMP/results/crash/full-ref/checkpoint.safetensors")" ]; then
        ok crash_write_failure_then_resume_is_bit_identical
    else
        fail crash_write_failure_then_resume_is_bit_identical "parameters differ"
    fi
fi

if selected crash_run_dir_lock; then
    "$A" train "$TMP/train.lua" --set run=locked --set train.steps=400 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do [ -e "$TMP/results/crash/locked/checkpoint.safetensors" ] && break; sleep 0.1; done
    "$A" train "$TMP/train.lua" --set run=locked --resume >"$TMP/lock.out" 2>&1
    code=$?
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ $code -eq 1 ] && grep -q "is in use by another attnlab process" "$TMP/lock.out"; then
        ok crash_second_process_cannot_train_into_a_busy_run
    else
        fail crash_second_process_cannot_train_into_a_busy_run "exit $code: $(tail -1 "$TMP/lock.out")"
    fi
fi

if selected crash_sweep; then
    cat >"$TMP/sweep.lua" <<EOF
return {
  experiment = "sweep",
  base = { out_dir = "$TMP/sweeps/\${SWEEP}", model = { d_model = 32, n_layers = 1, n_heads = 2 },
           train = { steps = 40, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 10, checkpoint_every = 1,
                     warmup_steps = 2 },
           data = { path = "$TINY", split_block = 1024 }, eval = { max_batches = 2 } },
  grid = { ["model.mixer"] = { "softmax", "linear", "gdn" }, seed = { 1, 2 } },
}
EOF
    sweep_cfg() { sed "s|\${SWEEP}|$1|" "$TMP/sweep.lua" >"$TMP/sweep-$1.lua"; echo "$TMP/sweep-$1.lua"; }
    t0=$(now_ms)
    "$A" run "$(sweep_cfg ref)" --jobs 2 >"$TMP/sweep-ref.out" 2>&1
    duration=$(($(now_ms) - t0))
    cfg=$(sweep_cfg killed)
    root="$TMP/sweeps/killed/sweep"
    bad=() kills=0 restarts=0
    # kills within the first fifth of an uninterrupted sweep's time: the first rounds cannot have
    # finished it, so at least three kills land whatever the machine's load
    for round in 1 2 3 4 5 6 7 8 9 10; do
        [ $kills -ge 4 ] && break
        # what had finished before this round must stay exactly as it is
        declare -A finished=()
        for s in "$root"/*/summary.json; do
            [ -e "$s" ] && grep -q '"status":	"finished"' "$s" && finished[$s]=$(sha256sum <"$s")$(stat -c %Y "$(dirname "$s")/checkpoint.safetensors")
        done
        setsid "$A" run "$cfg" --jobs 2 >>"$TMP/sweep-killed.out" 2>&1 &
        pid=$!
        restarts=$((restarts + 1))
        if kill_at $pid $((RANDOM % (duration / 5 + 1))); then
            kills=$((kills + 1))
            sleep 0.2 # the runs die with the sweep (their parent-death signal)
            pgrep -f "$cfg" >/dev/null && bad+=("round $round: a run outlived its sweep")
        fi
        for s in "${!finished[@]}"; do
            [ "$(sha256sum <"$s")$(stat -c %Y "$(dirname "$s")/checkpoint.safetensors")" = "${finished[$s]}" ] ||
                bad+=("round $round: finished run $(basename "$(dirname "$s")") was redone")
        done
        unset finished
    done
    "$A" run "$cfg" --jobs 2 >>"$TMP/sweep-killed.out" 2>&1 || bad+=("the last restart failed: $(tail -1 "$TMP/sweep-killed.out")")
    csv="$root/summary.csv"
    header_cols=$(head -1 "$csv" | awk -F, '{print NF}')
    [ "$(tail -n +2 "$csv" | wc -l)" -eq 6 ] || bad+=("summary.csv has $(tail -n +2 "$csv" | wc -l) rows, expected 6")
    # every row has the header's number of fields (quoted run names hold commas) and ends whole
    sed 's/"[^"]*"/x/g' "$csv" | awk -F, -v n="$header_cols" 'NF != n { exit 1 }' || bad+=("a torn row in summary.csv")
    [ -z "$(tail -c1 "$csv")" ] || bad+=("summary.csv does not end with a whole line")
    for d in "$TMP/sweeps/ref/sweep"/*/; do
        r=$(basename "$d")
        [ -e "$d/checkpoint.safetensors" ] || continue
        grep -q '"status":	"finished"' "$root/$r/summary.json" 2>/dev/null || bad+=("$r did not finish")
        [ "$(grep -c "^\"$r\"," "$csv")" -eq 1 ] || bad+=("$r has $(grep -c "^\"$r\"," "$csv") rows in summary.csv")
        [ "$(tensor_digest "$root/$r/checkpoint.safetensors" 2>/dev/null)" = "$(tensor_digest "$d/checkpoint.safetensors")" ] ||
            bad+=("$r: parameters differ from the uninterrupted sweep")
    done
    echo "     (a ${duration} ms sweep of 6 runs: $kills SIGKILLs over $restarts starts)"
    if [ ${#bad[@]} -eq 0 ] && [ $kills -ge 3 ]; then
        ok crash_sweep_restart_redoes_nothing_and_loses_nothing
    else
        fail crash_sweep_restart_redoes_nothing_and_loses_nothing "${bad[*]:-only $kills kills landed}"
    fi
fi
