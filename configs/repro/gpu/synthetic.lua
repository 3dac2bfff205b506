-- GPU preset of configs/repro/synthetic.lua: lengths up to 2048 as in the Kimi Linear report.
local runs = {}
for _, task in ipairs({ "palindrome", "stack" }) do
  for _, len in ipairs({ 256, 512, 1024, 2048 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda" }) do
      runs[#runs + 1] = { task = task, ["train.seq_len"] = len, ["model.mixer"] = mixer }
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
sweep.runs = runs
return sweep
