-- The one cell of configs/repro/gpu/mqar-zoology.lua that the first GPU run failed (issue 17:
-- length 256, 16 pairs, width 128; softmax 0.80 but GDN and KDA 0.0004 after 3,000 steps at one
-- learning rate): the five mixers, four learning rates, one seed, Zoology's protocol (64 epochs of
-- 100,000 sequences at most, 1,563 steps an epoch, stopped at 0.99 validation accuracy). If the
-- delta-rule mixers learn here, the first run's budget was the cause; if not, compare with
-- flash-linear-attention's layers trained the same way.
--   ./attnlab run configs/repro/gpu/mqar-zoology-probe.lua --gpus 0,1
local sweep = require("repro/gpu/mqar-zoology")
local runs = {}
for _, r in ipairs(sweep.runs) do
  if r["train.seq_len"] == 256 and r["model.d_model"] == 128 then runs[#runs + 1] = r end
end
sweep.experiment = "mqar-zoology-probe"
sweep.runs = runs
sweep.grid.seed = { 1 }
return sweep
