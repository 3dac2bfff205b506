-- bf16 products against exact fp32 on the GPU (issue 13: a 2,000-step training curve of each mixer
-- stays within bf16 noise of the fp32 mode). Each mixer, and the 3:1 KDA/MLA hybrid, trains 2,000
-- steps of 16 x 512 bytes of Brown (16.4M tokens, about three passes over the training split) in
-- both modes (cuda.matmul; ATTNLAB_CUDA_MATMUL must be unset) and with two seeds. Read summary.md:
-- a mode's difference at a seed is within noise when it is small against the two seeds'
-- difference in one mode. 28 runs; 4 layers of width 256.
--   make repro-gpu-precision JOBS=8 MPS=1
local runs = {}
for _, mixer in ipairs({ "softmax", "mla", "linear", "gdn", "kda", "dplr" }) do
  runs[#runs + 1] = { ["model.mixer"] = mixer }
end
runs[#runs + 1] = { ["model.hybrid.ratio"] = "3:1" }

return {
  experiment = "precision",
  base = {
    device = "cuda",
    out_dir = "results/gpu", -- results/gpu/precision/
    task = "lm",
    model = { d_model = 256, n_layers = 4, n_heads = 4, hybrid = { linear = "kda", full = "mla" } },
    train = { steps = 2000, batch_size = 16, seq_len = 512, lr = 2e-3, warmup_steps = 100,
              log_every = 50, eval_every = 500, checkpoint_every = 500 },
    data = { path = "data/brown.txt" },
    eval = { max_batches = 64 },
  },
  runs = runs,
  grid = { ["cuda.matmul"] = { "bf16", "fp32" }, seed = { 1, 2 } },
}
