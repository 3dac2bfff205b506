-- GPU preset of configs/repro/efficiency.lua: a 12-layer d_model 768 model, decode up to 1M
-- tokens of context (the report's 1M: 6.3x faster per output token, 75% less cache), prefill
-- timed up to 256K (full attention's prefill is quadratic: about 10 s at 256K, minutes at 1M).
local sweep = require("repro/efficiency")
sweep.experiment = "efficiency"
sweep.base.out_dir = "results/gpu" -- results/gpu/efficiency/ (make repro-gpu-efficiency)
sweep.base.device = "cuda"
sweep.base.model.d_model = 768
sweep.base.model.n_layers = 12
sweep.base.model.n_heads = 12
sweep.base.efficiency.contexts = "1024,4096,16384,65536,131072,262144,524288,1048576"
sweep.base.efficiency.prefill_max = 262144 -- a forward on buffers all layers share (model_reshape_forward)
return sweep
