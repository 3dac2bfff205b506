#!/usr/bin/env bash
# Data-parallel scaling (README, Data-parallel training): tokens/s of `attnlab train` at 12 layers,
# d_model 768, sequence 2048, 8 sequences per GPU (softmax and the 3:1 KDA/MLA hybrid), on 1 GPU
# and on N (default 2). Run from the repository root with the GPU build: bash tests/reference/data_parallel_scaling.sh 4
N=${1:-2}
for mix in softmax hybrid; do
  if [ $mix = softmax ]; then M='mixer = "softmax"'; else M='hybrid = { ratio = "3:1", linear = "kda", full = "mla" }'; fi
  for g in 1 $N; do
    cat > /tmp/scal.lua <<EOF2
return { device = "cuda", model = { d_model = 768, n_layers = 12, n_heads = 12, $M },
  train = { steps = 30, batch_size = $((8 * g)), seq_len = 2048, lr = 1e-3, warmup_steps = 5, log_every = 10,
            eval_every = 0, checkpoint_every = 0 }, eval = { max_batches = 1 }, data = { path = "data/brown.txt" } }
EOF2
    if [ $g = 1 ]; then ./attnlab train /tmp/scal.lua --out /tmp/scal_${mix}_$g > /tmp/scal_${mix}_$g.log 2>&1
    else ./attnlab train /tmp/scal.lua --out /tmp/scal_${mix}_$g --gpus $g > /tmp/scal_${mix}_$g.log 2>&1; fi
    echo "$mix gpus=$g: $(grep -o '"tokens_per_s": [0-9.e+]*' /tmp/scal_${mix}_$g/summary.json) $(tail -1 /tmp/scal_${mix}_$g/metrics.jsonl | head -c 200)"
    tail -2 /tmp/scal_${mix}_$g.log
  done
done
