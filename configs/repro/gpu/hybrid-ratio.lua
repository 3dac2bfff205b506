-- GPU preset of configs/repro/hybrid-ratio.lua (device = "cuda"): the largest model Brown's text
-- supports without repeating it more than about three times. The training split holds 5.38M
-- bytes; 1,000 steps of 16 sequences of 1,024 bytes are 16.4M tokens, 3.0 epochs. 16 layers of
-- width 256, 13.1M (all MLA) to 14.0M (15:1) parameters. Three seeds; training and validation
-- loss are both reported (the report separates them: 7:1 trains well but generalizes worse).
local sweep = require("repro/hybrid-ratio")
sweep.experiment = "hybrid-ratio"
sweep.base.out_dir = "results/gpu" -- results/gpu/hybrid-ratio/ (make repro-gpu-hybrid-ratio)
sweep.base.device = "cuda"
require("repro/gpu/shared/brown_budget")(sweep.base)
sweep.base.eval.max_batches = 64
sweep.grid.seed = { 1, 2, 3 }
return sweep
