#!/usr/bin/env bash
# Issue 13's GPU speed targets, every side measured in one run on the same GPU, into OUT_DIR:
# attnlab's kernels, training and decode beside PyTorch's SDPA, a PyTorch GPT (eager and
# torch.compile) and, with FLA=path/to/flash-linear-attention, fla's chunk_kda and
# chunk_gated_delta_rule and the training of 3:1 KDA/softmax and all-KDA models with fla's layers;
# then OUT_DIR/targets.md, the README's table (gpu_targets.py).
#   bash tests/reference/gpu_targets.sh OUT_DIR          (from the repository root, after make cuda)
# FLA_SHAPES=0 limits fla to the first shape (each kernel and shape compiles and autotunes for
# about 3 minutes). Stops at the first failing step, naming it.
set -euo pipefail
out=${1:?usage: gpu_targets.sh OUT_DIR}
mkdir -p "$out"
step() { echo "== $1" >&2; }
fail() { echo "gpu_targets.sh: $1 failed (see $out/log.txt)" >&2; exit 1; }
exec > >(tee -a "$out/log.txt") 2>&1
[ -x ./attnlab ] || { echo "gpu_targets.sh: no ./attnlab here: run from the repository root after make cuda" >&2; exit 2; }

step "attnlab kernels"
rm -f "$out/kernels.csv"
for core in kda gdn softmax; do
    ./attnlab bench kernels --set device=cuda --core $core --csv "$out/k_$core.csv" || fail "bench kernels --core $core"
done
{ head -1 "$out/k_kda.csv"; for core in kda gdn softmax; do tail -n +2 "$out/k_$core.csv"; done; } >"$out/kernels.csv"

step "PyTorch SDPA"
python3 tests/reference/bench_sdpa.py --csv "$out/sdpa.csv" || fail "bench_sdpa.py"

if [ -n "${FLA:-}" ]; then
    step "fla chunk_kda and chunk_gated_delta_rule"
    (cd tests/reference && PYTHONPATH="$FLA" python3 bench_fla.py --kernels kda,gdn --shapes "${FLA_SHAPES:-0,1}" \
        --csv "$out/fla.csv") || fail "bench_fla.py"
fi

step "attnlab training (12 layers, d_model 768, seq 2048, batch 8)"
rm -f "$out/train.csv"
shape=(--set device=cuda --set model.d_model=768 --set model.n_layers=12 --set model.n_heads=12
       --set train.seq_len=2048 --set train.batch_size=8)
./attnlab bench train "${shape[@]}" --set model.mixer=softmax --csv "$out/train.csv" || fail "bench train softmax"
./attnlab bench train "${shape[@]}" --set model.mixer=mla --csv "$out/train.csv" || fail "bench train mla"
./attnlab bench train "${shape[@]}" --set model.hybrid.ratio=3:1 --set model.hybrid.linear=kda \
    --set model.hybrid.full=mla --csv "$out/train.csv" || fail "bench train 3:1"

step "PyTorch GPT, the same layers (eager, torch.compile)"
python3 tests/reference/bench_torch_train.py --csv "$out/torch_train.csv" || fail "bench_torch_train.py"

if [ -n "${FLA:-}" ]; then
    # the same model with fla's KimiDeltaAttention as its linear layers (softmax as the full one,
    # since fla's MLA needs flash-attn): 3:1 and all KDA, beside attnlab's same layouts; eager
    # only, after a warm-up that covers Triton's autotuning. fla's side runs twice: its eager
    # steps have varied by up to 35% between runs on one machine (121,260 and 164,265 tok/s), so
    # the table takes the faster and names both
    step "attnlab and PyTorch + fla, 3:1 KDA/softmax and all KDA"
    for ratio in 3:1 1:0; do
        ./attnlab bench train "${shape[@]}" --set model.hybrid.ratio=$ratio --set model.hybrid.linear=kda \
            --set model.hybrid.full=softmax --csv "$out/train.csv" || fail "bench train $ratio KDA/softmax"
        for again in "" _again; do
            PYTHONPATH="$FLA" python3 tests/reference/bench_torch_train.py --ratio $ratio --modes eager --warmup 3 \
                --steps 10 --csv "$out/torch_fla_${ratio/:/_}$again.csv" || fail "bench_torch_train.py --ratio $ratio"
        done
    done
fi

step "attnlab decode (MLA against 3:1 KDA/MLA)"
./attnlab bench decode --set device=cuda --csv "$out/decode.csv" || fail "bench decode"

python3 tests/reference/gpu_targets.py "$out" >"$out/targets.md"
cat "$out/targets.md"
