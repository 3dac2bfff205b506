-- GPU preset of configs/repro/efficiency.lua: a 12-layer d_model 768 model, decode up to 1M
-- tokens of context (the report's 1M: 6.3x faster per output token, 75% less cache), prefill
-- timed up to 64K.
local sweep = require("repro/efficiency")
sweep.experiment = "efficiency"
sweep.base.out_dir = "results/gpu" -- results/gpu/efficiency/ (make repro-gpu-efficiency)
sweep.base.device = "cuda"
sweep.base.model.d_model = 768
sweep.base.model.n_layers = 12
sweep.base.model.n_heads = 12
sweep.base.efficiency.contexts = "1024,4096,16384,65536,131072,262144,524288,1048576"
sweep.base.efficiency.prefill_max = 65536 -- the prefill is the training forward, which keeps every layer's activations (about 0.8 MB a token here)
return sweep
