-- The length-256 panel of configs/repro/gpu/synthetic.lua: palindrome, MQAR (16 pairs, vocabulary
-- 8,192) and stack at 256 tokens, the six mixers, the four learning rates on seed 1, then seeds 2
-- and 3 at each setting's chosen rate (select.tune_seeds): 18 settings x (4 + 2) = 108 of the
-- panel's 216 runs, each 10,000 steps of 32 x 256 tokens. The piece of the report's figure that
-- fits a device session or two; the lengths 512 to 2,048 follow as further pieces.
--   ./attnlab run configs/repro/gpu/synthetic-t256.lua --gpus 0 --jobs-per-gpu 6
local panel = require("repro/gpu/shared/length_panel")
return panel(require("repro/gpu/synthetic"), 256, "synthetic-t256")
