-- An example of each language-modelling figure (make reference-figures): KDA/MLA hybrids at three
-- ratios on the small test text, each at the better of two learning rates by mean validation loss
-- over two seeds, with perplexity at 2x and 4x the training length. Seconds on 2 cores; the
-- models are far too small and short-trained for the numbers to mean anything.
return {
  experiment = "figures-lm",
  base = {
    task = "lm",
    model = { d_model = 32, n_layers = 4, n_heads = 2, hybrid = { linear = "kda", full = "mla" },
              mla = { position = "nope" } },
    train = { steps = 120, batch_size = 4, seq_len = 64, warmup_steps = 10,
              log_every = 10, eval_every = 0, checkpoint_every = 0 },
    data = { path = "tests/data/tiny.txt", split_block = 1024 },
    eval = { max_batches = 4, max_length_factor = 4 },
  },
  grid = {
    ["model.hybrid.ratio"] = { "0:1", "1:1", "3:1" },
    ["train.lr"] = { 3e-3, 1e-2 },
    seed = { 1, 2 },
  },
  select = { metric = "val_loss", goal = "min", over = { "train.lr" } },
}
