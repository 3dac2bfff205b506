-- An example of the decoding-cost figure (make reference-figures): all MLA against a 3:1 KDA/MLA
-- hybrid, small enough to measure in seconds.
return {
  experiment = "figures-efficiency",
  base = {
    task = "efficiency",
    model = { d_model = 64, n_layers = 4, n_heads = 2, mla = { position = "nope" },
              hybrid = { linear = "kda", full = "mla" } },
    efficiency = { contexts = "256,1024,4096,16384", prefill_max = 1024, decode_steps = 5 },
  },
  runs = {
    { ["model.hybrid.ratio"] = "0:1" },
    { ["model.hybrid.ratio"] = "3:1" },
  },
}
