-- The language-modelling budget of the GPU presets trained on Brown (hybrid-ratio, nope-rope): the
-- training split (5.38M bytes) read about three times, 1,000 steps of 16 sequences of 1,024 bytes
-- (16.4M tokens), at width 256; each preset keeps its own depth. Applied to a sweep's base.
return function(base)
  base.model.d_model = 256
  base.model.n_heads = 4
  base.train.seq_len = 1024
  base.train.batch_size = 16
  base.train.steps = 1000
  base.train.warmup_steps = 50
  base.train.checkpoint_every = 250
end
