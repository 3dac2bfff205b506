-- diagnostic: the CPU's learned single needle (4 layers of width 128, softmax, one number key,
-- 320 bytes, batch 16, lr 1e-3, answers only) on the GPU, and the same at 1,024 bytes and as a
-- 3:1 KDA/softmax hybrid: which of length and layout keeps the GPU presets' needle unlearned
return {
  experiment = "needle-probe",
  base = {
    out_dir = "results/gpu", device = "cuda", task = "needle", seed = 1,
    model = { d_model = 128, n_layers = 4, n_heads = 2, hybrid = { ratio = "0:1", linear = "kda", full = "softmax" } },
    needle = { keys = 1, queries = 1, key_format = "numbers", value_format = "numbers", train_targets = "answer" },
    train = { steps = 4000, batch_size = 16, seq_len = 320, lr = 1e-3, warmup_steps = 100,
              log_every = 20, eval_every = 0, checkpoint_every = 1000 },
    data = { path = "data/brown.txt" },
    eval = { max_batches = 16, examples = 200 },
  },
  grid = {
    ["model.hybrid.ratio"] = { "0:1", "3:1" },
    ["train.seq_len"] = { 320, 1024 },
  },
}
