-- GPU preset of configs/repro/efficiency.lua: a 12-layer d_model 768 model up to 128K tokens.
local sweep = require("repro/efficiency")
sweep.experiment = "efficiency"
sweep.base.out_dir = "results/gpu" -- results/gpu/efficiency/ (make repro-gpu-efficiency)
sweep.base.device = "cuda"
sweep.base.model.d_model = 768
sweep.base.model.n_layers = 12
sweep.base.model.n_heads = 12
sweep.base.efficiency.prefill_max = 131072
return sweep
