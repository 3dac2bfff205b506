-- The needle half of NoPE against RoPE (issue 17, item 4) at the length this scale learns the
-- needle at. At 1,024 bytes the hybrids sat on the answers' format: the preset's 7M runs for 2,000
-- steps (5,000 with one key), nope-rope-needle-long.lua's 8 x 128 runs for 11,700 of 20,000
-- steps at four rates, both encodings (README, The needle half). At 320 bytes a 4-layer 3:1
-- KDA/MLA model of width 128 leaves the plateau on the CPU: a number key between steps 1,000 and
-- 1,500 (answer loss 1.33 at 2,500), a words key at about 2,050 (2.16 at 2,500;
-- needle-words-probe). So: that model (1,027,462 parameters; the encoding in its one MLA layer,
-- the top one), one number key, trained at 320 bytes for 6,000 steps on the answers, evaluated at 1x to 16x (320 to 5,120 bytes); the
-- rate tuned on seed 1 by the exact-answer share at 1x, seeds 2 and 3 at it.
-- Run at dbb41b5 on one H200 (8 tuning runs side by side in 99 s, the 4 others in 61 s): all 8
-- seed-1 runs stayed on the plateau, so the rate fell to 1e-3 by a tie; nope-rope-needle-seeds.lua
-- then trains 20 seeds an encoding at that rate (README, The needle half at 320 bytes).
local sweep = require("repro/gpu/nope-rope-needle")
sweep.experiment = "nope-rope-needle-short"
sweep.base.model.d_model = 128
sweep.base.model.n_heads = 2
sweep.base.model.n_layers = 4
sweep.base.needle = { keys = 1, queries = 1, key_format = "numbers", value_format = "numbers",
                      train_targets = "answer" }
sweep.base.train.seq_len = 320
sweep.base.train.steps = 6000
sweep.base.train.warmup_steps = 100
sweep.base.train.checkpoint_every = 1000
return sweep
