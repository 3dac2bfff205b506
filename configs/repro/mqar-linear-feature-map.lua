-- Why plain linear attention stays near 1/4 on MQAR (length 64, 4 pairs, width 64) under Zoology's
-- protocol on the GPU (results/reference/gpu/mqar-zoology-t64: elu(x)+1 features, normalized, at
-- every learning rate for 64 epochs), while its 64 x 64 state has room for 4 pairs. Two suspects:
-- the feature map (and its normalizer), and position: attnlab's linear layer is NoPE by default and
-- has no short convolution, so nothing in it tells which value follows which key. The runs: elu1
-- normalized (the GPU run's layer), identity with and without the normalizer, elu1 and identity
-- with RoPE on q and k, and elu1 with the short convolution (model.linear.short_conv). The rest is that run's protocol (configs/repro/gpu/mqar-zoology.lua)
-- but for 5 epochs instead of 64, so that it fits the CPU (Gated DeltaNet, KDA and attention pass
-- 0.99 within 5 epochs at their best rates there; the cosine schedule ends at epoch 5). Two
-- learning rates, one seed. About 50 minutes on 2 cores (make repro-mqar-linear-feature-map JOBS=2).
local sweep = require("repro/gpu/mqar-zoology")
local runs = {}
for _, r in ipairs({ { "elu1", true }, { "identity", true }, { "identity", false },
                     { "elu1", true, "rope" }, { "identity", false, "rope" }, { "elu1", true, nil, true } }) do
  runs[#runs + 1] = { ["model.linear.feature_map"] = r[1], ["model.linear.normalize"] = r[2],
                      ["model.linear.position"] = r[3], -- nil: the default, nope
                      ["model.linear.short_conv"] = r[4] } -- nil: the default, none
end
sweep.experiment = "mqar-linear-feature-map"
sweep.base.device = "cpu"
sweep.base.out_dir = "results"
sweep.base.mqar.epochs = 5
sweep.base.model.mixer = "linear"
sweep.base.model.d_model = 64
sweep.base.model.n_heads = 1
sweep.base.train.seq_len = 64
sweep.base.train.batch_size = 256
sweep.base.train.eval_every = 391
sweep.base.train.checkpoint_every = 391
sweep.base.mqar.num_kv_pairs = 4
sweep.runs = runs
sweep.grid = { ["train.lr"] = { 4.6416e-4, 2.1544e-3 }, seed = { 1 } }
return sweep
