-- The synthetic tasks of the Kimi Linear report at growing sequence lengths: palindrome (repeat a
-- random sequence in reverse) and stack (push/pop, predict the top; scored after pops, the answers
-- that need memory), one line per mixer (report: KDA ahead of GDN as length grows).
-- Each point is the best of four learning rates (select below). CPU default: about 90 minutes on 2
-- cores (make repro-synthetic JOBS=2).
local runs = {}
for _, task in ipairs({ "palindrome", "stack" }) do
  for _, len in ipairs({ 32, 64, 128 }) do
    for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda", "dplr" }) do
      runs[#runs + 1] = { task = task, ["train.seq_len"] = len, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "synthetic",
  base = {
    model = { vocab_size = 16, d_model = 64, n_layers = 2, n_heads = 2 },
    stack = { score = "pops" },
    train = { steps = 800, batch_size = 32, warmup_steps = 50,
              log_every = 50, eval_every = 0, checkpoint_every = 200 },
    eval = { examples = 512 },
  },
  runs = runs,
  grid = { ["train.lr"] = { 3e-4, 1e-3, 3e-3, 1e-2 } },
  select = { metric = "val_accuracy", goal = "max", over = { "train.lr" } },
}
