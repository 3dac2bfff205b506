-- Multi-query associative recall (Zoology, Arora et al. 2023): accuracy against model width, one
-- panel per sequence length, one line per mixer. The Zoology grid (vocabulary 8192, widths 64 to
-- 512, lengths 64 to 512) scaled down to the CPU: vocabulary 256, widths 16 to 64, lengths 64
-- and 128 with 4 and 8 key-value pairs, 2 layers. Attention should solve it at every width; the
-- linear-time mixers need width (state) that grows with the pairs.
-- Each point is the best of four learning rates (Zoology's protocol; select below), and the
-- models have no MLP (Zoology's MQAR models). CPU default: about 70 minutes on 2 cores
-- (make repro-mqar JOBS=2).
local runs = {}
for _, case in ipairs({ { len = 64, pairs = 4 }, { len = 128, pairs = 8 } }) do
  for _, width in ipairs({ 16, 32, 64 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda", "dplr" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs,
                          ["model.d_model"] = width, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "mqar",
  base = {
    task = "mqar",
    model = { vocab_size = 256, n_layers = 2, n_heads = 2, mlp = false },
    train = { steps = 1000, batch_size = 32, warmup_steps = 50,
              log_every = 50, eval_every = 0, checkpoint_every = 250 },
    eval = { examples = 512 },
  },
  runs = runs,
  grid = { ["train.lr"] = { 3e-4, 1e-3, 3e-3, 1e-2 } },
  select = { metric = "val_accuracy", goal = "max", over = { "train.lr" } },
}
