#!/usr/bin/env bash
# make check-valgrind: a short training run (a 3:1 KDA/MLA hybrid, with checkpoints, evaluation
# and a resume) and a short sweep under valgrind memcheck. Passes when memcheck reports no error
# and no definitely lost block; prints "ok"/"FAIL" lines like the other runners.
set -u
cd "$(dirname "$0")/.."
A="$(realpath "${ATTNLAB:-$PWD/attnlab}")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# valgrind would not follow the restart of backend_cpu_pick_kernels: name the kernels here
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes)
command -v valgrind >/dev/null || { echo "FAIL valgrind is not installed (make deps)"; exit 1; }

cat >"$TMP/run.lua" <<LUA
return {
  out_dir = "$TMP/results", threads = 1,
  model = { d_model = 32, n_layers = 4, n_heads = 2, hybrid = { ratio = "3:1", linear = "kda", full = "mla" } },
  train = { steps = 4, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 2, checkpoint_every = 2 },
  data = { path = "$PWD/tests/data/tiny.txt", split_block = 1024 },
  eval = { max_batches = 1 },
}
LUA
cat >"$TMP/sweep.lua" <<LUA
return {
  experiment = "vg",
  base = { out_dir = "$TMP/results", threads = 1, model = { d_model = 16, n_layers = 1, n_heads = 2 },
           train = { steps = 2, batch_size = 2, seq_len = 16, eval_every = 2 },
           data = { path = "$PWD/tests/data/tiny.txt", split_block = 1024 }, eval = { max_batches = 1 } },
  grid = { ["model.mixer"] = { "gdn", "softmax" } },
}
LUA
status=0
check() { # check NAME CMD...: runs CMD under memcheck
    local name=$1
    shift
    if "${VG[@]}" "$@" >"$TMP/out" 2>"$TMP/err"; then
        echo "ok   valgrind_$name"
    else
        echo "FAIL valgrind_$name (exit $?): $(grep -m3 -E '==[0-9]+==' "$TMP/err" | tr '\n' ' ')"
        status=1
    fi
}
check train "$A" train "$TMP/run.lua" --stop-at 2
check resume "$A" train "$TMP/run.lua" --resume
check sweep "$A" run "$TMP/sweep.lua"
check plot "$A" plot "$TMP/results/vg"
exit $status
