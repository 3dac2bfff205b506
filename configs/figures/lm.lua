-- An example of each language-modelling figure (make reference-figures): configs/repro/hybrid-ratio.lua
-- shrunk to seconds on 2 cores: 4 layers of width 32 on the small test text, three ratios, two
-- learning rates, two seeds, and perplexity at 2x and 4x the training length. Far too small and
-- short-trained for the numbers to mean anything.
local c = require("repro.hybrid-ratio")
c.experiment = "figures-lm"
c.base.model.d_model, c.base.model.n_layers = 32, 4
c.base.train = { steps = 120, batch_size = 4, seq_len = 64, warmup_steps = 10,
                 log_every = 10, eval_every = 0, checkpoint_every = 0 }
c.base.data = { path = "tests/data/tiny.txt", split_block = 1024 }
c.base.eval = { max_batches = 4, max_length_factor = 4 }
c.grid = { ["model.hybrid.ratio"] = { "0:1", "1:1", "3:1" }, ["train.lr"] = { 3e-3, 1e-2 }, seed = { 1, 2 } }
return c
