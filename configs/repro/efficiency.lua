-- Decode cache and decode time against context length: pure MLA against a 3:1 KDA/MLA hybrid (both
-- NoPE, Kimi Linear's layout). The report: a 3:1 hybrid keeps a quarter of the KV cache and
-- decodes several times faster at long context (6.3x at 1M tokens on GPUs).
-- CPU default: a few minutes on 2 cores (fp32 caches). make repro-efficiency
return {
  experiment = "efficiency",
  base = {
    task = "efficiency",
    model = { d_model = 256, n_layers = 8, n_heads = 4, mla = { position = "nope" },
              hybrid = { linear = "kda", full = "mla" } },
    efficiency = { contexts = "1024,4096,16384,65536,131072", prefill_max = 16384, decode_steps = 9 },
  },
  runs = {
    { ["model.hybrid.ratio"] = "0:1", run = "mla" },
    { ["model.hybrid.ratio"] = "3:1", run = "kda-mla-3to1" },
  },
}
