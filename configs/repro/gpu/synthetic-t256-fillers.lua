-- Why do the delta-rule mixers stay on MQAR's plateau in the synthetic-t256 panel? Its MQAR cell
-- (length 256, 16 pairs, vocabulary 8,192; configs/repro/gpu/synthetic-t256.lua) fills the
-- positions between the pairs and the queries with random tokens (mqar.random_non_queries, the
-- generator's default, as Zoology's code); there GDN, KDA and DPLR sat at ln 4096 on seed 1 at
-- every rate, while softmax attention, MLA and plain linear attention learned. Zoology's protocol
-- pads those positions with one token, and at that length and pair count
-- (configs/repro/gpu/mqar-zoology-probe.lua) GDN and KDA learned. On the CPU at width 64
-- (configs/repro/mqar-fillers.lua, mqar-fillers-length.lua) which filler lets GDN leave the plateau
-- within 2,000 steps changed with the seed. This is the panel's cell with three seeds, GDN and
-- KDA, each filler, at 3e-4 (the rate at which the panel's KDA began to leave): 12 runs of 10,000
-- steps, nothing else changed.
--   ./attnlab run configs/repro/gpu/synthetic-t256-fillers.lua --gpus 0 --jobs-per-gpu 12
local sweep = require("repro/gpu/synthetic")
sweep.experiment = "synthetic-t256-fillers"
sweep.runs = { { task = "mqar", ["train.seq_len"] = 256, ["model.vocab_size"] = 8192, ["mqar.num_kv_pairs"] = 16,
                 ["train.lr"] = 3e-4 } }
sweep.grid = { ["model.mixer"] = { "gdn", "kda" }, ["mqar.random_non_queries"] = { true, false }, seed = { 1, 2, 3 } }
sweep.select = nil
return sweep
