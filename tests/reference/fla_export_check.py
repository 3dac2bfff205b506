#!/usr/bin/env python3
"""Checks a model that attnlab exported for flash-linear-attention (fla): loads FOLDER/config.json
and FOLDER/model.safetensors with fla's model classes through transformers' AutoModelForCausalLM
(importing fla registers model types kda, gated_deltanet, transformer, mla, ...), runs it in fp32
on the input_ids stored in FOLDER/reference_logits.safetensors and compares its logits with the
logits attnlab wrote there.

    PYTHONPATH=/path/to/flash-linear-attention \\
        python3 tests/reference/fla_export_check.py FOLDER --tol 1e-4

FOLDER/reference_logits.safetensors: input_ids int64 [B, T], logits float32 [B, T, V].
Prints max |fla - attnlab|, that divided by max |fla| (the relative metric), and the share of
positions whose argmax agrees; exits 0 when the chosen metric (--metric rel|abs, default rel) is
<= --tol, 1 when not, 2 when it could not run, 3 when model.safetensors does not match the
parameters fla builds from config.json (names, shapes, or a value fla did not load as written).

Numerics: the model runs in fp32 with fla's kernels. fla's softmax attention layers need flash_attn,
which has no fp32: a PyTorch stand-in computes the same function (tests/reference/fla_common.py).
By default Triton's fp32 dots are TF32 as in fla; --ieee makes them IEEE (see README_fla.md for
the tolerance to expect). --mode eval (default) is what inference does: KDA/GDN layers then use
fla's fused_recurrent kernels for T <= 64 and the chunk kernels above; --mode train runs the chunk
kernels always (no gradients are taken).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fla_common as C  # noqa: E402

FUSE_FLAGS = ("fuse_norm", "fuse_swiglu", "fuse_cross_entropy", "fuse_linear_cross_entropy", "use_l2warp")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--tol", type=float, required=True, help="pass when the metric is <= this")
    ap.add_argument("--metric", choices=("rel", "abs"), default="rel",
                    help="rel: max|fla - attnlab| / max|fla| (default); abs: max|fla - attnlab|")
    ap.add_argument("--loader", choices=("pretrained", "config"), default="pretrained",
                    help="pretrained: AutoModelForCausalLM.from_pretrained(folder) (default); config: "
                         "AutoModelForCausalLM.from_config + load_state_dict from model.safetensors")
    ap.add_argument("--mode", choices=("eval", "train"), default="eval")
    ap.add_argument("--ieee", action="store_true", help="IEEE fp32 dots in fla's Triton kernels (default: TF32 as fla)")
    ap.add_argument("--batch", type=int, default=0, help="run this many sequences at a time (default: all)")
    args = ap.parse_args()

    cfg_path = os.path.join(args.folder, "config.json")
    weights_path = os.path.join(args.folder, "model.safetensors")
    ref_path = os.path.join(args.folder, "reference_logits.safetensors")
    for p in (cfg_path, weights_path, ref_path):
        if not os.path.isfile(p):
            C.fail(f"cannot run: {p} not found")
    with open(cfg_path) as f:
        cfg_json = json.load(f)

    C.configure_env(ieee=args.ieee)
    C.preflight()
    real_flash_attn = C.install_flash_attn_shim()
    import torch
    C.set_torch_fp32_precision()
    mods = C.import_modules(["fla", "fla.models", "transformers", "safetensors", "safetensors.torch"])
    patched = C.force_ieee_solve_tril() if args.ieee else []
    transformers = mods["transformers"]
    safe_open = mods["safetensors"].safe_open

    vers = C.versions()
    print(f"fla {vers.get('fla')} commit {C.fla_commit()}; torch {vers.get('torch')}, triton {vers.get('triton')}, "
          f"transformers {vers.get('transformers')}; {vers.get('device', '?')}")
    print(f"precision: {C.triton_precision_note(args.ieee, patched)}")
    print("flash_attn: " + ("real package present but not used; " if real_flash_attn else "") +
          "fp32 stand-in from tests/reference/fla_common.py")
    mt = cfg_json.get("model_type")
    print(f"model_type {mt}: " + ", ".join(f"{k}={cfg_json.get(k)}" for k in
          ("hidden_size", "num_hidden_layers", "num_heads", "head_dim", "expand_v", "vocab_size",
           "intermediate_size", "norm_eps", "tie_word_embeddings", "attn") if k in cfg_json))
    on = [k for k in FUSE_FLAGS if cfg_json.get(k)]
    if on:
        print(f"note: {', '.join(on)} true in config.json (same math as the unfused path, other rounding; "
              "attnlab's export should write them false)")

    # ---- build and load
    try:
        if args.loader == "pretrained":
            model = transformers.AutoModelForCausalLM.from_pretrained(args.folder)
        else:
            config = transformers.AutoConfig.from_pretrained(args.folder)
            model = transformers.AutoModelForCausalLM.from_config(config)
    except Exception as e:
        import traceback
        traceback.print_exc()
        C.fail(f"cannot build the model from {cfg_path} ({type(e).__name__}: {e}); is model_type {mt!r} one that "
               "fla registers (kda, gated_deltanet, transformer, mla, ...)?")
    model = model.float()
    sd = model.state_dict()
    with safe_open(weights_path, framework="pt") as f:
        file_keys = list(f.keys())
        file = {k: f.get_tensor(k) for k in file_keys}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    problems = []
    missing = sorted(set(sd) - set(file_keys) - ({"lm_head.weight"} if tied else set()))
    unexpected = sorted(set(file_keys) - set(sd))
    if missing:
        problems.append(f"{len(missing)} parameter(s) fla expects are not in model.safetensors: {missing[:20]}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) in model.safetensors that fla does not have: {unexpected[:20]}")
    bad_shape = [f"{k}: file {list(file[k].shape)} vs fla {list(sd[k].shape)}"
                 for k in file_keys if k in sd and tuple(file[k].shape) != tuple(sd[k].shape)]
    if bad_shape:
        problems.append("shape mismatches: " + "; ".join(bad_shape[:20]))
    if problems:
        C.fail("model.safetensors does not match fla's model:\n  " + "\n  ".join(problems), code=3)
    if args.loader == "config":
        result = model.load_state_dict({k: v.float() for k, v in file.items()}, strict=False)
        left = [k for k in result.missing_keys if not (tied and k == "lm_head.weight")]
        if left or result.unexpected_keys:
            C.fail(f"load_state_dict: missing {left}, unexpected {result.unexpected_keys}", code=3)
    sd = model.state_dict()
    differ = [k for k in file_keys if not torch.equal(sd[k].detach().cpu().float(), file[k].float())]
    if differ:
        C.fail(f"{len(differ)} parameter(s) differ from model.safetensors after loading (not loaded as written): "
               f"{differ[:20]}", code=3)
    if tied and not torch.equal(sd["lm_head.weight"].cpu(), sd["model.embeddings.weight"].cpu()):
        C.fail("tie_word_embeddings is true but lm_head.weight != model.embeddings.weight after loading", code=3)
    print(f"weights: {len(file_keys)} tensors, names, shapes and values as fla loaded them: ok"
          + (" (lm_head tied to the embedding)" if tied else ""))

    # ---- run
    with safe_open(ref_path, framework="pt") as f:
        ids = f.get_tensor("input_ids")
        ref = f.get_tensor("logits")
    if ids.dtype != torch.int64 or ids.dim() != 2:
        C.fail(f"input_ids must be int64 [B, T], got {ids.dtype} {list(ids.shape)}")
    if ref.dim() != 3 or tuple(ref.shape[:2]) != tuple(ids.shape):
        C.fail(f"logits must be [B, T, V] with [B, T] = input_ids' shape, got {list(ref.shape)}")
    dev = torch.device("cuda")
    model = model.to(dev)
    model.train(args.mode == "train")
    B = ids.shape[0]
    step = args.batch or B
    outs = []
    with torch.no_grad():
        for s in range(0, B, step):
            out = model(input_ids=ids[s:s + step].to(dev), use_cache=False, return_dict=True)
            outs.append(out.logits.float().cpu())
    got = torch.cat(outs, 0)
    if got.shape != ref.shape:
        C.fail(f"fla's logits have shape {list(got.shape)}, attnlab's {list(ref.shape)} (vocab_size?)", code=1)
    ref = ref.float()
    if not torch.isfinite(got).all():
        C.fail("fla's logits contain non-finite values", code=1)
    if not torch.isfinite(ref).all():
        C.fail("attnlab's logits contain non-finite values", code=1)
    d = (got.double() - ref.double()).abs()
    max_abs = d.max().item()
    scale = got.double().abs().max().item()
    rel = max_abs / max(scale, 1e-30)
    where = divmod(int(d.amax(-1).argmax().item()), ids.shape[1])
    agree = (got.argmax(-1) == ref.argmax(-1)).double().mean().item()
    per_t = d.amax(dim=(0, 2))
    metric = rel if args.metric == "rel" else max_abs
    ok = metric <= args.tol
    print(f"B={B} T={ids.shape[1]} V={ref.shape[-1]} mode={args.mode}")
    print(f"max |fla - attnlab| = {max_abs:.3e} (at sequence {where[0]}, position {where[1]}); "
          f"max |fla| = {scale:.3e}; relative = {rel:.3e}; mean |diff| = {d.mean().item():.3e}")
    print(f"worst difference by position (first 8, last): " +
          ", ".join(f"{v:.1e}" for v in per_t[:8].tolist()) + f", ..., {per_t[-1].item():.1e}")
    print(f"argmax agreement: {100 * agree:.2f}% of positions")
    print(json.dumps({"max_abs": max_abs, "rel": rel, "argmax_agreement": agree, "metric": args.metric,
                      "tol": args.tol, "pass": ok}))
    print(("PASS" if ok else "FAIL") + f": {args.metric} {metric:.3e} {'<=' if ok else '>'} tol {args.tol:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
