-- Do MQAR's random filler tokens hold the delta-rule mixers on the plateau? On the GPU, the
-- synthetic-t256 panel's MQAR (length 256, 16 pairs; the positions between the pairs and the
-- queries filled with random tokens, mqar.random_non_queries, the generator's default and
-- Zoology's) left GDN, KDA and DPLR at a uniform guess over the values for 10,000 steps, while
-- Zoology's protocol, which pads those positions with one token, had GDN and KDA learn at that
-- length and pair count. The same question at CPU scale: length 256, 16 pairs, vocabulary 512,
-- width 64 with one head, 2 layers without MLP, 2,000 steps of 32 fresh sequences, one rate
-- (3e-3), one seed; four mixers, filler tokens random or padded, nothing else changed.
-- About 25 minutes on 2 cores (make repro-mqar-fillers JOBS=2).
return {
  experiment = "mqar-fillers",
  base = {
    task = "mqar",
    model = { vocab_size = 512, d_model = 64, n_layers = 2, n_heads = 1, mlp = false },
    mqar = { num_kv_pairs = 16 },
    train = { steps = 2000, batch_size = 32, seq_len = 256, warmup_steps = 50, lr = 3e-3,
              log_every = 100, eval_every = 500, checkpoint_every = 500 },
    eval = { examples = 512 },
  },
  grid = { ["model.mixer"] = { "softmax", "linear", "gdn", "kda" }, ["mqar.random_non_queries"] = { true, false } },
}
