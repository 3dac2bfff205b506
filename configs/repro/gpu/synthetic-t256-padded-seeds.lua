-- Does KDA leave MQAR's plateau more often than GDN? In synthetic-t256-fillers (the synthetic-t256
-- panel's MQAR cell: length 256, 16 pairs, vocabulary 8,192, 10,000 steps at 3e-4), with the
-- positions between the pairs and the queries padded, KDA learned on 3 of 3 seeds and GDN on 1 of
-- 3 (p = 0.2 with three seeds each). This is that cell, padded, on seeds 4 to 9 of each: 12 runs
-- side by side on one H200 (about 5 minutes under MPS).
--   ./attnlab run configs/repro/gpu/synthetic-t256-padded-seeds.lua --gpus 0 --jobs-per-gpu 12
local sweep = require("repro/gpu/synthetic-t256-fillers")
sweep.experiment = "synthetic-t256-padded-seeds"
sweep.runs[1]["mqar.random_non_queries"] = false
sweep.grid = { ["model.mixer"] = { "gdn", "kda" }, seed = { 4, 5, 6, 7, 8, 9 } }
return sweep
