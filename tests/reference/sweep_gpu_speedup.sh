#!/usr/bin/env bash
# A sweep over the GPUs of one machine (README, On the GPUs of one machine): a 16-run grid (4 layers
# d512 softmax and KDA, sequence 1024, 150 steps) on GPU 0 alone, then on every visible GPU.
# Run from the repository root with the GPU build.
N=$(nvidia-smi -L | wc -l)
rm -rf /tmp/spd
cat > /tmp/sw.lua <<EOF2
return { experiment = "spd", base = { device = "cuda", out_dir = "/tmp/spd", model = { d_model = 512, n_layers = 4, n_heads = 8 },
  train = { steps = 150, batch_size = 8, seq_len = 1024, log_every = 50, eval_every = 0, checkpoint_every = 0 },
  eval = { max_batches = 2 }, data = { path = "data/brown.txt" } },
  grid = { ["model.mixer"] = { "softmax", "kda" }, seed = { 1, 2, 3, 4, 5, 6, 7, 8 } } }
EOF2
t0=$(date +%s.%N); ./attnlab run /tmp/sw.lua --gpus 0 > /tmp/sw1.log 2>&1; t1=$(date +%s.%N)
rm -rf /tmp/spd
./attnlab run /tmp/sw.lua > /tmp/swN.log 2>&1; t2=$(date +%s.%N)
python3 -c "a=$t1-$t0; b=$t2-$t1; print('16-run sweep: 1 GPU %.1f s, %d GPUs %.1f s, speedup %.2fx' % (a, $N, b, a/b))"
tail -n 2 /tmp/sw1.log /tmp/swN.log; grep -h '"gpu"' /tmp/spd/spd/*/summary.json | sort | uniq -c
