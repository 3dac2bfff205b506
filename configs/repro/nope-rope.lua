-- NoPE against RoPE in the full-attention (MLA) layers of a 3:1 KDA/MLA hybrid, evaluated at 1x,
-- 2x, 4x and 8x the training length (Kimi Linear report: NoPE MLA at least as good as RoPE at
-- long context; KDA's decays carry the position information).
-- NoPE is Kimi Linear's: the same MLA layer without the rotation. Each position encoding gets the
-- best of four learning rates by mean validation loss over its three seeds (select below).
-- CPU default: about 30 minutes on 2 cores (make repro-nope-rope JOBS=2).
return {
  experiment = "nope-rope",
  base = {
    task = "lm",
    model = {
      d_model = 64, n_layers = 8, n_heads = 2,
      hybrid = { ratio = "3:1", linear = "kda", full = "mla" },
    },
    train = { steps = 1200, batch_size = 8, seq_len = 128, warmup_steps = 60,
              log_every = 20, eval_every = 0, checkpoint_every = 200 },
    data = { path = "data/brown.txt" },
    eval = { max_batches = 16, max_length_factor = 8 },
  },
  grid = {
    ["model.mla.position"] = { "nope", "rope" },
    ["train.lr"] = { 1e-3, 2e-3, 4e-3, 8e-3 },
    seed = { 1, 2, 3 },
  },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },
}
