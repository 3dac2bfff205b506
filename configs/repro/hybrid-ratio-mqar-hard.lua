-- hybrid-ratio-mqar.lua with four times the pairs at twice the length (64 key-value pairs in 256
-- tokens), for the two ratios the reproductions disagree on: 3:1 (the Kimi Linear report's best)
-- and all KDA (the best here on language modelling). At 16 pairs every ratio with a KDA layer
-- recalls (hybrid-ratio-mqar); 64 pairs load KDA's state (2 heads of 32 x 32 a layer) beyond what
-- it held there. The rate is hybrid-ratio-mqar's choice for both, 1e-3, not tuned again.
-- CPU default: 22 minutes on 2 cores (make repro-hybrid-ratio-mqar-hard JOBS=2).
local sweep = require("repro/hybrid-ratio-mqar")
sweep.experiment = "hybrid-ratio-mqar-hard"
sweep.base.train.seq_len = 256
sweep.base.mqar.num_kv_pairs = 64
sweep.base.model.vocab_size = 512 -- more than the length, as MQAR requires
sweep.grid = { ["model.hybrid.ratio"] = { "3:1", "1:0" }, ["train.lr"] = { 1e-3 }, seed = { 1, 2 } }
sweep.select = nil
return sweep
