-- Seeds 2 and 3 of the state-size check (synthetic-gdn-expand1.lua): gdn with expand_v 2 (what
-- synthetic.lua runs), gdn with expand_v 1 and kda, each cell at the learning rate its seed-1 run
-- chose. The rates are copied from the seed-1 sweeps' selected.csv (synthetic.lua's gdn and kda
-- runs rerun and synthetic-gdn-expand1.lua, both at a52e935's C code; results/reference/synthetic-gdn-expand1/
-- keeps both tables): a separate sweep, since tuning on seed 1 inside one sweep would rerun them.
-- 36 runs.   ./attnlab run configs/repro/synthetic-gdn-expand1-seeds.lua --jobs 2
local synthetic = require("repro/synthetic")
local chosen = { -- [variant][task][train.seq_len] = train.lr chosen on seed 1
  gdn_expand2 = { palindrome = { [32] = 0.003, [64] = 0.01, [128] = 0.01 }, stack = { [32] = 0.003, [64] = 0.003, [128] = 0.003 } },
  gdn_expand1 = { palindrome = { [32] = 0.001, [64] = 0.001, [128] = 0.003 }, stack = { [32] = 0.003, [64] = 0.01, [128] = 0.003 } },
  kda = { palindrome = { [32] = 0.001, [64] = 0.001, [128] = 0.001 }, stack = { [32] = 0.001, [64] = 0.01, [128] = 0.01 } },
}
local variants = {
  { name = "gdn_expand2", mixer = "gdn", expand_v = 2 },
  { name = "gdn_expand1", mixer = "gdn", expand_v = 1 },
  { name = "kda", mixer = "kda" },
}
local runs = {}
for _, v in ipairs(variants) do
  for _, task in ipairs({ "palindrome", "stack" }) do
    for _, len in ipairs({ 32, 64, 128 }) do
      runs[#runs + 1] = { task = task, ["train.seq_len"] = len, ["model.mixer"] = v.mixer,
                          ["model.gdn.expand_v"] = v.expand_v, ["train.lr"] = chosen[v.name][task][len] }
    end
  end
end
synthetic.experiment = "synthetic-gdn-expand1-seeds"
synthetic.runs = runs
synthetic.grid = { seed = { 2, 3 } }
synthetic.select = nil
return synthetic
