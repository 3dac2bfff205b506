-- An example of each synthetic-task figure (make reference-figures): configs/repro/synthetic.lua
-- shrunk to seconds on 2 cores: lengths 32 and 64, softmax attention against GDN, width 32, two
-- learning rates, two seeds, 150 steps of batch 16. Too small and short for the numbers to mean
-- anything.
local c = require("repro.synthetic")
local runs = {}
for _, r in ipairs(c.runs) do
  local mixer = r["model.mixer"]
  if (mixer == "softmax" or mixer == "gdn") and r["train.seq_len"] <= 64 then runs[#runs + 1] = r end
end
c.experiment = "figures-synthetic"
c.runs = runs
c.base.model.d_model = 32
c.base.train = { steps = 150, batch_size = 16, warmup_steps = 10, log_every = 10, eval_every = 0, checkpoint_every = 0 }
c.base.eval = { examples = 128 }
c.grid = { ["train.lr"] = { 3e-3, 1e-2 }, seed = { 1, 2 } }
return c
