-- The needle half of NoPE against RoPE (issue 17, item 4) with a budget the probes say it needs
-- (README, The needle half): nope-rope-needle.lua's 7M hybrids sat on the answers' format for all
-- 2,000 steps, and with one key for 5,000; a 4-layer softmax model of width 128 left the plateau
-- at 1,024 bytes only from step 3,000, a 3:1 KDA/softmax one not in 4,000. So: the preset's
-- layout (3:1 KDA/MLA, the position encoding in the 2 MLA layers of 8) at width 128 (1,989,260
-- parameters), one key a sequence (RULER's single-key needle: a words key, a 7-digit value),
-- trained on the answers for 20,000 steps of 16 x 1,024 bytes; the rate tuned on seed 1 by the
-- exact-answer share at 1x, seeds 2 and 3 at it; evaluated at 1x to 16x
-- (needle_accuracy_vs_length).
-- Ran in part (629645c, one H200, 2026-11-30; results/reference/gpu/nope-rope-needle-long/): the
-- 8 tuning runs side by side under MPS took 82 ms a step, so 20,000 steps are some 1,640 s, not
-- the 400 s estimated from the 4-layer probes; the session's device time cut them at 11,700 to
-- 11,790 steps, every one still on the answers' format (2.288 to 2.290), at every rate, with
-- either encoding. nope-rope-needle-short.lua asks the question at a length this scale learns.
local sweep = require("repro/gpu/nope-rope-needle")
sweep.experiment = "nope-rope-needle-long"
sweep.base.model.d_model = 128
sweep.base.model.n_heads = 2
sweep.base.needle.keys = 1
sweep.base.needle.queries = 1
sweep.base.train.steps = 20000
sweep.base.train.warmup_steps = 200
sweep.base.train.checkpoint_every = 1000
return sweep
