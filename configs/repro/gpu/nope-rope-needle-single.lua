-- A probe beside nope-rope-needle.lua (issue 17, item 4): that preset's four keys a sequence were
-- not learned in 2,000 steps at any rate (the answer digits at chance,
-- results/reference/gpu/nope-rope-needle). Here the easiest of RULER's needles, one key and one
-- question a sequence (single-key NIAH: a words key, a 7-digit value), trained 2.5 times longer,
-- so that the question "does NoPE extrapolate the retrieval as well as RoPE?" gets an answer at
-- all. One rate, 1e-3, the one a small softmax model learned the single needle with on the CPU
-- (README, At GPU scale), not tuned per encoding: 2 encodings x 2 seeds = 4 runs, 400 s each
-- side by side on one H200.
local sweep = require("repro/gpu/nope-rope-needle")
sweep.experiment = "nope-rope-needle-single"
sweep.base.needle.keys = 1
sweep.base.needle.queries = 1
sweep.base.train.steps = 5000
sweep.grid["train.lr"] = { 1e-3 }
sweep.grid.seed = { 1, 2 }
sweep.select = nil
return sweep
