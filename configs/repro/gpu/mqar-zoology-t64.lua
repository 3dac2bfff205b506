-- The length-64 panel of configs/repro/gpu/mqar-zoology.lua (4 key-value pairs, batches of 256,
-- 391 steps an epoch): widths 64 to 512, the five mixers, four learning rates, Zoology's protocol
-- unchanged. A panel of the grid that fits one device session's time; the other lengths and the
-- seeds 2 and 3 follow as further pieces.
--   ./attnlab run configs/repro/gpu/mqar-zoology-t64.lua --gpus 0 --jobs-per-gpu 6
local panel = require("repro/gpu/shared/length_panel")
local sweep = panel(require("repro/gpu/mqar-zoology"), 64, "mqar-zoology-t64")
sweep.grid.seed = { 1 }
return sweep
