-- An example of each synthetic-task figure (make reference-figures): palindrome and stack at two
-- lengths, softmax attention against GDN, two seeds, each setting at the better of two learning
-- rates. Seconds on 2 cores; too small and short for the numbers to mean anything.
local runs = {}
for _, task in ipairs({ "palindrome", "stack" }) do
  for _, len in ipairs({ 16, 32 }) do
    for _, mixer in ipairs({ "softmax", "gdn" }) do
      runs[#runs + 1] = { task = task, ["train.seq_len"] = len, ["model.mixer"] = mixer }
    end
  end
end
return {
  experiment = "figures-synthetic",
  base = {
    model = { vocab_size = 16, d_model = 32, n_layers = 2, n_heads = 2 },
    stack = { score = "pops" },
    train = { steps = 150, batch_size = 16, warmup_steps = 10,
              log_every = 10, eval_every = 0, checkpoint_every = 0 },
    eval = { examples = 128 },
  },
  runs = runs,
  grid = { ["train.lr"] = { 3e-3, 1e-2 }, seed = { 1, 2 } },
  select = { metric = "val_accuracy", goal = "max", over = { "train.lr" } },
}
