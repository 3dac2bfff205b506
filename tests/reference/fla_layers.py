#!/usr/bin/env python3
"""Layer fixtures from flash-linear-attention (fla): KimiDeltaAttention, GatedDeltaNet and
MultiheadLatentAttention (with RoPE and with NoPE), forward and backward, for attnlab's layer tests.

For each case it builds fla's layer module (fla's own initialization, seeded; then the norm weights
and biases perturbed so that every parameter matters), draws x [B,T,hidden] and an upstream
gradient dy, and computes
  - the REFERENCE, in float64: fla's layer forward code itself, run on a float64 copy of the module,
    with only the leaf ops that exist solely as fp32 Triton kernels replaced by float64 PyTorch
    equivalents (fla's own references where fla has them: naive_recurrent_kda,
    naive_recurrent_gated_delta_rule, rms_norm_ref, rotary_embedding_ref); gradients by autograd;
  - fla's REAL fp32 path (the layer as fla runs it in training: chunk kernels, Triton conv, norms,
    rotary) forward and backward, and for T <= 64 the eval-mode fused_recurrent forward, and records
    how far each is from the reference (metadata), so the fixture is known to be what fla computes;
  - a second float64 evaluation through a different algorithm (fla's naive chunk form, or PyTorch's
    SDPA for MLA) as an estimate of the reference's own error.
It writes <out>/fla_<case>.safetensors with float32 tensors x, dy, y, dx, param.<name>, grad.<name>
(fla's state_dict names and shapes) and metadata (see tests/reference/README_fla.md).

Run on a GPU machine, with fla's source folder on PYTHONPATH:
    PYTHONPATH=/path/to/flash-linear-attention python3 tests/reference/fla_layers.py tests/fixtures/fla
Options: --cases a,b (default all; --list shows them), --ieee (IEEE fp32 dots in fla's kernels
instead of fla's TF32 default), --max-kernel-rel (sanity bound on fla-kernel vs reference),
--fla-commit SHA (when the fla folder is not a git checkout), --keep-failed.
"""
import argparse
import collections
import contextlib
import copy
import importlib
import json
import math
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fla_common as C  # noqa: E402

torch = nn = F = None  # bound in main() after the dependency check

# ---- cases ---------------------------------------------------------------------------------------
# kda/gdn kwargs go to the layer constructor; mla: position "rope" (fla's layer as is) or "nope"
# (its rotary replaced by the identity, see NoRotary). dt_shift raises dt_bias (stronger decay).
# T covers < 64, = 64, and > 64 not a multiple of 64 (fla's chunk size is 64).
CASES = [
    dict(name="kda_h64_d32_t37", kind="kda", B=2, T=37,
         kwargs=dict(hidden_size=64, num_heads=3, head_dim=32, expand_v=1.0, conv_size=4)),
    dict(name="kda_h64_d16_t70_expand2", kind="kda", B=2, T=70,
         kwargs=dict(hidden_size=64, num_heads=2, head_dim=16, expand_v=2.0, conv_size=4)),
    dict(name="kda_h96_d16_t100_strong_decay", kind="kda", B=2, T=100, dt_shift=3.0,
         kwargs=dict(hidden_size=96, num_heads=3, head_dim=16, expand_v=1.0, conv_size=4)),
    dict(name="kda_h128_d64_t64_noconv", kind="kda", B=2, T=64,
         kwargs=dict(hidden_size=128, num_heads=2, head_dim=64, expand_v=1.0, use_short_conv=False)),
    dict(name="gdn_h64_d32_t37", kind="gdn", B=2, T=37,
         kwargs=dict(hidden_size=64, num_heads=3, head_dim=32, expand_v=2.0, conv_size=4, use_gate=True)),
    dict(name="gdn_h96_d16_t100_strong_decay", kind="gdn", B=2, T=100, dt_shift=3.0,
         kwargs=dict(hidden_size=96, num_heads=3, head_dim=16, expand_v=1.0, conv_size=4, use_gate=True)),
    dict(name="gdn_h128_d64_t70_nogate_conv3", kind="gdn", B=2, T=70,
         kwargs=dict(hidden_size=128, num_heads=2, head_dim=64, expand_v=1.0, conv_size=3, use_gate=False)),
    dict(name="mla_rope_h64_t37", kind="mla", position="rope", B=2, T=37,
         kwargs=dict(hidden_size=64, num_heads=2, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16,
                     qk_rope_head_dim=8, qk_head_dim=24, v_head_dim=16, rope_theta=10000.0)),
    dict(name="mla_rope_h128_qlora_t100", kind="mla", position="rope", B=2, T=100,
         kwargs=dict(hidden_size=128, num_heads=4, q_lora_rank=48, kv_lora_rank=64, qk_nope_head_dim=32,
                     qk_rope_head_dim=16, qk_head_dim=48, v_head_dim=24, rope_theta=1000.0)),
    # NoPE as in Kimi Linear (mla_use_nope) and shared/spec/attention.md: the rope channels and
    # W_kr stay, nothing is rotated
    dict(name="mla_nope_h64_t37", kind="mla", position="nope", B=2, T=37,
         kwargs=dict(hidden_size=64, num_heads=2, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16,
                     qk_rope_head_dim=8, qk_head_dim=24, v_head_dim=16, rope_theta=10000.0)),
    dict(name="mla_nope_h96_t70", kind="mla", position="nope", B=2, T=70,
         kwargs=dict(hidden_size=96, num_heads=3, q_lora_rank=None, kv_lora_rank=48, qk_nope_head_dim=32,
                     qk_rope_head_dim=16, qk_head_dim=48, v_head_dim=32, rope_theta=10000.0)),
]

FLA_CLASS = {"kda": "fla.layers.kda.KimiDeltaAttention", "gdn": "fla.layers.gated_deltanet.GatedDeltaNet",
             "mla": "fla.layers.mla.MultiheadLatentAttention"}

# ---- float64 stand-ins for fla's Triton-only leaf ops ----------------------------------------------
CALLS = collections.Counter()   # which stand-ins ran (checked after each reference pass)
REF_CORE = {"impl": "recurrent"}  # "recurrent": fla's naive recurrent; "chunk16": fla's naive chunk form


class TorchF64:
    """Stands for the name `torch` inside fla/ops/*/naive.py during the reference pass: fla's naive
    functions cast their inputs with .to(torch.float) / .to(torch.float32) (fla/ops/kda/naive.py:51,
    fla/ops/gated_delta_rule/naive.py:40); here those names mean float64, everything else is torch."""
    def __getattr__(self, name):
        if name in ("float", "float32"):
            return torch.float64
        return getattr(torch, name)


def l2norm64(x, eps=1e-6):
    # fla/modules/l2norm.py:105 (rstd = 1 / sqrt(sum x^2 + eps)), eps default 1e-6 (l2norm.py:150)
    CALLS["l2norm"] += 1
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def kda_core64(q, k, v, g, beta, scale):
    """o of the gated delta rule with per-channel log decay g [B,T,HV,K] through fla's naive code."""
    naive = importlib.import_module("fla.ops.kda.naive")
    if REF_CORE["impl"] == "recurrent":
        o, _ = naive.naive_recurrent_kda(q, k, v, g, beta, scale=scale)
        return o.to(v.dtype)
    # fla's naive chunk form (fla/ops/kda/naive.py:69) needs T % chunk == 0: pad the end with zeros
    # (k = 0 and beta = 0 there), which leaves the earlier outputs unchanged (causal)
    T = q.shape[1]
    pad = (-T) % 16
    if pad:
        def padt(x):
            return torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], 1)
        q, k, v, g, beta = map(padt, (q, k, v, g, beta))
    o, _ = naive.naive_chunk_kda(q, k, v, g, beta, scale=scale, chunk_size=16)
    return o[:, :T].to(v.dtype)


def ref_chunk_kda(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                  use_qk_l2norm_in_kernel=False, use_gate_in_kernel=False, use_beta_sigmoid_in_kernel=False,
                  allow_neg_eigval=False, safe_gate=False, lower_bound=None, cu_seqlens=None, **kwargs):
    """fla.ops.kda.chunk_kda in float64 (semantics: fla/ops/kda/chunk.py:56-62, 417-418)."""
    CALLS["chunk_kda"] += 1
    if initial_state is not None or cu_seqlens is not None or output_final_state:
        raise NotImplementedError("reference: no initial state, varlen or final state")
    if safe_gate or lower_bound is not None:
        raise NotImplementedError("reference: lower_bound / safe_gate gate not implemented")
    K, HV = q.shape[-1], v.shape[2]
    if scale is None:
        scale = K ** -0.5
    if use_qk_l2norm_in_kernel:
        q, k = l2norm64(q), l2norm64(k)
    if use_beta_sigmoid_in_kernel:
        beta = torch.sigmoid(beta) * (2.0 if allow_neg_eigval else 1.0)
    if use_gate_in_kernel:
        # fla/ops/kda/gate.py:147: g = -exp(A_log) * softplus(g + dt_bias), dt_bias viewed [HV, K]
        A_log, dt_bias = kwargs["A_log"], kwargs.get("dt_bias")
        if dt_bias is not None:
            g = g + dt_bias.view(HV, K)
        g = -A_log.view(HV, 1).exp() * F.softplus(g)
    return kda_core64(q, k, v, g, beta, scale), None


def ref_chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                               use_qk_l2norm_in_kernel=False, use_beta_sigmoid_in_kernel=False,
                               allow_neg_eigval=False, cu_seqlens=None, **kwargs):
    """fla.ops.gated_delta_rule.chunk_gated_delta_rule in float64 (chunk.py:281-288, 569-570)."""
    CALLS["chunk_gdn"] += 1
    if initial_state is not None or cu_seqlens is not None or output_final_state:
        raise NotImplementedError("reference: no initial state, varlen or final state")
    H, K, HV = q.shape[2], q.shape[-1], v.shape[2]
    if HV != H:
        raise NotImplementedError("reference: GVA (num_v_heads != num_heads) not used here")
    if scale is None:
        scale = K ** -0.5
    if use_qk_l2norm_in_kernel:
        q, k = l2norm64(q), l2norm64(k)
    if use_beta_sigmoid_in_kernel:
        beta = torch.sigmoid(beta) * (2.0 if allow_neg_eigval else 1.0)
    if kwargs.get("use_gate_in_kernel"):
        # fla/ops/gated_delta_rule/gate.py:98: g = -exp(A_log) * softplus(g + dt_bias), per head
        A_log, dt_bias = kwargs["A_log"], kwargs.get("dt_bias")
        if dt_bias is not None:
            g = g + dt_bias
        g = -A_log.exp() * F.softplus(g)
    if REF_CORE["impl"] == "recurrent":
        naive = importlib.import_module("fla.ops.gated_delta_rule.naive")
        o, _ = naive.naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=scale)  # note: beta before g
        return o.to(v.dtype), None
    # second opinion: the same recurrence as KDA with the head's decay on every key channel
    return kda_core64(q, k, v, g.unsqueeze(-1).expand(*g.shape, K), beta, scale), None


def ref_causal_conv1d(x, weight=None, bias=None, residual=None, initial_state=None, output_final_state=False,
                      activation=None, backend=None, cu_seqlens=None, **kwargs):
    """fla.modules.conv.causal_conv1d in float64: y[t] = act(sum_i w[:, i] x[t - W + 1 + i] + b) (+ residual)
    (fla/modules/conv/triton/kernels.py:87-135), here through PyTorch's depthwise conv1d with W - 1
    zeros of left padding, as ShortConvolution's own nn.Conv1d parent would (short_conv.py:63-72)."""
    CALLS["conv"] += 1
    if initial_state is not None or cu_seqlens is not None or output_final_state:
        raise NotImplementedError("reference: no conv state or varlen")
    B, T, D = x.shape
    W = weight.shape[-1]
    y = F.conv1d(F.pad(x.transpose(1, 2), (W - 1, 0)), weight.unsqueeze(1), bias, groups=D).transpose(1, 2)
    if activation in ("silu", "swish"):
        y = F.silu(y)
    elif activation is not None:
        raise NotImplementedError(activation)
    if residual is not None:
        y = y + residual
    return y, None


def ref_rms_norm_gated(x, g, weight, bias, activation="swish", residual=None, prenorm=False,
                       residual_in_fp32=False, eps=1e-6):
    """fla.modules.fused_norm_gate.rms_norm_gated in float64 (kernel fused_norm_gate.py:82-104):
    y = x / sqrt(mean(x^2) + eps) * w (+ b), then y * g * sigmoid(g) (swish/silu) or y * sigmoid(g)."""
    CALLS["rms_norm_gated"] += 1
    if residual is not None:
        x = x + residual
    y = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    if activation in ("swish", "silu"):
        y = y * g * torch.sigmoid(g)
    elif activation == "sigmoid":
        y = y * torch.sigmoid(g)
    else:
        raise NotImplementedError(activation)
    return (y, x) if prenorm else y


def ref_rms_norm(x, weight, bias, residual=None, eps=1e-5, prenorm=False, residual_in_fp32=False):
    """fla.modules.layernorm.rms_norm through fla's own torch reference rms_norm_ref (layernorm.py:64)."""
    CALLS["rms_norm"] += 1
    ln = importlib.import_module("fla.modules.layernorm")
    return ln.rms_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=False)


def ref_rotary_embedding(x, cos, sin, interleaved=False, inplace=False, seqlen_offsets=0, cu_seqlens=None,
                         chunk_indices=None):
    """fla.modules.rotary.rotary_embedding through fla's torch reference rotary_embedding_ref (rotary.py:30)."""
    CALLS["rotary"] += 1
    if not (isinstance(seqlen_offsets, int) and seqlen_offsets == 0) or cu_seqlens is not None:
        raise NotImplementedError("reference: rotary at offset 0 without varlen only")
    rot = importlib.import_module("fla.modules.rotary")
    T = x.shape[1]
    return rot.rotary_embedding_ref(x, cos[:T], sin[:T], interleaved=interleaved)


def ref_update_cos_sin_cache(self, seqlen, device=None, dtype=None):
    """RotaryEmbedding._update_cos_sin_cache (rotary.py:409-455) computes the angles t * inv_freq in
    fp32 whatever the dtype; the reference computes them in float64 with the same formula
    (inv_freq = 1 / base^(arange(0, dim, 2) / dim), rotary.py:401-405)."""
    CALLS["rope_cache"] += 1
    if self.scale is not None:
        raise NotImplementedError("reference: XPos scale_base not used")
    t = torch.arange(seqlen, device=device, dtype=torch.float64)
    inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=device, dtype=torch.float64) / self.dim))
    freqs = torch.outer(t, inv_freq)
    self._cos_cached = torch.cos(freqs).to(dtype)
    self._sin_cached = torch.sin(freqs).to(dtype)
    self._seq_len_cached = 0  # the fp32 path must recompute its own table


@contextlib.contextmanager
def reference_patches():
    """Rebinds, for the duration, the names fla's layer code calls (checked to exist, restored after)."""
    rot = importlib.import_module("fla.modules.rotary")
    targets = [
        ("fla.layers.kda", "chunk_kda", ref_chunk_kda),
        ("fla.layers.gated_deltanet", "chunk_gated_delta_rule", ref_chunk_gated_delta_rule),
        ("fla.layers.gated_deltanet", "causal_conv1d", ref_causal_conv1d),      # fused q/k/v conv path
        ("fla.modules.conv.causal_conv1d", "causal_conv1d", ref_causal_conv1d),  # ShortConvolution.forward
        ("fla.modules.fused_norm_gate", "rms_norm_gated", ref_rms_norm_gated),
        ("fla.modules.layernorm", "rms_norm", ref_rms_norm),
        ("fla.modules.rotary", "rotary_embedding", ref_rotary_embedding),
        ("fla.ops.kda.naive", "torch", TorchF64()),
        ("fla.ops.gated_delta_rule.naive", "torch", TorchF64()),
    ]
    saved = []
    try:
        for modname, attr, new in targets:
            mod = importlib.import_module(modname)
            if not hasattr(mod, attr):
                raise RuntimeError(f"fla layout changed: {modname}.{attr} does not exist; update fla_layers.py")
            saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, new)
        saved.append((rot.RotaryEmbedding, "_update_cos_sin_cache", rot.RotaryEmbedding._update_cos_sin_cache))
        rot.RotaryEmbedding._update_cos_sin_cache = ref_update_cos_sin_cache
        yield
    finally:
        for obj, attr, old in reversed(saved):
            setattr(obj, attr, old)


def expected_calls(case, layer):
    """The stand-ins a reference pass of this layer must have gone through (else some Triton op ran
    on float64 data, or fla's code changed)."""
    kind = case["kind"]
    if kind == "kda":
        need = {"chunk_kda": 1, "rms_norm_gated": 1, "l2norm": 2}
        if layer.use_short_conv:
            need["conv"] = 3
    elif kind == "gdn":
        need = {"chunk_gdn": 1, "l2norm": 2, ("rms_norm_gated" if layer.use_gate else "rms_norm"): 1}
        if layer.use_short_conv:
            need["conv"] = 1
    else:
        need = {"rms_norm": 2 if layer.q_lora_rank is not None else 1}
        if case["position"] == "rope":
            need.update(rotary=2, rope_cache=1)
    return need


# ---- building a case -----------------------------------------------------------------------------

class NoRotary:  # placeholder, replaced by an nn.Module subclass in main() once torch is imported
    pass


def build_layer(case, mods, gen):
    kind, kw = case["kind"], dict(case["kwargs"])
    if kind == "kda":
        layer = mods["fla.layers.kda"].KimiDeltaAttention(**kw)
    elif kind == "gdn":
        layer = mods["fla.layers.gated_deltanet"].GatedDeltaNet(**kw)
    else:
        layer = mods["fla.layers.mla"].MultiheadLatentAttention(**kw)
        if case["position"] == "nope":
            # fla's MLA has no NoPE switch (fla/layers/mla.py:124,168-170 always rotate q_rot and
            # k_rot); the rotary submodule (no parameters, a non-persistent inv_freq buffer) is
            # replaced by the identity, so fla's forward runs unchanged without rotation
            layer.rotary = NoRotary()
    perturbed = perturb(layer, gen, case.get("dt_shift", 0.0))
    return layer, perturbed


def perturb(layer, gen, dt_shift):
    """Makes norm weights (init 1) and biases differ from their init so a wrong mapping shows."""
    ln = importlib.import_module("fla.modules.layernorm")
    fng = importlib.import_module("fla.modules.fused_norm_gate")
    norm_types = tuple(t for t in (ln.RMSNorm, fng.FusedRMSNormGated, getattr(nn, "RMSNorm", None)) if t is not None)
    changed = []
    with torch.no_grad():
        for mname, m in layer.named_modules():
            if isinstance(m, norm_types) and getattr(m, "weight", None) is not None:
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                changed.append(f"{mname}.weight" if mname else "weight")
        for name, p in layer.named_parameters():
            if name.endswith("bias") and name != "dt_bias":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
                changed.append(name)
        if dt_shift:
            layer.dt_bias.add_(dt_shift)
            changed.append(f"dt_bias(+{dt_shift})")
    return changed


def run_layer(layer, x):
    out = layer(hidden_states=x, attention_mask=None)
    return out[0] if isinstance(out, tuple) else out


def run_case(case, mods, args, meta_common):
    name, kind, B, T = case["name"], case["kind"], case["B"], case["T"]
    seed = args.seed + sum(ord(c) for c in name)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # fla's constructors draw from the global generator
    layer, perturbed = build_layer(case, mods, gen)
    hidden = case["kwargs"]["hidden_size"]
    x = torch.randn(B, T, hidden, generator=gen)
    dy = torch.randn(B, T, hidden, generator=gen)
    dev = torch.device("cuda")
    info = collections.OrderedDict()

    # fla's real fp32 path (training mode: the chunk kernels); its Triton kernels compile and
    # autotune for minutes per shape, so --kernels-for can limit it to some cases
    layer32 = layer.to(dev).float().train()
    ref_layer = copy.deepcopy(layer32)
    run_kernels = args.kernels_for == "all" or any(case["name"].startswith(p) for p in args.kernels_for.split(",") if p)
    y32, kernel_grads, bwd_note = None, None, "ok" if run_kernels else "not run (--kernels-for)"
    if run_kernels:
        x32 = x.to(dev).detach().clone().requires_grad_(True)
        y32 = run_layer(layer32, x32)
        try:
            y32.backward(dy.to(dev))
            kernel_grads = {n: p.grad.detach().clone() for n, p in layer32.named_parameters() if p.grad is not None}
            kernel_grads["dx"] = x32.grad.detach().clone()
        except Exception as e:  # GDN on Hopper with Triton 3.4 <= v < 3.7.1: fla/ops/common/chunk_o.py:717-722
            bwd_note = "refused: " + " ".join(str(e).split())[:300]
    y_fused = None
    if run_kernels and kind in ("kda", "gdn") and T <= 64:
        layer32.eval()  # fla switches to fused_recurrent for q_len <= 64 outside training (kda.py:212)
        with torch.no_grad():
            y_fused = run_layer(layer32, x.to(dev))
        layer32.train()

    # the float64 reference: fla's forward code on a float64 copy, leaf ops replaced
    layer64 = ref_layer.double().train()
    for p in layer64.parameters():
        p.grad = None
    x64 = x.to(dev, torch.float64).detach().clone().requires_grad_(True)
    CALLS.clear()
    REF_CORE["impl"], C.SHIM_MODE["impl"] = "recurrent", "einsum"
    with reference_patches():
        y64 = run_layer(layer64, x64)
        y64.backward(dy.to(dev).double())
    calls = dict(CALLS)
    for op, n in expected_calls(case, layer64).items():
        if calls.get(op, 0) < n:
            raise RuntimeError(f"reference pass did not go through the float64 stand-in '{op}' "
                               f"(calls: {calls}); fla's code path differs from what this script expects")
    if y64.dtype != torch.float64 or x64.grad.dtype != torch.float64:
        raise RuntimeError("reference pass did not stay in float64")
    # second float64 evaluation, another algorithm for the core (fla's naive chunk form / SDPA)
    REF_CORE["impl"], C.SHIM_MODE["impl"] = "chunk16", "sdpa"
    with reference_patches(), torch.no_grad():
        y64_alt = run_layer(copy.deepcopy(layer64), x64.detach())
    REF_CORE["impl"], C.SHIM_MODE["impl"] = "recurrent", "einsum"

    # tensors
    params = collections.OrderedDict((n, p) for n, p in layer32.named_parameters())
    grads64 = {n: p.grad for n, p in layer64.named_parameters()}
    out = collections.OrderedDict()
    out["x"] = x
    out["dy"] = dy
    out["y"] = y64.detach()
    out["dx"] = x64.grad.detach()
    omitted, zero_grads = [], []
    for n, p in params.items():
        if p.numel() == 0:
            omitted.append(f"{n} {list(p.shape)}")
            continue
        g = grads64[n]
        if g is None or g.abs().max().item() == 0.0:
            zero_grads.append(n)
        out["param." + n] = p.detach()
        out["grad." + n] = g.detach() if g is not None else torch.zeros_like(p, dtype=torch.float64)
    out = collections.OrderedDict((k, v.detach().to("cpu", torch.float32).contiguous()) for k, v in out.items())

    # how far fla's fp32 kernels are from the reference
    kernel_rel = collections.OrderedDict()
    if y32 is not None:
        kernel_rel["y"] = C.rel_diff(y32, y64)
    if kernel_grads is not None:
        kernel_rel["dx"] = C.rel_diff(kernel_grads["dx"], x64.grad)
        for n in params:
            if params[n].numel() and n in kernel_grads and grads64[n] is not None:
                kernel_rel["grad." + n] = C.rel_diff(kernel_grads[n], grads64[n])
    worst = max(kernel_rel.values()) if kernel_rel else float("nan")
    alt_rel = C.rel_diff(y64_alt, y64)
    info["kernel_rel"] = kernel_rel
    info["kernel_worst"] = worst
    info["fused_recurrent_rel_y"] = C.rel_diff(y_fused, y64) if y_fused is not None else None
    info["alt_rel_y"] = alt_rel

    problems = []
    if worst > args.max_kernel_rel:
        problems.append(f"fla's fp32 path differs from the float64 reference by {worst:.2e} > {args.max_kernel_rel:.0e}")
    if info["fused_recurrent_rel_y"] is not None and info["fused_recurrent_rel_y"] > args.max_kernel_rel:
        problems.append(f"fla's fused_recurrent forward differs by {info['fused_recurrent_rel_y']:.2e}")
    if alt_rel > 1e-9:
        problems.append(f"the two float64 evaluations differ by {alt_rel:.2e} (> 1e-9)")
    if zero_grads:
        problems.append(f"parameters without gradient: {zero_grads}")
    for k, v in out.items():
        if not torch.isfinite(v).all():
            problems.append(f"non-finite values in {k}")

    kw = dict(case["kwargs"])
    meta = dict(meta_common)
    meta.update({
        "kind": kind,
        "case": name,
        "fla_class": FLA_CLASS[kind],
        "constructor_kwargs": json.dumps(kw, sort_keys=True),
        "B": str(B), "T": str(T), "hidden_size": str(hidden), "seed": str(seed),
        "mode": "training (fla's chunk path); the reference does not depend on the mode",
        "init": ("fla's layer constructor init (torch.manual_seed(seed), CPU), then perturbed: " +
                 ", ".join(perturbed) + " (norm weights 1 + 0.2 N(0,1), biases 0.5 N(0,1))"),
        "inputs": "x, dy ~ N(0, 1) (torch.Generator seeded with seed)",
        "reference": ("float64: fla's layer forward on a float64 copy of the module; Triton-only leaf ops "
                      "replaced by float64 torch: " + ", ".join(f"{k} x{v}" for k, v in sorted(calls.items())) +
                      "; gradients by autograd of sum(y * dy)"),
        "error_estimate": json.dumps({
            "float64_second_algorithm_rel_y": alt_rel,
            "float32_storage_rel": 2.0 ** -24,
            "note": "the fixture's own error is about float32 rounding; fla_kernel_* say how far fla's fp32 kernels are",
        }),
        "fla_kernel_fp32_rel": json.dumps(kernel_rel),
        "fla_kernel_fp32_worst_rel": f"{worst:.3e}",
        "fla_kernel_fp32_backward": bwd_note,
        "fla_fused_recurrent_fp32_rel_y": ("n/a" if y_fused is None else f"{info['fused_recurrent_rel_y']:.3e}"),
        "rel_metric": "max|a - ref| / max|ref| over the tensor",
        "omitted_empty_params": json.dumps(omitted),
    })
    if kind == "mla":
        meta["position"] = case["position"]
        if case["position"] == "rope":
            meta["nope_method"] = "n/a"
        elif kw["qk_rope_head_dim"] == 0:
            meta["nope_method"] = ("qk_rope_head_dim = 0: no rope channels and no rope key at all "
                                   "(layer.rotary replaced by the identity, which has nothing to rotate)")
        else:
            meta["nope_method"] = ("fla's MLA has no NoPE switch: layer.rotary replaced by the identity; "
                                   "the rope channels and the shared rope key stay, unrotated (Kimi Linear's NoPE)")
        meta["attention_core"] = "flash_attn_func stand-in (tests/reference/fla_common.py), fla's default softmax scale"
    return out, meta, problems, info


def main():
    global torch, nn, F, NoRotary
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", help="output folder for fla_<case>.safetensors")
    ap.add_argument("--cases", default="", help="comma-separated case names or prefixes (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--seed", type=int, default=20260824)
    ap.add_argument("--ieee", action="store_true", help="IEEE fp32 dots in fla's kernels (default: fla's TF32)")
    ap.add_argument("--max-kernel-rel", type=float, default=2e-2,
                    help="fail a case when fla's fp32 path is farther than this from the reference (default 2e-2)")
    ap.add_argument("--fla-commit", default=None, help="fla commit to record (default: git rev-parse in fla's folder)")
    ap.add_argument("--kernels-for", default="all",
                    help="run fla's fp32 kernels (the check of the fixture against them) only for these case "
                         "prefixes, comma-separated; 'none' for no case (default: all)")
    ap.add_argument("--no-backend-dispatch", action="store_true", help="set FLA_DISABLE_BACKEND_DISPATCH=1")
    ap.add_argument("--keep-failed", action="store_true", help="write a case's file even when its sanity checks fail")
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(f"{c['name']:36s} {c['kind']}  B={c['B']} T={c['T']}  {c['kwargs']}"
                  + (f" position={c['position']}" if "position" in c else ""))
        return 0
    if not args.out_dir:
        ap.error("out_dir is required")
    selected = [c for c in CASES if not args.cases or any(c["name"].startswith(s) for s in args.cases.split(","))]
    if not selected:
        ap.error(f"no case matches --cases {args.cases} (see --list)")

    C.configure_env(ieee=args.ieee, no_backend_dispatch=args.no_backend_dispatch)
    C.preflight()
    real_flash_attn = C.install_flash_attn_shim()
    torch = importlib.import_module("torch")
    nn = torch.nn
    F = torch.nn.functional
    C.set_torch_fp32_precision()

    class _NoRotary(nn.Module):
        """Identity in place of MultiheadLatentAttention.rotary (NoPE)."""
        def forward(self, q, k, seqlen_offset=0, cu_seqlens=None, max_seqlen=None, chunk_indices=None):
            return q, k
    NoRotary = _NoRotary

    mods = C.import_modules(["fla", "fla.layers.kda", "fla.layers.gated_deltanet", "fla.layers.mla",
                             "fla.ops.kda.naive", "fla.ops.gated_delta_rule.naive", "fla.modules.layernorm",
                             "fla.modules.fused_norm_gate", "fla.modules.rotary", "fla.modules.conv.causal_conv1d",
                             "safetensors.torch"])
    patched = C.force_ieee_solve_tril() if args.ieee else []
    vers = C.versions()
    meta_common = {
        "generator": "tests/reference/fla_layers.py",
        "fla_commit": C.fla_commit(args.fla_commit),
        "fla_version": vers.get("fla", "unknown"),
        "versions": json.dumps(vers, sort_keys=True),
        "triton_fp32_dot_precision": C.triton_precision_note(args.ieee, patched),
        "flash_attn": ("real flash_attn present but not used; " if real_flash_attn else "") +
                      "stand-in from tests/reference/fla_common.py (flash_attn has no fp32)",
        "dtype": "float32 tensors; reference computed in float64",
    }
    os.makedirs(args.out_dir, exist_ok=True)
    save_file = mods["safetensors.torch"].save_file
    print(f"fla {meta_common['fla_version']} commit {meta_common['fla_commit']}")
    print(f"precision: {meta_common['triton_fp32_dot_precision']}")
    failed = []
    for case in selected:
        t0 = time.time()
        try:
            tensors, meta, problems, info = run_case(case, mods, args, meta_common)
        except Exception:
            traceback.print_exc()
            print(f"FAILED {case['name']}: exception (traceback above)")
            failed.append(case["name"])
            continue
        path = os.path.join(args.out_dir, f"fla_{case['name']}.safetensors")
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        meta["sanity"] = status
        written = not problems or args.keep_failed
        if written:
            save_file(dict(tensors), path, metadata=meta)
        fr = info["fused_recurrent_rel_y"]
        print(f"{case['name']}: {status}  ({time.time() - t0:.1f}s)\n"
              f"    fla fp32 chunk path vs float64 reference: worst {info['kernel_worst']:.2e} "
              f"(y {info['kernel_rel'].get('y', float('nan')):.2e}, backward {meta['fla_kernel_fp32_backward']})"
              + (f"; fused_recurrent y {fr:.2e}" if fr is not None else "")
              + f"; float64 second algorithm y {info['alt_rel_y']:.1e}")
        worst5 = sorted(info["kernel_rel"].items(), key=lambda kv: -kv[1])[:5]
        print("    largest: " + ", ".join(f"{k} {v:.1e}" for k, v in worst5))
        if problems:
            failed.append(case["name"])
        if written:
            print(f"    wrote {path}")
    if failed:
        print(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(selected)} cases written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
