-- MQAR with Zoology's own protocol (issue 17; the facts from HazyResearch/zoology's Figure 2
-- configs and trainer): vocabulary 8192, 2 layers without MLP, a fixed training set of 100,000
-- sequences and 3,000 held-out ones, key-value pairs 4, 8, 16, 64 at lengths 64, 128, 256, 512
-- with batches of 256, 128, 64, 32, 64 epochs, AdamW (betas 0.9, 0.999, weight decay 0.01, no
-- clipping) with a cosine schedule to 0 and no warm-up, learning rates 1e-4 to 1e-2 (four, log
-- spaced), non-query positions padded (random_non_queries = false), query gaps power 0.01, an
-- evaluation every epoch, and training stopped once validation accuracy passes 0.99.
-- Widths 64 to 512, the five mixers of the report (linear also with a short convolution), three
-- seeds, the rate chosen on seed 1 (select.tune_seeds): 96 settings x (4 rates + 2 more seeds at
-- the chosen one) = 576 runs, half of the 1,152 a full grid of seeds would train. What attnlab does not
-- copy: Zoology's learned absolute position embeddings, LayerNorm and embedding dropout 0.1
-- (attnlab: RoPE in softmax attention and MLA, RMSNorm, no dropout).
-- Cost: a run that never passes 0.99 trains all 64 epochs (25,000 steps at length 64, 200,000 at
-- 512); configs/repro/gpu/mqar-zoology-probe.lua is the one cell the issue's first GPU run failed.
--   ./attnlab run configs/repro/gpu/mqar-zoology.lua --gpus 0,1,2,3   (or --slurm)
local cases = {
  { len = 64, pairs = 4, batch = 256 },
  { len = 128, pairs = 8, batch = 128 },
  { len = 256, pairs = 16, batch = 64 },
  { len = 512, pairs = 64, batch = 32 },
}
local TRAIN_EXAMPLES = 100000

local runs = {}
for _, case in ipairs(cases) do
  for _, width in ipairs({ 64, 128, 256, 512 }) do
    -- linear twice: as it is, and with the short convolution GDN and KDA have (without one it
    -- cannot bind a value to its key: configs/repro/mqar-linear-feature-map.lua)
    for _, m in ipairs({ { "softmax" }, { "mla" }, { "linear" }, { "linear", true }, { "gdn" }, { "kda" } }) do
      runs[#runs + 1] = {
        ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs, ["train.batch_size"] = case.batch,
        ["train.eval_every"] = math.ceil(TRAIN_EXAMPLES / case.batch), -- once an epoch
        ["train.checkpoint_every"] = math.ceil(TRAIN_EXAMPLES / case.batch),
        ["model.d_model"] = width, ["model.n_heads"] = width // 64, ["model.mixer"] = m[1],
        ["model.linear.short_conv"] = m[2], -- nil (the default, none) but for the second linear
      }
    end
  end
end

return {
  experiment = "mqar-zoology",
  base = {
    device = "cuda",
    out_dir = "results/gpu", -- results/gpu/<experiment>/ (make repro-gpu-mqar-zoology)
    task = "mqar",
    model = { vocab_size = 8192, n_layers = 2, mlp = false }, -- heads of 64 channels (Zoology's attention: 1 head)
    mqar = { train_examples = TRAIN_EXAMPLES, epochs = 64, random_non_queries = false, power_a = 0.01 },
    train = { warmup_steps = 0, lr_schedule = "cosine", lr_min_ratio = 0, weight_decay = 0.01, beta2 = 0.999,
              grad_clip = 0, stop_accuracy = 0.99, log_every = 100 },
    eval = { examples = 3000, batch_size = 256, max_batches = 64 },
  },
  runs = runs,
  grid = { ["train.lr"] = { 1e-4, 4.6416e-4, 2.1544e-3, 1e-2 }, seed = { 1, 2, 3 } },
  select = { metric = "val_accuracy", goal = "max", over = { "train.lr" }, tune_seeds = { 1 } },
}
