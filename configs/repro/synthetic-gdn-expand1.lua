-- A fairness check of "KDA beats GDN on recall" (make repro-synthetic): synthetic.lua's gdn runs
-- again with model.gdn.expand_v = 1. synthetic.lua keeps fla's defaults, expand_v 2 for gdn and 1
-- for kda, so its GDN has twice KDA's value width and state; here both hold H K K floats a layer
-- and differ in their gates alone (kda: one decay per key channel from a low-rank gate, and its
-- output gate's low-rank form). Same tasks, lengths, rates and budget: 24 runs.
--   ./attnlab run configs/repro/synthetic-gdn-expand1.lua --jobs 2
local synthetic = require("repro/synthetic")
local runs = {}
for _, run in ipairs(synthetic.runs) do
  if run["model.mixer"] == "gdn" then
    local copy = { ["model.gdn.expand_v"] = 1 }
    for k, v in pairs(run) do copy[k] = v end
    runs[#runs + 1] = copy
  end
end
synthetic.experiment = "synthetic-gdn-expand1"
synthetic.runs = runs
return synthetic
