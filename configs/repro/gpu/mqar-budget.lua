-- Is MQAR's verdict on attention a matter of training budget? configs/repro/mqar.lua trains 1,000
-- steps of 32 examples (32K examples); Zoology trains on 100K examples for up to 64 epochs. At that
-- budget softmax attention reaches 0.48 accuracy (T 64, 4 pairs, d_model 64) where the delta-rule
-- mixers reach 1.0, the reverse of Zoology's finding. This sweep keeps mqar.lua's task and model
-- and trains 1,000, 4,000 and 16,000 steps (the last 512K examples), each the best of three
-- learning rates; kda is the control that already solves it, linear attention the one whose state
-- is too small at any budget. device = "cuda": about 15 minutes on one H200
-- (./attnlab run configs/repro/gpu/mqar-budget.lua); 16,000 steps take hours a run on 2 CPU cores.
local runs = {}
for _, case in ipairs({ { len = 64, pairs = 4 }, { len = 128, pairs = 8 } }) do
  for _, steps in ipairs({ 1000, 4000, 16000 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "kda" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs,
                          ["train.steps"] = steps, ["model.mixer"] = mixer }
    end
  end
end
local sweep = require("repro/mqar")
sweep.experiment = "mqar-budget"
sweep.base.out_dir = "results/gpu" -- results/gpu/mqar-budget/ (make repro-gpu-mqar-budget)
sweep.base.device = "cuda"
sweep.base.model.d_model = 64
sweep.base.train.checkpoint_every = 1000
sweep.grid = { ["train.lr"] = { 3e-4, 1e-3, 3e-3 } }
sweep.runs = runs
return sweep
