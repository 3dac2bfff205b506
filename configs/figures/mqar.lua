-- An example of the MQAR width figure (make reference-figures): configs/repro/mqar.lua shrunk to
-- seconds on 2 cores: widths 16 and 32, softmax attention against KDA, 150 steps of batch 16, two
-- seeds and one learning rate, so that its final-metric figure shows a sweep without `select`.
-- Too small and short for the numbers to mean anything.
local c, only = require("repro.mqar"), require("only")
c.experiment = "figures-mqar"
c.runs = only(c.runs, function(r)
  return (r["model.mixer"] == "softmax" or r["model.mixer"] == "kda") and r["model.d_model"] <= 32
end)
c.base.train = { steps = 150, batch_size = 16, lr = 3e-3, warmup_steps = 10,
                 log_every = 10, eval_every = 0, checkpoint_every = 0 }
c.base.eval = { examples = 128 }
c.grid = { seed = { 1, 2 } }
c.select = nil
return c
