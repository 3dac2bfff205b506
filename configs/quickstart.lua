-- Quickstart: a small softmax-attention model learns English bytes from the Brown corpus.
-- About three minutes on a 2-core CPU. Every field is documented in `attnlab help config`.
return {
  model = {
    mixer = "softmax",
    d_model = 192,
    n_layers = 4,
    n_heads = 4,
  },
  train = {
    steps = 600,
    batch_size = 8,
    seq_len = 256,
    lr = 2e-3,
    warmup_steps = 50,
    log_every = 20,
    eval_every = 200,
    checkpoint_every = 200,
  },
  data = { path = "data/brown.txt" },
}
