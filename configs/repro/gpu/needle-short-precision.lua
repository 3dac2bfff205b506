-- diagnostic beside nope-rope-needle-short.lua: on the GPU none of its 8 seed-1 runs (NoPE and
-- RoPE at four rates) left the answers' plateau in 6,000 steps, where the same seed-1 NoPE run on
-- the CPU (./attnlab train configs/repro/gpu/nope-rope-needle-short.lua --only 1 --set
-- device=cpu) left it at step 1,000, its loss curve within 1e-3 of the GPU's until then. Its NoPE
-- run at lr 1e-3 in both GPU matmul modes and six seeds, to tell the bf16 products from chance.
local sweep = require("repro/gpu/nope-rope-needle-short")
sweep.experiment = "needle-short-precision"
sweep.base.model.mla = { position = "nope" }
sweep.base.train.lr = 1e-3
sweep.base.eval.max_length_factor = 1
sweep.grid = { ["cuda.matmul"] = { "bf16", "fp32" }, seed = { 1, 2, 3, 4, 5, 6 } }
sweep.select = nil
return sweep
