-- Stage 1 of the GPU hybrid-ratio reproduction: each ratio's learning rate, chosen on seed 1 by
-- validation loss (make repro-gpu-hybrid-ratio-tune). Stage 2, hybrid-ratio.lua, trains seeds 1
-- to 3 at the rates chosen here. Tuning on one seed and reporting three halves the device time
-- of a full 4 rates x 3 seeds grid (72 runs), which one half-hour device session cannot hold.
--
-- Size: Brown's training split is 5.38M bytes; 1,000 steps of 16 sequences of 1,024 bytes are
-- 16.4M tokens, about three passes, which is all the text supports without repeating it more. At
-- width 128 (16 layers, 2 heads of 64) the models have 3.5M (all MLA) to 4.0M (all KDA)
-- parameters, 4 to 5 tokens a parameter; width 256 (13 to 14M) would see about one token a
-- parameter, further still from a compute-optimal ~20, and costs 1.6x the time a step.
local sweep = require("repro/hybrid-ratio")
sweep.experiment = "hybrid-ratio-tune"
sweep.base.out_dir = "results/gpu" -- results/gpu/hybrid-ratio-tune/
sweep.base.device = "cuda"
require("repro/gpu/shared/brown_budget")(sweep.base)
sweep.base.model.d_model = 128
sweep.base.model.n_heads = 2
sweep.base.train.log_every = 50 -- train_loss is the mean over the last 50 steps (800 sequences)
sweep.base.eval.max_batches = 64
sweep.grid.seed = { 1 }
return sweep
