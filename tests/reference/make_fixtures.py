"""Independent reference for attnlab's mixer cores, written from shared/spec/attention.md (and,
for dplr, the recurrence in the README's Token mixers section) in PyTorch: the plain recurrences
and the masked softmax, in float64, with gradients from autograd. It shares no code with attnlab.
It writes the golden fixtures the C tests compare against: <case>.in.safetensors (the op
harness's inputs) and <case>.ref.safetensors (outputs, gradients).

Run where PyTorch is installed (safetensors too, or the small writer below stands in for it):
    python3 tests/reference/make_fixtures.py tests/fixtures [CASE,CASE,...]
With a list of cases, only those files are written (the others are still made, in order, so that
every case draws the same random numbers whichever are written).
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

try:
    from safetensors.torch import save_file
except ImportError:  # the format is small: 8-byte little-endian header length, JSON header, raw data
    def save_file(tensors, path, metadata=None):
        codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
        header, blobs, offset = {"__metadata__": metadata or {}}, [], 0
        for name in sorted(tensors):
            t = tensors[name].contiguous()
            raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
            header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
            blobs.append(raw)
            offset += len(raw)
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

torch.set_default_dtype(torch.float64)


def delta_rule(q, k, v, g, beta, h0, scale):
    """Gated delta rule, one step at a time: S' = diag(exp(g)) S; u = beta (v - S'^T k);
    S = S' + k u^T; o = scale S^T q. g is [B,T,H,K] (kda) or [B,T,H] (gdn)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = h0 if h0 is not None else q.new_zeros(B, H, K, V)
    if g.dim() == 3:
        g = g.unsqueeze(-1).expand(B, T, H, K)
    out = []
    for t in range(T):
        S = S * g[:, t].exp().unsqueeze(-1)
        pred = torch.einsum("bhkv,bhk->bhv", S, k[:, t])
        u = beta[:, t].unsqueeze(-1) * (v[:, t] - pred)
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], u)
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1), S


def dplr(q, k, v, a, b, gk, h0, scale):
    """Diagonal plus low rank (fla's generalized delta rule), one step at a time: w = S^T a reads
    the state before the step's decay; S = diag(exp(gk)) S + b w^T + k v^T; o = scale S^T q.
    a, b, gk are [B,T,H,K]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = h0 if h0 is not None else q.new_zeros(B, H, K, V)
    out = []
    for t in range(T):
        w = torch.einsum("bhkv,bhk->bhv", S, a[:, t])
        S = (S * gk[:, t].exp().unsqueeze(-1) + torch.einsum("bhk,bhv->bhkv", b[:, t], w)
             + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t]))
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1), S


def linear_attention(q, k, v, h0, scale):
    """S_t = S_{t-1} + k_t v_t^T, o_t = scale S_t^T q_t."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = h0 if h0 is not None else q.new_zeros(B, H, K, V)
    out = []
    for t in range(T):
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1), S


def causal_softmax(q, k, v, scale):
    """o_t = sum_{j<=t} softmax_j(scale q_t . k_j) v_j; query head h reads kv head h // (H / Hkv)."""
    B, T, H, K = q.shape
    group = H // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bthk,bshk->bhts", q, k) * scale
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return torch.einsum("bhts,bshv->bthv", p, v)


def normal(gen, *shape):
    return torch.randn(*shape, generator=gen)


def make_case(name, op, gen, B=2, T=37, H=2, Hkv=None, K=16, V=12, decay=1.0, initial=True, dfinal=True,
              bf16=(), scale=None):
    """Random inputs as a layer would make them (unit q and k for the delta rule and dplr, log decays
    <= 0, beta in (0, 1); dplr's a a unit key through a gate in (0, 1) per channel, b another unit
    key scaled by -(0, 1)), the reference outputs, and the gradients of sum(o * do)
    (+ sum(final * dfinal))."""
    Hkv = Hkv or H
    x = {}
    if op in ("kda", "gdn", "dplr"):
        x["q"] = F.normalize(normal(gen, B, T, H, K), dim=-1)
        x["k"] = F.normalize(normal(gen, B, T, H, K), dim=-1)
    else:
        x["q"] = normal(gen, B, T, H, K) * 0.5
        x["k"] = normal(gen, B, T, Hkv, K) * 0.5
    x["v"] = normal(gen, B, T, Hkv, V)
    if op in ("kda", "gdn"):
        shape = (B, T, H, K) if op == "kda" else (B, T, H)
        x["g"] = -decay * F.softplus(normal(gen, *shape))
        x["beta"] = torch.sigmoid(normal(gen, B, T, H))
    if op == "dplr":
        x["a"] = F.normalize(normal(gen, B, T, H, K), dim=-1) * torch.sigmoid(normal(gen, B, T, H, K))
        x["b"] = -F.normalize(normal(gen, B, T, H, K), dim=-1) * torch.sigmoid(normal(gen, B, T, H, 1))
        x["gk"] = -decay * F.softplus(normal(gen, B, T, H, K))
    if op != "softmax" and initial:
        x["initial_state"] = normal(gen, B, H, K, V) * 0.5
    x["do"] = normal(gen, B, T, H, V)
    if op != "softmax" and dfinal:
        x["dfinal_state"] = normal(gen, B, H, K, V)
    if scale is not None:
        x["scale"] = torch.tensor([scale])
    # the file holds float32 (or bf16); the reference computes from exactly those values
    stored = {n: t.to(torch.bfloat16 if n in bf16 else torch.float32).contiguous() for n, t in x.items()}
    leaf = {n: t.to(torch.float64).requires_grad_(n not in ("do", "dfinal_state", "scale")) for n, t in stored.items()}
    s = float(stored["scale"][0]) if scale is not None else K ** -0.5
    if op in ("kda", "gdn"):
        o, final = delta_rule(leaf["q"], leaf["k"], leaf["v"], leaf["g"], leaf["beta"], leaf.get("initial_state"), s)
    elif op == "dplr":
        o, final = dplr(leaf["q"], leaf["k"], leaf["v"], leaf["a"], leaf["b"], leaf["gk"], leaf.get("initial_state"), s)
    elif op == "linear":
        o, final = linear_attention(leaf["q"], leaf["k"], leaf["v"], leaf.get("initial_state"), s)
    else:
        o, final = causal_softmax(leaf["q"], leaf["k"], leaf["v"], s), None
    loss = (o * leaf["do"]).sum()
    if final is not None and "dfinal_state" in leaf:
        loss = loss + (final * leaf["dfinal_state"]).sum()
    loss.backward()
    ref = {"o": o}
    if final is not None:
        ref["final_state"] = final
    for n in ("q", "k", "v", "g", "beta", "a", "b", "gk", "initial_state"):
        if n in leaf:
            ref["d" + n] = leaf[n].grad
    ref = {n: t.detach().to(torch.float32).contiguous() for n, t in ref.items()}
    meta = {"op": op, "generator": "tests/reference/make_fixtures.py", "precision": "float64 reference"}
    return name, stored, ref, meta


def main(out_dir, only=None):
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(20261123)
    cases = [
        make_case("kda", "kda", gen),
        make_case("kda_strong_decay", "kda", gen, T=29, decay=20.0),
        make_case("kda_bf16_inputs", "kda", gen, T=21, bf16=("q", "k", "v")),
        make_case("gdn", "gdn", gen),
        make_case("gdn_no_states", "gdn", gen, T=18, initial=False, dfinal=False),
        make_case("linear", "linear", gen, K=16, V=12),
        make_case("softmax_gqa", "softmax", gen, H=4, Hkv=2),
        make_case("softmax_scale", "softmax", gen, T=19, H=2, K=8, V=8, scale=0.3),
        make_case("dplr", "dplr", gen),
        make_case("dplr_strong_decay", "dplr", gen, T=29, decay=20.0),
        make_case("dplr_no_states", "dplr", gen, T=18, K=8, V=16, initial=False, dfinal=False),
    ]
    for name, stored, ref, meta in cases:
        if only and name not in only:
            continue
        save_file(stored, os.path.join(out_dir, name + ".in.safetensors"), metadata=meta)
        save_file(ref, os.path.join(out_dir, name + ".ref.safetensors"), metadata=meta)
        print(f"{name}: " + ", ".join(f"{n} {list(t.shape)}" for n, t in ref.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures", sys.argv[2].split(",") if len(sys.argv) > 2 else None)
