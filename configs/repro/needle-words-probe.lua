-- CPU diagnostic for the needle half of NoPE against RoPE: the 4-layer width-128 3:1 KDA/MLA model
-- that learned a number key at 320 bytes (README, The needle half), with a words key, the key
-- format of the GPU presets that did not learn. ./attnlab train configs/repro/needle-words-probe.lua
-- (2 cores: about 17 minutes); results/reference/needle-words-probe/.
return {
  experiment = "needle-words-probe",
  out_dir = "results", device = "cpu", task = "needle", seed = 1,
  model = { d_model = 128, n_layers = 4, n_heads = 2, hybrid = { ratio = "3:1", linear = "kda", full = "mla" } },
  needle = { keys = 1, queries = 1, key_format = "words", value_format = "numbers", train_targets = "answer" },
  train = { steps = 2500, batch_size = 16, seq_len = 320, lr = 1e-3, warmup_steps = 100,
            log_every = 20, eval_every = 500, checkpoint_every = 500 },
  data = { path = "data/brown.txt" },
  eval = { max_batches = 16, examples = 200 },
}
