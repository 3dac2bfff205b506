-- diagnostic beside needle-probe.lua: its softmax model at 320 bytes in both GPU matmul modes and
-- two seeds, to tell rounding from chance in how slowly it learns the needle on the GPU
local sweep = require("repro/gpu/needle-probe")
sweep.experiment = "needle-probe-precision"
sweep.grid = { ["cuda.matmul"] = { "bf16", "fp32" }, seed = { 1, 2 } }
return sweep
