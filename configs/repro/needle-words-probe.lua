-- CPU diagnostic for the needle half of NoPE against RoPE: the 4-layer width-128 3:1 KDA/MLA model
-- that learned a number key at 320 bytes (README, The needle half), with a words key, the key
-- format of the GPU presets that did not learn: needle-probe.lua's run on the CPU, its layout and
-- key changed, for 2,500 steps. ./attnlab train configs/repro/needle-words-probe.lua (2 cores:
-- about 17 minutes); results/reference/needle-words-probe/.
local run = require("repro/gpu/needle-probe").base
run.experiment = "needle-words-probe"
run.out_dir = "results"
run.device = "cpu"
run.model.hybrid = { ratio = "3:1", linear = "kda", full = "mla" }
run.needle.key_format = "words"
run.train.steps = 2500
run.train.eval_every = 500
run.train.checkpoint_every = 500
return run
