-- An example of the decoding-cost figure (make reference-figures): configs/repro/efficiency.lua
-- with a model of width 64 and 4 layers, measured to 16K tokens in seconds.
local c = require("repro.efficiency")
c.experiment = "figures-efficiency"
c.base.model.d_model, c.base.model.n_layers, c.base.model.n_heads = 64, 4, 2
c.base.efficiency = { contexts = "256,1024,4096,16384", prefill_max = 1024, decode_steps = 5 }
return c
