-- The length-64 panel of configs/repro/gpu/mqar-zoology.lua (4 key-value pairs, batches of 256,
-- 391 steps an epoch): widths 64 to 512, the five mixers, four learning rates, Zoology's protocol
-- unchanged, its three seeds with the rate tuned on seed 1 (select.tune_seeds): 96 tuning runs, then
-- 48 on seeds 2 and 3 at each setting's chosen rate. A panel of the grid that fits a few device
-- sessions; the other lengths follow as further pieces.
--   ./attnlab run configs/repro/gpu/mqar-zoology-t64.lua --gpus 0 --jobs-per-gpu 6
local panel = require("repro/gpu/shared/length_panel")
return panel(require("repro/gpu/mqar-zoology"), 64, "mqar-zoology-t64")
