"""Training speed of the same softmax model in PyTorch, for `attnlab bench train` (issue 13's
training row): pre-norm blocks of RMSNorm -> causal attention (scaled_dot_product_attention) ->
residual, RMSNorm -> SwiGLU (hidden 8/3 d_model rounded up to 64, attnlab's default) -> residual,
final RMSNorm, an untied LM head and cross-entropy, on random tokens; fp32 master weights, bf16
autocast, AdamW (fused where PyTorch has it). The shape defaults to the issue's: 12 layers,
d_model 768, 12 heads, sequence 2048, batch 8, byte vocabulary.

    python3 tests/reference/bench_torch_train.py [--modes eager,compile] [--steps 20] [--csv FILE]
    PYTHONPATH=path/to/flash-linear-attention python3 tests/reference/bench_torch_train.py --ratio 3:1

--ratio L:F makes the model a hybrid as attnlab's model.hybrid.ratio does (layer i is softmax
attention when i mod (L + F) >= L; 1:0 is all KDA): its linear-time layers are fla's
KimiDeltaAttention (heads of d_model / heads channels, short convolutions, fla's chunk kernels),
the same layer attnlab's kda layer is checked against, so `bench train --set
model.hybrid.ratio=3:1 --set model.hybrid.linear=kda --set model.hybrid.full=softmax` has its
counterpart here. (fla's MultiheadLatentAttention needs the flash-attn package, which the GPU
machines lack, so the full layers here are softmax attention.)

Prints, per mode, the median step time of --steps steps after --warmup (torch.compile compiles in
the warm-up), tokens/s, the parameter count, and the peak GPU memory (torch.cuda.max_memory_allocated),
which `bench train` is compared against. A mode this PyTorch cannot run (torch.compile before 2.0)
is reported skipped with the reason, never timed. --device cpu with a tiny shape is the smoke test."""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def causal_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):  # flash / memory-efficient kernels on a GPU
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]  # PyTorch before 2.0 (the CPU smoke test only)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(mask, float("-inf")).softmax(-1) @ v


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return self.out(causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C))


class KDA(nn.Module):
    """fla's KimiDeltaAttention, imported only when a model has such a layer"""

    def __init__(self, d, heads):
        super().__init__()
        try:
            from fla.layers import KimiDeltaAttention
        except ImportError as e:
            raise SystemExit(f"--ratio needs flash-linear-attention on PYTHONPATH ({e})")
        self.layer = KimiDeltaAttention(hidden_size=d, head_dim=d // heads, num_heads=heads, expand_v=1.0,
                                        use_short_conv=True, mode="chunk")

    def forward(self, x):
        return self.layer(x)[0]


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, eps, linear):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(d, eps), RMSNorm(d, eps)
        self.mixer = KDA(d, heads) if linear else Attention(d, heads)
        self.gate_up = nn.Linear(d, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


def parse_ratio(ratio):
    """(L, F) of an L:F hybrid, or None for an all-softmax model"""
    if not ratio:
        return None
    try:
        lin, full = (int(x) for x in ratio.split(":"))
    except ValueError:
        raise SystemExit(f"--ratio: '{ratio}' is not L:F (e.g. 3:1)")
    if lin < 0 or full < 0 or lin + full == 0:
        raise SystemExit(f"--ratio: '{ratio}' needs L, F >= 0 and L + F > 0")
    return lin, full


def is_linear(i, ratio):
    return ratio is not None and i % sum(ratio) < ratio[0]


class GPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, ratio=None, eps=1e-6, std=0.02):
        super().__init__()
        d_ff = ((8 * d + 2) // 3 + 63) // 64 * 64
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, d_ff, eps, is_linear(i, ratio)) for i in range(layers))
        self.norm = RMSNorm(d, eps)
        self.head = nn.Linear(d, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2 and ".layer." not in name:  # fla's layers keep their own initialization
                nn.init.normal_(p, std=std)

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def make_optimizer(model, device):
    try:  # the fused CUDA kernel where this PyTorch has it
        return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                 fused=device == "cuda"), "fused" if device == "cuda" else "plain"
    except TypeError:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1), "plain"


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench(mode, args):
    """Median step seconds, parameter count and peak memory of one mode, or the reason it cannot run."""
    if mode == "compile" and not hasattr(torch, "compile"):
        return None, f"torch.compile needs PyTorch 2.0 or later (this is {torch.__version__})"
    torch.manual_seed(0)
    model = GPT(args.vocab, args.d_model, args.layers, args.heads, parse_ratio(args.ratio)).to(args.device)
    params = sum(p.numel() for p in model.parameters())
    opt, kind = make_optimizer(model, args.device)
    step_fn = torch.compile(model) if mode == "compile" else model
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=args.device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    autocast = torch.autocast(device_type=args.device, dtype=torch.bfloat16)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        sync(args.device)
        t0 = time.perf_counter()
        with autocast:
            loss = step_fn(inputs, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(args.device)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    if not math.isfinite(loss.item()):
        raise SystemExit(f"{mode}: the loss is not finite ({loss.item()})")
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else float("nan")
    return (statistics.median(times), params, peak, kind), None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ratio", default="", help="L:F hybrid of fla's KDA and softmax layers (1:0: all KDA)")
    parser.add_argument("--csv")
    args = parser.parse_args()
    ratio = parse_ratio(args.ratio)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    layout = f"{args.ratio} KDA (fla) / softmax" if ratio else "softmax"
    print(f"torch {torch.__version__} on {where}: {args.layers} layers ({layout}), d_model {args.d_model}, "
          f"{args.heads} heads, sequence {args.seq}, batch {args.batch}, vocabulary {args.vocab}; "
          f"medians of {args.steps} steps")
    print(f"{'mode':<8} {'step ms':>9} {'tokens/s':>11} {'params':>12} {'peak GiB':>9}  optimizer")
    rows = []
    for mode in args.modes.split(","):
        result, why = bench(mode, args)
        if result is None:
            print(f"{mode:<8} skipped: {why}")
            continue
        step_s, params, peak, kind = result
        tps = args.batch * args.seq / step_s
        print(f"{mode:<8} {step_s * 1e3:9.2f} {tps:11,.0f} {params:12,} {peak / 2**30:9.2f}  AdamW ({kind})")
        rows.append((mode, step_s * 1e3, tps, params, peak))
    if args.csv:
        with open(args.csv, "w") as out:
            out.write("mode,step_ms,tokens_per_s,params,peak_bytes\n")
            for r in rows:
                out.write(f"{r[0]},{r[1]:.3f},{r[2]:.1f},{r[3]},{r[4]:.0f}\n")


if __name__ == "__main__":
    main()
