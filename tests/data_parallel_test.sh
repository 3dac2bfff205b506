#!/usr/bin/env bash
# make test-data-parallel: `attnlab train --gpus N` on a machine with two or more GPUs (the GPU
# build, `make cuda`, with NCCL). Checks, each against the same run on one GPU:
#   - the loss curve of 2 GPUs in the fp32 matmul mode, per step, within 1e-5 (gradient
#     accumulation on, a KDA + MLA hybrid), and the validation losses;
#   - ranks started by hand with torchrun's variables give the launcher's curve;
#   - the same in the bf16 mode, within bf16 noise;
#   - a run stopped on 2 GPUs and resumed on 1 continues the same curve;
#   - SIGKILL of rank 1: the launcher and rank 0 stop within seconds, summary.json says failed
#     and which rank went, and --resume on 2 GPUs finishes the run; SIGKILL of rank 0: the
#     launcher says so and --resume goes on from the last checkpoint;
#   - Ctrl-C (SIGINT to the launcher): every rank stops at the same step, checkpointed, status 130.
# Without two GPUs every check reports itself skipped, with the reason. Prints ok/FAIL/skip lines.
set -u
A="$(realpath "${ATTNLAB:-$PWD/attnlab}")"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 skip=0
ok() { echo "ok   data_parallel $1"; pass=$((pass + 1)); }
bad() { echo "FAIL data_parallel $1: $2"; fail=$((fail + 1)); }

gpus=$(ls /proc/driver/nvidia/gpus 2>/dev/null | wc -l)
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then gpus=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .); fi
if [ "$gpus" -lt 2 ]; then
    for t in fp32_curve torchrun_variables bf16_curve resume_on_one_gpu kill_one_rank kill_rank_zero ctrl_c; do
        echo "skip data_parallel $t: needs 2 GPUs, this machine shows $gpus"; skip=$((skip + 1))
    done
    echo "data-parallel tests: $pass passed, $fail failed, $skip skipped"
    exit 0
fi

# a small KDA + MLA hybrid on the Brown corpus (data/brown.txt), micro-batches of 8, 2 accumulated
cat >"$T/dp.lua" <<'EOF2'
return {
  device = "cuda",
  model = { d_model = 128, n_layers = 2, n_heads = 2, hybrid = { ratio = "1:1", linear = "kda", full = "mla" } },
  train = { steps = 40, batch_size = 8, grad_accum = 2, seq_len = 128, lr = 3e-3, warmup_steps = 5,
            log_every = 1, eval_every = 20, checkpoint_every = 10 },
  eval = { max_batches = 4 },
  data = { path = "data/brown.txt" },
}
EOF2

# the largest |difference| of field $3 between two metrics.jsonl files, rows matched by step
max_diff() {
    python3 - "$1" "$2" "$3" <<'EOF2'
import json, sys
def rows(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if r.get(sys.argv[3]) is not None}
a, b = rows(sys.argv[1]), rows(sys.argv[2])
steps = sorted(set(a) & set(b))
if not steps or set(a) != set(b):
    print("steps differ: %d vs %d rows" % (len(a), len(b))); sys.exit(0)
print("%.3g" % max(abs(a[s][sys.argv[3]] - b[s][sys.argv[3]]) for s in steps))
EOF2
}
field() { python3 -c "import json; print(json.load(open('$1')).get('$2'))" 2>/dev/null; }
within() { python3 -c "import sys; sys.exit(0 if float('$1') <= float('$2') else 1)" 2>/dev/null; }

# fp32 matmuls: the ranks sum the same gradients as one GPU, in another order
ATTNLAB_CUDA_MATMUL=fp32 "$A" train "$T/dp.lua" --out "$T/one32" >"$T/one32.log" 2>&1
ATTNLAB_CUDA_MATMUL=fp32 "$A" train "$T/dp.lua" --out "$T/two32" --gpus 2 >"$T/two32.log" 2>&1
code=$?
d=$(max_diff "$T/one32/metrics.jsonl" "$T/two32/metrics.jsonl" loss)
v=$(max_diff "$T/one32/metrics.jsonl" "$T/two32/metrics.jsonl" val_loss)
echo "     fp32: largest loss difference over 40 steps $d, validation $v"
if [ $code -ne 0 ]; then bad fp32_curve "exit $code: $(tail -3 "$T/two32.log")"
elif within "$d" 1e-5 && within "$v" 1e-5 && [ "$(field "$T/two32/summary.json" data_parallel)" = 2 ]; then ok fp32_curve
else bad fp32_curve "loss difference $d, validation $v (expected <= 1e-5), summary: $(cat "$T/two32/summary.json" | head -c 300)"; fi

# the ranks started by hand with torchrun's variables (as torchrun or a script would): each picks
# its GPU by LOCAL_RANK; the curve is the launcher's
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
for r in 1 0; do
    env -u CUDA_VISIBLE_DEVICES ATTNLAB_CUDA_MATMUL=fp32 WORLD_SIZE=2 RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port "$A" train "$T/dp.lua" --out "$T/torchrun" >"$T/torchrun$r.log" 2>&1 &
done
wait
d=$(max_diff "$T/two32/metrics.jsonl" "$T/torchrun/metrics.jsonl" loss)
if within "$d" 1e-6 && [ "$(field "$T/torchrun/summary.json" status)" = finished ]; then ok torchrun_variables
else bad torchrun_variables "loss difference to the launcher's run $d; $(tail -2 "$T/torchrun0.log" "$T/torchrun1.log")"; fi

# bf16 tensor cores: the products round differently with half the batch; bf16 noise
"$A" train "$T/dp.lua" --out "$T/one16" >"$T/one16.log" 2>&1
"$A" train "$T/dp.lua" --out "$T/two16" --gpus 2 >"$T/two16.log" 2>&1
code=$?
d=$(max_diff "$T/one16/metrics.jsonl" "$T/two16/metrics.jsonl" loss)
echo "     bf16: largest loss difference over 40 steps $d"
if [ $code -eq 0 ] && within "$d" 2e-2; then ok bf16_curve; else bad bf16_curve "exit $code, loss difference $d (expected <= 2e-2)"; fi

# stopped on 2 GPUs at step 10, resumed on 1: the same curve as one GPU all along
export ATTNLAB_CUDA_MATMUL=fp32
"$A" train "$T/dp.lua" --out "$T/mixed" --gpus 2 --stop-at 10 >"$T/mixed1.log" 2>&1
"$A" train "$T/dp.lua" --out "$T/mixed" --resume >"$T/mixed2.log" 2>&1
code=$?
d=$(max_diff "$T/one32/metrics.jsonl" "$T/mixed/metrics.jsonl" loss)
v=$(max_diff "$T/one32/metrics.jsonl" "$T/mixed/metrics.jsonl" val_loss)
if [ $code -eq 0 ] && within "$d" 1e-5 && within "$v" 1e-5 && [ "$(field "$T/mixed/summary.json" status)" = finished ]; then ok resume_on_one_gpu
else bad resume_on_one_gpu "exit $code, loss difference to one GPU $d, validation $v: $(tail -2 "$T/mixed2.log")"; fi

# a rank killed: the others stop, rank 0 records why, --resume finishes
rank_pid() { pgrep -P "$1" -x "attnlab-rank$2"; } # the pid of rank $2 among the launcher $1's children
"$A" train "$T/dp.lua" --out "$T/killed" --gpus 2 --set train.steps=400 >"$T/killed.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ -s "$T/killed/metrics.jsonl" ] && [ "$(wc -l <"$T/killed/metrics.jsonl")" -ge 15 ] && break; sleep 0.1; done
victim=$(rank_pid $launcher 1)
t0=$(date +%s.%N)
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher
code=$?
took=$(python3 -c "import time; print('%.1f' % (time.time() - $t0))")
reason=$(python3 -c "import json; s = json.load(open('$T/killed/summary.json')); print(s['status'], '|', s['reason'])" 2>&1)
echo "     kill -9 of rank 1: the run stopped in ${took}s: $reason"
if [ -z "$victim" ]; then bad kill_one_rank "no rank 1 found among the launcher's children"
elif [ $code -eq 1 ] && [[ "$reason" == "failed | rank 1 of 2 stopped"* ]] && within "$took" 30 && ! pgrep -P $launcher >/dev/null; then
    "$A" train "$T/dp.lua" --out "$T/killed" --gpus 2 --set train.steps=400 --resume >"$T/killed2.log" 2>&1
    if [ $? -eq 0 ] && [ "$(field "$T/killed/summary.json" status)" = finished ]; then ok kill_one_rank
    else bad kill_one_rank "resume after the kill: $(tail -3 "$T/killed2.log")"; fi
else bad kill_one_rank "exit $code after ${took}s, summary: $reason; log: $(tail -3 "$T/killed.log")"; fi

# rank 0 killed: the launcher says so (rank 0 cannot), rank 1 stops, --resume goes on from the checkpoint
"$A" train "$T/dp.lua" --out "$T/killed0" --gpus 2 --set train.steps=400 >"$T/killed0.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ -s "$T/killed0/metrics.jsonl" ] && [ "$(wc -l <"$T/killed0/metrics.jsonl")" -ge 15 ] && break; sleep 0.1; done
victim=$(rank_pid $launcher 0)
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher
code=$?
said=$(grep "rank 0" "$T/killed0.log")
if [ -n "$victim" ] && [ $code -eq 1 ] && [[ "$said" == *"data-parallel rank 0 (GPU "*") was killed by SIGKILL; the other ranks stopped"* ]]; then
    "$A" train "$T/dp.lua" --out "$T/killed0" --gpus 2 --set train.steps=400 --resume >"$T/killed0b.log" 2>&1
    if [ $? -eq 0 ] && [ "$(field "$T/killed0/summary.json" status)" = finished ]; then ok kill_rank_zero
    else bad kill_rank_zero "resume after the kill: $(tail -3 "$T/killed0b.log")"; fi
else bad kill_rank_zero "victim '$victim', exit $code, launcher said '$said'"; fi

# Ctrl-C: SIGINT to the launcher, passed once to every rank; they stop together, checkpointed
"$A" train "$T/dp.lua" --out "$T/int" --gpus 2 --set train.steps=400 >"$T/int.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ -s "$T/int/metrics.jsonl" ] && [ "$(wc -l <"$T/int/metrics.jsonl")" -ge 15 ] && break; sleep 0.1; done
kill -INT $launcher
wait $launcher
code=$?
reason=$(python3 -c "import json; s = json.load(open('$T/int/summary.json')); print(s['status'], '|', s['reason'])" 2>&1)
if [ $code -eq 130 ] && [[ "$reason" == "interrupted | SIGINT at step"* ]]; then ok ctrl_c
else bad ctrl_c "exit $code, summary: $reason; log: $(tail -3 "$T/int.log")"; fi

echo "data-parallel tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
