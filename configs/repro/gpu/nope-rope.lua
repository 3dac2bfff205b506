-- GPU preset of configs/repro/nope-rope.lua (device = "cuda"), with issue 17's length
-- extrapolation: trained at 1,024 bytes on Brown text carrying needles (task needle: language
-- modelling and retrieval together; four keys, all four asked in one question, RULER's
-- multi-query needle, so that each sequence has 28 answer bytes to learn retrieval from, not 7),
-- then evaluated at 1x to 16x the training length: the exact-answer share
-- (needle_accuracy_xF) and the perplexity of the plain held-out text (val_perplexity_xF).
-- Brown's training split (5.38M bytes) read about three times: 1,000 steps of 16 sequences of
-- 1,024 bytes (16.4M tokens); 8 layers of width 256.
local sweep = require("repro/nope-rope")
sweep.experiment = "nope-rope"
sweep.base.out_dir = "results/gpu" -- results/gpu/nope-rope/ (make repro-gpu-nope-rope)
sweep.base.device = "cuda"
sweep.base.task = "needle"
sweep.base.needle = { keys = 4, queries = 4, key_format = "words", value_format = "numbers" }
require("repro/gpu/shared/brown_budget")(sweep.base)
sweep.base.eval.max_length_factor = 16
sweep.base.eval.examples = 200
sweep.select.metric = "val_loss_x1" -- the plain text's loss at 1x: the needle answers are measured, not tuned for
return sweep
