-- GPU preset of configs/repro/hybrid-ratio.lua: wider, longer, more tokens (device = "cuda").
local sweep = require("repro/hybrid-ratio")
sweep.experiment = "hybrid-ratio"
sweep.base.out_dir = "results/gpu" -- results/gpu/hybrid-ratio/ (make repro-gpu-hybrid-ratio)
sweep.base.device = "cuda"
sweep.base.model.d_model = 512
sweep.base.model.n_heads = 8
sweep.base.train.seq_len = 1024
sweep.base.train.batch_size = 32
sweep.base.train.steps = 6000
sweep.base.train.warmup_steps = 300
sweep.base.train.checkpoint_every = 1000
return sweep
