-- An example of the MQAR width figure (make reference-figures): two widths, two lengths (with 2
-- and 4 key-value pairs), softmax attention against KDA, two seeds and one learning rate, so
-- the final-metric figure shows a sweep without `select`. Seconds on 2 cores; too small and
-- short for the numbers to mean anything.
local runs = {}
for _, case in ipairs({ { len = 32, pairs = 2 }, { len = 64, pairs = 4 } }) do
  for _, width in ipairs({ 16, 32 }) do
    for _, mixer in ipairs({ "softmax", "kda" }) do
      runs[#runs + 1] = { ["train.seq_len"] = case.len, ["mqar.num_kv_pairs"] = case.pairs,
                          ["model.d_model"] = width, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "figures-mqar",
  base = {
    task = "mqar",
    model = { vocab_size = 128, n_layers = 2, n_heads = 2, mlp = false },
    train = { steps = 150, batch_size = 16, lr = 3e-3, warmup_steps = 10,
              log_every = 10, eval_every = 0, checkpoint_every = 0 },
    eval = { examples = 128 },
  },
  runs = runs,
  grid = { seed = { 1, 2 } },
}
