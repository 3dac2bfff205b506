-- Hybrid ratio on language modelling (Kimi Linear report: 3:1 KDA:MLA best in validation
-- perplexity among 0:1, 1:1, 3:1, 7:1). kda layers with NoPE MLA full-attention layers, from all
-- attention (0:1) to all linear (1:0); 16 layers so that 15:1 has its one MLA layer.
-- Each ratio gets the best of four learning rates by mean validation loss over its two seeds
-- (select below). CPU default: about 75 minutes on 2 cores (make repro-hybrid-ratio JOBS=2).
return {
  experiment = "hybrid-ratio",
  base = {
    task = "lm",
    model = {
      d_model = 64, n_layers = 16, n_heads = 2,
      hybrid = { linear = "kda", full = "mla" },
      mla = { position = "nope" },
    },
    train = { steps = 400, batch_size = 8, seq_len = 128, warmup_steps = 40,
              log_every = 20, eval_every = 0, checkpoint_every = 100 },
    data = { path = "data/brown.txt" },
    eval = { max_batches = 32 },
  },
  grid = {
    ["model.hybrid.ratio"] = { "0:1", "1:1", "3:1", "7:1", "15:1", "1:0" },
    ["train.lr"] = { 1e-3, 2e-3, 4e-3, 8e-3 },
    seed = { 1, 2 },
  },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },
}
