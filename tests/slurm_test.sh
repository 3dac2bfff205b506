#!/usr/bin/env bash
# make test-slurm: `attnlab run SWEEP --slurm` against a real Slurm (Debian's slurm-wlm and munge),
# a one-node cluster on localhost started here and stopped at the end: the sweep is submitted as a
# job array, every task runs `attnlab run SWEEP --only N`, --status then reports every run
# finished, summary.csv has a row per run, and a second --slurm submits nothing; `srun` tasks of
# `attnlab train` read their data-parallel ranks from srun's variables. Needs root (the
# daemons run as root, as in a container) and slurmctld, slurmd, munged on the PATH or in
# /usr/sbin; `make setup` installs them. Prints "ok"/"FAIL" lines like the other suites.
set -u
A="$(realpath "${ATTNLAB:-$PWD/attnlab}")"
TINY="$PWD/tests/data/tiny.txt"
export PATH="$PATH:/usr/sbin:/sbin"
for tool in munged slurmctld slurmd sbatch squeue sinfo; do
    command -v $tool >/dev/null || { echo "FAIL slurm: $tool is not installed (make setup installs slurm-wlm and munge)"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "FAIL slurm: the test cluster's daemons need root (run as root, as CI does)"; exit 1; }
T=$(mktemp -d)
mkdir -p "$T/state" "$T/spool" "$T/munge" "$T/log"
export SLURM_CONF="$T/slurm.conf"
cat >"$SLURM_CONF" <<EOF2
ClusterName=attnlab-test
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF2
pids=()
cleanup() {
    scancel --quiet --name=attnlab-sw 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
# munge: its own socket and key copy, so a system munged (if any) is left alone
MUNGE_SOCKET="$T/munge/munge.socket"
cp /etc/munge/munge.key "$T/munge/munge.key" 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of="$T/munge/munge.key" 2>/dev/null
chmod 400 "$T/munge/munge.key"
munged --force --foreground --socket="$MUNGE_SOCKET" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/seed" >"$T/log/munged.out" 2>&1 &
pids+=($!)
printf 'AuthInfo=socket=%s\n' "$MUNGE_SOCKET" >>"$SLURM_CONF"
sleep 1
slurmctld -D -f "$SLURM_CONF" >"$T/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$T/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.5; done
if ! sinfo -h -o %t 2>/dev/null | grep -q idle; then
    echo "FAIL slurm: the test cluster did not come up: $(tail -3 "$T/log/slurmctld.log" "$T/log/slurmd.log" 2>/dev/null | tr '\n' '|')"
    exit 1
fi
cd "$T"
# sweep_file OUT_DIR GRID_AND_SELECT: a sweep of tiny runs, experiment "sw" (its array job is attnlab-sw)
sweep_file() {
    cat <<EOF2
return {
  experiment = "sw",
  base = { out_dir = "$1", model = { d_model = 32, n_layers = 1, n_heads = 2 },
    train = { steps = 4, batch_size = 2, seq_len = 32, log_every = 1, eval_every = 0, checkpoint_every = 2 }, threads = 1,
    data = { path = "$TINY", split_block = 1024 }, eval = { max_batches = 1 } },
  $2
}
EOF2
}
wait_array() { for _ in $(seq 240); do [ -z "$(squeue -h -n attnlab-sw 2>/dev/null)" ] && break; sleep 0.5; done; }
sweep_file "$T/results" 'grid = { seed = { 1, 2, 3, 4 } },' >sweep.lua
failed=0
check() { # check NAME CONDITION-STATUS DETAIL
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; failed=1; fi
}
"$A" run sweep.lua --only 2 >out0 2>&1 # one run already done: the array must leave it alone
before=$(sha256sum <"$T/results/sw/seed=2/summary.json")
"$A" run sweep.lua --slurm --cpus-per-run 1 >out1 2>&1
code=$?
grep -q "^#SBATCH --array=1,3,4$" "$T/results/sw/slurm/array.sbatch"
check slurm_submits_the_unfinished_runs $(( code != 0 || $? != 0 )) "exit $code: $(cat out1 | tr '\n' '|')"
wait_array
"$A" run sweep.lua --status >status 2>&1
grep -q "^total: 4 finished$" status
check slurm_array_finishes_every_run $? "$(tr '\n' '|' <status); $(cat "$T"/results/sw/logs/slurm-*.out 2>/dev/null | tail -3 | tr '\n' '|')"
rows=$(tail -n +2 "$T/results/sw/summary.csv" | grep -c ',finished,')
[ "$rows" -eq 4 ] && [ "$before" = "$(sha256sum <"$T/results/sw/seed=2/summary.json")" ]
check slurm_tasks_share_one_summary $? "$rows finished rows in summary.csv (the tasks wrote it in turn); run 2 redone?"
ls "$T"/results/sw/logs/slurm-*_1.out "$T"/results/sw/logs/slurm-*_4.out >/dev/null 2>&1
check slurm_task_logs_in_the_sweep_folder $? "$(ls "$T/results/sw/logs")"
"$A" run sweep.lua --slurm >out2 2>&1
grep -q "all 4 runs finished or running; nothing to submit" out2
check slurm_resubmits_nothing_when_done $? "$(cat out2)"
# select.tune_seeds: an array cannot wait for a choice its own tasks make, so the first
# submission holds the seed-1 runs, the second the chosen rate's seed 2, the third nothing
sweep_file "$T/results2" 'grid = { ["train.lr"] = { 1e-3, 3e-3 }, seed = { 1, 2 } },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" }, tune_seeds = { 1 } },' >tune.lua
"$A" run tune.lua --slurm --cpus-per-run 1 >tune1 2>&1
first=$(sed -n 's/^#SBATCH --array=//p' "$T/results2/sw/slurm/array.sbatch")
wait_array
"$A" run tune.lua --slurm --cpus-per-run 1 >tune2 2>&1
second=$(sed -n 's/^#SBATCH --array=//p' "$T/results2/sw/slurm/array.sbatch")
wait_array
"$A" run tune.lua --slurm >tune3 2>&1
"$A" run tune.lua --status >tune_status 2>&1
[ "$first" = "1,2" ] && grep -q "2 runs of other seeds wait for their settings' tuning runs" tune1 &&
    { [ "$second" = "3" ] || [ "$second" = "4" ]; } && grep -q "nothing to submit" tune3 &&
    grep -q "^total: 3 finished, 1 not chosen$" tune_status
check slurm_tune_seeds_submits_the_chosen_seeds_second $? "arrays '$first' then '$second'; $(cat tune1 tune2 tune3 tune_status | tr '\n' '|')"
# a data-parallel run under srun: each task reads its place from srun's variables
# (SLURM_STEP_NUM_TASKS, SLURM_PROCID); here on the CPU, where training over ranks is refused, so
# both tasks say which rank of how many they are
cat >one.lua <<EOF2
return { out_dir = "$T/results", model = { d_model = 32, n_layers = 1, n_heads = 2 },
  train = { steps = 2, batch_size = 2, seq_len = 32 }, data = { path = "$TINY", split_block = 1024 } }
EOF2
timeout 60 srun --ntasks=2 "$A" train one.lua >srun.out 2>&1
grep -q "this process is rank 0 of 2 (srun variables)" srun.out && grep -q "this process is rank 1 of 2 (srun variables)" srun.out
check slurm_srun_tasks_are_ranks $? "$(tr '\n' '|' <srun.out)"
# the same for a sweep's run, as the array task of a data-parallel sweep starts it
timeout 60 srun --ntasks=2 "$A" run sweep.lua --only 1 >srun2.out 2>&1
grep -q "this process is rank 0 of 2 (srun variables), and data-parallel training runs on GPUs: run 1 of" srun2.out &&
    grep -q "this process is rank 1 of 2 (srun variables)" srun2.out
check slurm_srun_tasks_of_a_sweep_run_are_ranks $? "$(tr '\n' '|' <srun2.out)"
# the batch script of a 2-task job is one process, not a rank: `train` there trains alone
timeout 120 sbatch --wait --ntasks=2 --output="$T/batch.out" --wrap "'$A' train one.lua --out '$T/batchrun'" >/dev/null 2>&1
grep -q '"status":[[:space:]]*"finished"' "$T/batchrun/summary.json" 2>/dev/null
check slurm_batch_script_trains_alone $? "$(tail -3 "$T/batch.out" 2>/dev/null | tr '\n' '|')"
exit $failed
