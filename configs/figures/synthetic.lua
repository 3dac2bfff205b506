-- An example of each synthetic-task figure (make reference-figures): configs/repro/synthetic.lua
-- shrunk to seconds on 2 cores: lengths 32 and 64, softmax attention against GDN, width 32, two
-- learning rates, two seeds, 150 steps of batch 16. Too small and short for the numbers to mean
-- anything.
local c, only = require("repro.synthetic"), require("only")
c.experiment = "figures-synthetic"
c.runs = only(c.runs, function(r)
  return (r["model.mixer"] == "softmax" or r["model.mixer"] == "gdn") and r["train.seq_len"] <= 64
end)
c.base.model.d_model = 32
c.base.train = { steps = 150, batch_size = 16, warmup_steps = 10, log_every = 10, eval_every = 0, checkpoint_every = 0 }
c.base.eval = { examples = 128 }
c.grid = { ["train.lr"] = { 3e-3, 1e-2 }, seed = { 1, 2 } }
return c
