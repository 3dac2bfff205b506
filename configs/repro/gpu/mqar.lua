-- GPU preset of configs/repro/mqar.lua: Zoology's standard grid (vocabulary 8192, 2 layers,
-- widths 64 to 512, lengths 64 to 512 with 4 to 64 pairs), device = "cuda".
local runs = {}
for _, case in ipairs({ { len = 64, pairs = 4 }, { len = 128, pairs = 8 }, { len = 256, pairs = 16 }, { len = 512, pairs = 64 } }) do
  for _, width in ipairs({ 64, 128, 256, 512 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs,
                          ["model.d_model"] = width, ["model.mixer"] = mixer }
    end
  end
end
local sweep = require("repro/mqar")
sweep.experiment = "mqar"
sweep.base.out_dir = "results/gpu" -- results/gpu/mqar/ (make repro-gpu-mqar)
sweep.base.device = "cuda"
sweep.base.model.vocab_size = 8192
sweep.base.train.steps = 20000
sweep.base.train.batch_size = 64
sweep.base.eval.examples = 3000
sweep.runs = runs
return sweep
