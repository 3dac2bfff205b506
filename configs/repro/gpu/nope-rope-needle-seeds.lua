-- The needle half of NoPE against RoPE (issue 17, item 4), where the question is whether a run
-- leaves the answers' plateau at all. nope-rope-needle-short.lua tuned the rate on seed 1: all 8
-- of its seed-1 runs (both encodings, lr 1e-3 to 8e-3) stayed at the format's 2.2875 for 6,000
-- steps, so the selection fell on the first rate by a tie, and of its seeds 2 and 3 one RoPE run
-- learned (0.42 exact at 1x) and one NoPE run half left. needle-short-precision.lua then found 3 of
-- 12 NoPE runs leaving the plateau (steps 1,240 to 3,260), in both matmul modes. Which run leaves
-- it is chance at this scale; what the encodings decide is how the runs that learn extrapolate. So:
-- the same model at lr 1e-3 (the rate the CPU probes learned at), twenty seeds each, evaluated at
-- 1x to 16x. On one H200 under MPS, seeds 1-8 (16 runs side by side) took 190 s, seeds 9-20 (24
-- runs) some 290 s.
local sweep = require("repro/gpu/nope-rope-needle-short")
sweep.experiment = "nope-rope-needle-seeds"
sweep.base.train.lr = 1e-3
sweep.grid = { ["model.mla.position"] = { "nope", "rope" }, seed = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 } }
sweep.select = nil
return sweep
