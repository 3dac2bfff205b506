-- configs/repro/mqar-fillers.lua's GDN at lengths 64 and 128 (a pair per 16 positions, as there:
-- 4 and 8 pairs), and at 256 on seeds 2 to 6, filler tokens random or padded: at which length do
-- random fillers start to hold the delta rule on the plateau, and does the seed-1 result at 256
-- (results/reference/mqar-fillers/) repeat? 14 runs, about 40 minutes on 2 cores
-- (make repro-mqar-fillers-length JOBS=2).
local sweep = require("repro/mqar-fillers")
sweep.experiment = "mqar-fillers-length"
sweep.runs = { { ["train.seq_len"] = 64, ["mqar.num_kv_pairs"] = 4 }, { ["train.seq_len"] = 128, ["mqar.num_kv_pairs"] = 8 },
               { ["train.seq_len"] = 256, ["mqar.num_kv_pairs"] = 16, seed = 2 },
               { ["train.seq_len"] = 256, ["mqar.num_kv_pairs"] = 16, seed = 3 },
               { ["train.seq_len"] = 256, ["mqar.num_kv_pairs"] = 16, seed = 4 },
               { ["train.seq_len"] = 256, ["mqar.num_kv_pairs"] = 16, seed = 5 },
               { ["train.seq_len"] = 256, ["mqar.num_kv_pairs"] = 16, seed = 6 } }
sweep.grid["model.mixer"] = { "gdn" }
return sweep
