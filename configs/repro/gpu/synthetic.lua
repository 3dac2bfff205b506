-- GPU preset of configs/repro/synthetic.lua: the Kimi Linear report's synthetic tasks (palindrome,
-- MQAR, stack) at lengths 256 to 2,048, one line per mixer (accuracy against length, the report's
-- figure), each point the best of four learning rates over three seeds (device = "cuda").
-- MQAR here is attnlab's choice (the report does not give its generator's settings): vocabulary
-- 8,192 (MQAR needs more tokens than positions) and one key-value pair per 16 positions (16 at
-- length 256, 128 at 2,048); palindrome and stack keep the CPU reproduction's vocabulary of 16.
-- dplr rides along as the untied control. The rate is chosen on seed 1 and seeds 2 and 3 train
-- at it alone (select.tune_seeds): 72 settings x (4 rates + 2 seeds) = 432 of the grid's 864 runs
-- of 10,000 steps, a cluster's job (--slurm, or --gpus over a machine's GPUs).
local runs = {}
for _, task in ipairs({ "palindrome", "mqar", "stack" }) do
  for _, len in ipairs({ 256, 512, 1024, 2048 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda", "dplr" }) do
      local r = { task = task, ["train.seq_len"] = len, ["model.mixer"] = mixer }
      if task == "mqar" then
        r["model.vocab_size"] = 8192
        r["mqar.num_kv_pairs"] = len // 16
      end
      runs[#runs + 1] = r
    end
  end
end
local sweep = require("repro/synthetic")
sweep.experiment = "synthetic"
sweep.base.out_dir = "results/gpu" -- results/gpu/synthetic/ (make repro-gpu-synthetic)
sweep.base.device = "cuda"
sweep.base.model.d_model = 256
sweep.base.model.n_heads = 4
sweep.base.train.steps = 10000
sweep.base.train.checkpoint_every = 1000
sweep.runs = runs
sweep.grid.seed = { 1, 2, 3 }
sweep.select.tune_seeds = { 1 }
return sweep
