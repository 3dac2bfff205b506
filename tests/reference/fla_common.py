"""Setup shared by fla_layers.py and fla_export_check.py: dependency check, the fp32/fp64 stand-in
for flash_attn, numerics switches (TF32), fla's commit, the error metric.

Order matters: configure_env() before anything imports triton, install_flash_attn_shim() before
anything imports fla (fla.layers.attn and fla.layers.mla bind flash_attn_func at import time).
Nothing here imports torch at module level, so a missing torch is reported, not raised.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile
import traceback
import types

# What fla needs at import time (pyproject.toml: transformers>=4.45.0, einops; torch, triton), and
# what these scripts need on top (safetensors).
REQUIRED = [
    ("torch", "PyTorch"),
    ("triton", "Triton (fla's kernels)"),
    ("einops", "einops: every fla layer imports it (e.g. fla/layers/kda.py:15)"),
    ("transformers", "transformers>=4.45: fla/layers/attn.py and fla/layers/mla.py import "
                     "transformers.utils.logging, and fla/layers/__init__.py imports them, so even one layer needs it"),
    ("packaging", "packaging: fla/utils/_compat.py and fla/models/utils.py import it"),
    ("safetensors", "safetensors: the fixtures and checkpoints are safetensors files"),
]


def fail(msg, code=2):
    print(msg, file=sys.stderr)
    sys.exit(code)


def configure_env(ieee=False, no_backend_dispatch=False):
    """Environment switches read by Triton and fla; call before importing either.

    ieee: Triton's default precision of tl.dot on fp32 inputs is TF32 on NVIDIA; TRITON_F32_DEFAULT=ieee
    (what fla's own tests set, e.g. tests/ops/test_ttt.py:228) makes it IEEE fp32. A fresh
    TRITON_CACHE_DIR keeps kernels compiled under the other setting from being reused.
    """
    if ieee:
        os.environ["TRITON_F32_DEFAULT"] = "ieee"
        if "TRITON_CACHE_DIR" not in os.environ:
            os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton_ieee_cache_")
    if no_backend_dispatch:
        os.environ["FLA_DISABLE_BACKEND_DISPATCH"] = "1"  # fla/ops/backends/__init__.py: read at import


def preflight(need_cuda=True):
    problems = []
    for mod, why in REQUIRED:
        if importlib.util.find_spec(mod) is None:
            problems.append(f"  - python module '{mod}' not found ({why})")
    if importlib.util.find_spec("fla") is None:
        problems.append("  - python package 'fla' not found: put the folder that CONTAINS fla/ (the "
                        "flash-linear-attention source tree) on PYTHONPATH, e.g. "
                        "PYTHONPATH=/path/to/flash-linear-attention python3 ...")
    if problems:
        fail("cannot run: missing dependencies:\n" + "\n".join(problems) +
             "\n(fla itself is not pip-installed here; its pip dependencies are transformers and einops, "
             "install them with pip if allowed)")
    import torch
    if need_cuda and not torch.cuda.is_available():
        fail("cannot run: torch.cuda.is_available() is False; fla's Triton kernels need a GPU "
             "(fla/utils/_device.py also queries the device at import)")


# ---- flash_attn stand-in -------------------------------------------------------------------------

SHIM_MODE = {"impl": "einsum"}  # "einsum" (explicit softmax) or "sdpa" (torch's math SDPA), see flash_attn_func


def _shim_attention(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1)):
    """What flash_attn_func computes, in the inputs' dtype: q [B,T,H,D], k [B,S,Hk,D], v [B,S,Hk,Dv];
    query head h reads kv head h // (H / Hk); softmax_scale defaults to D^-0.5; the causal mask is
    aligned to the bottom right (query i sees keys j <= i + S - T); window_size = (left, right), -1 = none."""
    import torch
    B, T, H, D = q.shape
    S, Hk = k.shape[1], k.shape[2]
    if H != Hk:
        k = k.repeat_interleave(H // Hk, dim=2)
        v = v.repeat_interleave(H // Hk, dim=2)
    scale = softmax_scale if softmax_scale is not None else D ** -0.5
    i = torch.arange(T, device=q.device)[:, None] + (S - T)
    j = torch.arange(S, device=q.device)[None, :]
    allowed = torch.ones(T, S, dtype=torch.bool, device=q.device)
    if causal:
        allowed &= j <= i
    left, right = window_size
    if left >= 0:
        allowed &= j >= i - left
    if right >= 0:
        allowed &= j <= i + right
    if SHIM_MODE["impl"] == "sdpa":
        o = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed, scale=scale)
        return o.transpose(1, 2)
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale
    s = s.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhts,bshd->bthd", p, v)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    if dropout_p or softcap or alibi_slopes is not None or return_attn_probs:
        raise NotImplementedError("flash_attn stand-in: dropout, softcap, alibi and attention probs are not supported")
    return _shim_attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=tuple(window_size))


def flash_attn_varlen_func(*args, **kwargs):
    raise NotImplementedError("flash_attn stand-in: variable-length attention (attention_mask / cu_seqlens) is not "
                              "supported; these checks run full, unpadded batches")


def install_flash_attn_shim():
    """fla's Attention and MultiheadLatentAttention call flash_attn.flash_attn_func
    (fla/layers/attn.py:26,170; fla/layers/mla.py:33,220) and refuse to be built without it
    (attn.py:70-71, mla.py:95-96). flash-attn computes in fp16/bf16 only, so for fp32 (and fp64)
    checks a module named flash_attn with the same two functions, written with PyTorch, replaces
    it. Returns whether a real flash_attn was importable (it is not used either way)."""
    if "fla" in sys.modules:
        raise RuntimeError("install_flash_attn_shim() must run before fla is imported")
    real = importlib.util.find_spec("flash_attn") is not None
    mod = types.ModuleType("flash_attn")
    # a spec, so that importlib.util.find_spec("flash_attn") (transformers' availability checks)
    # finds the module instead of raising "flash_attn.__spec__ is None"
    mod.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None)
    mod.__doc__ = "attnlab stand-in for flash_attn (tests/reference/fla_common.py), fp32/fp64 capable"
    mod.__version__ = "attnlab-shim"
    mod.flash_attn_func = flash_attn_func
    mod.flash_attn_varlen_func = flash_attn_varlen_func
    sys.modules["flash_attn"] = mod
    return real


# ---- importing fla ---------------------------------------------------------------------------------

def import_modules(names):
    """Imports each module; a missing dependency is reported by name (import fla alone would hide it:
    fla/__init__.py:17-26 swallows ModuleNotFoundError of external packages)."""
    mods = {}
    for name in names:
        try:
            mods[name] = importlib.import_module(name)
        except ModuleNotFoundError as e:
            fail(f"cannot import {name}: python module '{e.name}' is missing ({e}).\n"
                 "fla needs torch, triton, einops, transformers>=4.45 and packaging.")
        except Exception:
            traceback.print_exc()
            fail(f"cannot import {name} (traceback above). Check that the fla source folder matches this "
                 "PyTorch/Triton/transformers.")
    return mods


def set_torch_fp32_precision():
    """fp32 matmuls in PyTorch without TF32 (already PyTorch's default; set explicitly)."""
    import torch
    torch.set_float32_matmul_precision("highest")


def force_ieee_solve_tril():
    """fla's KDA and GDN intra-chunk triangular solves pass input_precision='tf32' explicitly on
    GPUs with TF32 (fla/ops/kda/chunk_intra.py:20-23, fla/ops/gated_delta_rule/chunk_fwd.py:20-23),
    which TRITON_F32_DEFAULT does not override. Rebind the module constant before the first
    compile (Triton reads a kernel's constexpr globals when it compiles). Returns what was patched."""
    import triton.language as tl
    done = []
    for name in ("fla.ops.kda.chunk_intra", "fla.ops.gated_delta_rule.chunk_fwd"):
        try:
            m = importlib.import_module(name)
        except Exception:
            continue
        if hasattr(m, "SOLVE_TRIL_DOT_PRECISION"):
            m.SOLVE_TRIL_DOT_PRECISION = tl.constexpr("ieee")
            done.append(name)
    return done


def triton_precision_note(ieee, patched):
    if ieee:
        return f"ieee (TRITON_F32_DEFAULT=ieee; SOLVE_TRIL_DOT_PRECISION forced to ieee in {patched})"
    return ("fla default: tl.dot on fp32 uses Triton's default precision (TF32 on NVIDIA unless "
            "TRITON_F32_DEFAULT says otherwise; now " + os.environ.get("TRITON_F32_DEFAULT", "unset") +
            "), and the KDA/GDN intra-chunk solve uses TF32 explicitly")


def fla_commit(override=None):
    if override:
        return override
    if os.environ.get("FLA_COMMIT"):
        return os.environ["FLA_COMMIT"]
    try:
        import fla
        root = os.path.dirname(os.path.dirname(os.path.abspath(fla.__file__)))
        # only fla's own checkout: a source tree copied into another repository (a carried
        # folder inside attnlab's) would otherwise report that repository's commit
        top = subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=20)
        r = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        if (top.returncode == 0 and os.path.realpath(top.stdout.strip()) == os.path.realpath(root)
                and r.returncode == 0 and r.stdout.strip()):
            head = r.stdout.strip()
            s = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20)
            return head + ("-dirty" if s.returncode == 0 and s.stdout.strip() else "")
    except Exception:
        pass
    return "unknown (fla folder is not a git checkout; pass --fla-commit or set FLA_COMMIT)"


def versions():
    out = {}
    for mod in ("torch", "triton", "transformers", "einops", "safetensors", "fla"):
        try:
            out[mod] = str(importlib.import_module(mod).__version__)
        except Exception:
            out[mod] = "unknown"
    try:
        import torch
        out["cuda"] = str(torch.version.cuda)
        out["device"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    for opt in ("tilelang", "flash_kda", "flash_qla", "causal_conv1d"):
        out["optional:" + opt] = "present" if importlib.util.find_spec(opt) is not None else "absent"
    return out


def rel_diff(a, ref):
    """max |a - ref| / max |ref| in float64 (the metric of the golden tests, tests/golden.c)."""
    a = a.detach().double()
    ref = ref.detach().double()
    scale = max(ref.abs().max().item(), 1e-30) if ref.numel() else 1.0
    return (a - ref).abs().max().item() / scale if ref.numel() else 0.0
