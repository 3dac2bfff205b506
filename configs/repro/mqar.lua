-- Multi-query associative recall (Zoology, Arora et al. 2023): accuracy against model width, one
-- panel per sequence length, one line per mixer. The Zoology grid (vocabulary 8192, widths 64 to
-- 512, lengths 64 to 512) scaled down to the CPU: vocabulary 256, widths 16 to 64, lengths 64
-- and 128 with 4 and 8 key-value pairs, 2 layers. Attention should solve it at every width; the
-- linear-time mixers need width (state) that grows with the pairs.
-- CPU default: about 15 minutes on 2 cores. make repro-mqar
local runs = {}
for _, case in ipairs({ { len = 64, pairs = 4 }, { len = 128, pairs = 8 } }) do
  for _, width in ipairs({ 16, 32, 64 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs,
                          ["model.d_model"] = width, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "mqar",
  base = {
    task = "mqar",
    model = { vocab_size = 256, n_layers = 2, n_heads = 2 },
    train = { steps = 1000, batch_size = 32, lr = 3e-3, warmup_steps = 50,
              log_every = 50, eval_every = 0, checkpoint_every = 250 },
    eval = { examples = 512 },
  },
  runs = runs,
}
