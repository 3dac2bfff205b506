-- GPU preset of configs/repro/hybrid-ratio.lua, stage 2 (make repro-gpu-hybrid-ratio): every ratio
-- from all MLA (0:1) to all KDA (1:0), NoPE MLA, three seeds at the learning rate stage 1
-- (hybrid-ratio-tune.lua, seed 1, rates 1e-3 to 8e-3) chose for it by validation loss. Training
-- and validation loss are both reported: the Kimi Linear report separates them ("7:1 trains
-- well but generalizes worse"). Model and budget: see hybrid-ratio-tune.lua.
local sweep = require("repro/gpu/hybrid-ratio-tune")
sweep.experiment = "hybrid-ratio"
sweep.base.out_dir = "results/gpu" -- results/gpu/hybrid-ratio/
-- stage 1's choice (results/reference/gpu/hybrid-ratio-tune/selected.csv): 2e-3 for every ratio,
-- where 1e-3 and 4e-3 were both worse for each ratio
local chosen = { ["0:1"] = 2e-3, ["1:1"] = 2e-3, ["3:1"] = 2e-3, ["7:1"] = 2e-3, ["15:1"] = 2e-3, ["1:0"] = 2e-3 }
sweep.grid = { seed = { 1, 2, 3 } }
sweep.runs = {}
for _, ratio in ipairs({ "0:1", "1:1", "3:1", "7:1", "15:1", "1:0" }) do
  sweep.runs[#sweep.runs + 1] = { ["model.hybrid.ratio"] = ratio, ["train.lr"] = chosen[ratio] }
end
-- A control: all MLA with RoPE, at the three rates around stage 1's choice. NoPE attention alone
-- has only the causal mask to find positions with; this separates "attention against KDA" from
-- "a model with no position signal at all".
for _, lr in ipairs({ 1e-3, 2e-3, 4e-3 }) do
  sweep.runs[#sweep.runs + 1] = { ["model.hybrid.ratio"] = "0:1", ["model.mla.position"] = "rope", ["train.lr"] = lr }
end
sweep.select = nil
return sweep
