#!/usr/bin/env python3
"""Trains one attnlab MQAR run again with flash-linear-attention's layers, in PyTorch.

Issue 17: where a delta-rule mixer stays far below the accuracy the papers report, the same
configuration trained with fla's layers tells a bug in attnlab's layer from the protocol. This
script reads the resolved config.lua an attnlab run wrote (its model, optimizer, schedule, MQAR
task and evaluation) and trains that model with fla's GatedDeltaNet or KimiDeltaAttention in
place of attnlab's, everything else written here in plain PyTorch:

- blocks as attnlab's: x + mixer(RMSNorm(x)), then with model.mlp x + SwiGLU(RMSNorm(x)) of width
  model.d_ff (0: 8/3 d_model rounded up to a multiple of 64), a final RMSNorm, an untied head;
  every matrix and convolution N(0, init_std), biases 0 (fla's models' _init_weights; the layers
  keep their own A_log and dt_bias), weight decay on tensors of 2 or more dimensions only;
- AdamW with the config's betas, eps and decay, attnlab's lr_at (warm-up, then cosine or linear
  to lr * lr_min_ratio over train.steps), gradient clipping at train.grad_clip;
- MQAR drawn as Zoology's generator draws it (the distribution of experiments/mqar.c, from
  numpy's random numbers, so the sequences themselves differ): a fixed training set of
  mqar.train_examples reshuffled every epoch, or with mqar.train_examples = 0 fresh sequences
  every step (Kimi Linear's synthetic protocol, configs/repro/gpu/synthetic.lua); eval.examples
  held out, accuracy on the queries, evaluation every train.eval_every steps (0: at the end),
  stopping once it passes train.stop_accuracy.

GDN's core on Hopper: fla's chunked GDN backward does not run there with Triton 3.6, so
--gdn-core kda (the default) computes GDN's recurrence with fla's chunk_kda kernel, the head's
decay repeated over its key channels (the same recurrence: GDN is KDA with one decay a head;
tests/reference/fla_layers.py uses the same identity as its second opinion). --gdn-core fla
uses fla's chunk_gated_delta_rule, --gdn-core naive fla's naive_recurrent_gated_delta_rule (slow).

    PYTHONPATH=/path/to/flash-linear-attention python3 tests/reference/fla_mqar.py \\
        --config results/reference/gpu/mqar-zoology-t64/runs/<run>/config.lua --out /tmp/fla_run [--seed 2]

Writes OUT/metrics.jsonl (attnlab's rows: every train.log_every steps the mean training loss since
the last row, with val_loss and val_accuracy where it evaluated) and OUT/summary.json (written
last, atomically);
refuses an OUT that exists. Needs a CUDA GPU, PyTorch, Triton, einops, transformers and fla's
source tree (see README_fla.md).
"""
import argparse
import json
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fla_common as C  # noqa: E402

torch = nn = F = None  # bound in main() after the dependency check


# ---- the attnlab config ------------------------------------------------------------------------

def parse_value(text, where):
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"{where}: expected a string, boolean or number, got '{text}'")


def read_attnlab_config(path):
    """The resolved config.lua attnlab writes beside each run: one `key = value,` or `key = {` a
    line (what core/config writes; not general Lua). Returns nested dicts."""
    root, stack = {}, []
    cur = root
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise SystemExit(f"{path}: cannot read the config: {e.strerror}")
    for n, line in enumerate(lines, 1):
        s = line.strip()
        where = f"{path}:{n}"
        if not s or s.startswith("--") or s == "return {":
            continue
        if s in ("}", "},"):
            if not stack:
                continue  # the closing brace of `return {`
            cur = stack.pop()
            continue
        m = re.fullmatch(r"(\w+) = \{\},?", s)
        if m:
            cur[m.group(1)] = {}
            continue
        m = re.fullmatch(r"(\w+) = \{", s)
        if m:
            stack.append(cur)
            cur[m.group(1)] = {}
            cur = cur[m.group(1)]
            continue
        m = re.fullmatch(r"(\w+) = (.*?),?", s)
        if not m:
            raise SystemExit(f"{where}: expected 'key = value,' as attnlab writes a run's config.lua, got '{s}'")
        cur[m.group(1)] = parse_value(m.group(2), where)
    return root


def field(cfg, dotted, path):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SystemExit(f"{path}: field '{dotted}' missing (expected a resolved config.lua from an attnlab run)")
        node = node[part]
    return node


def setup_from_config(cfg, path, args):
    """Everything the run needs, refusing what this script does not reproduce."""
    g = lambda k: field(cfg, k, path)  # noqa: E731
    mixer = g("model.mixer")
    if mixer not in ("gdn", "kda"):
        raise SystemExit(f"{path}: model.mixer = '{mixer}': this script trains fla's gdn or kda layer only")
    if g("task") != "mqar":
        raise SystemExit(f"{path}: task = '{g('task')}': this script trains MQAR only")
    if g("model.tie_embeddings"):
        raise SystemExit(f"{path}: model.tie_embeddings = true: not reproduced here (untied head only)")
    if g("model.layers") or g("model.hybrid.ratio"):
        raise SystemExit(f"{path}: model.layers / model.hybrid.ratio set: this script builds one mixer in every layer")
    if g("model.rescale_residual_init"):
        raise SystemExit(f"{path}: model.rescale_residual_init = true: fla's models have no such rescale")
    m = f"model.{mixer}"
    if not g(f"{m}.qk_norm"):
        raise SystemExit(f"{path}: {m}.qk_norm = false: fla always L2-normalizes q and k")
    if g(f"{m}.position") != "nope":
        raise SystemExit(f"{path}: {m}.position = '{g(m + '.position')}': fla's {mixer} layer has no rotary")
    if mixer == "kda" and (g("model.kda.gate_rank") or not g("model.kda.output_gate")):
        raise SystemExit(f"{path}: model.kda.gate_rank / output_gate differ from fla's KDA (rank V, always gated)")
    if g("train.grad_accum") != 1 or g("train.data_parallel") != 1:
        raise SystemExit(f"{path}: train.grad_accum / data_parallel other than 1 are not reproduced here")
    d, h = g("model.d_model"), g("model.n_heads")
    head_dim = g(f"{m}.head_dim") or d // h
    d_ff = (g("model.d_ff") or ((8 * d + 2) // 3 + 63) // 64 * 64) if g("model.mlp") else 0  # config_d_ff
    return dict(
        mixer=mixer, vocab=g("model.vocab_size"), d_model=d, n_layers=g("model.n_layers"), n_heads=h,
        head_dim=head_dim, expand_v=float(g(f"{m}.expand_v")), short_conv=g(f"{m}.short_conv"),
        conv_size=g(f"{m}.conv_size"), output_gate=g(f"{m}.output_gate"), norm_eps=g("model.norm_eps"),
        init_std=g("model.init_std"), d_ff=d_ff,
        steps=g("train.steps"), batch=g("train.batch_size"), seq_len=g("train.seq_len"),
        lr=args.lr if args.lr is not None else g("train.lr"), lr_min_ratio=g("train.lr_min_ratio"),
        warmup=g("train.warmup_steps"), schedule=g("train.lr_schedule"), weight_decay=g("train.weight_decay"),
        betas=(g("train.beta1"), g("train.beta2")), eps=g("train.adam_eps"), grad_clip=g("train.grad_clip"),
        stop_accuracy=g("train.stop_accuracy"), eval_every=g("train.eval_every"), log_every=g("train.log_every"),
        seed=args.seed if args.seed is not None else g("seed"),
        pairs=g("mqar.num_kv_pairs"), power_a=g("mqar.power_a"), random_non_queries=g("mqar.random_non_queries"),
        train_examples=g("mqar.train_examples"), val_examples=g("eval.examples"), eval_seed=g("eval.seed"),
        eval_batch=g("eval.batch_size") or g("train.batch_size"), precision=g("cuda.matmul"),
        attnlab_run=g("run"), attnlab_experiment=g("experiment"))


def lr_at(s, step):
    """attnlab's schedule (core/optimizer.c lr_at), step counted from 0."""
    if step < s["warmup"]:
        return s["lr"] * (step + 1) / s["warmup"]
    lo = s["lr"] * s["lr_min_ratio"]
    span = s["steps"] - s["warmup"]
    p = min(1.0, (step - s["warmup"]) / (span - 1)) if span > 1 else 1.0
    if s["schedule"] == "cosine":
        return lo + (s["lr"] - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
    if s["schedule"] == "linear":
        return s["lr"] - (s["lr"] - lo) * p
    return s["lr"]


# ---- MQAR --------------------------------------------------------------------------------------

def mqar_set(n, s, rng):
    """n sequences as experiments/mqar.c describes them (Zoology's multiquery_ar, num_passes 1):
    the context k_1 v_1 ... k_P v_P, then each key again at 2P + 2g for P distinct gaps g drawn with
    weight (g + 1)^(a - 1) without replacement (numpy's choice, which Zoology calls), its value the
    target there; other targets -1."""
    import numpy as np
    V, T, P = s["vocab"], s["seq_len"], s["pairs"]
    space = (T - 2 * P) // 2
    w = (np.arange(space) + 1.0) ** (s["power_a"] - 1.0)
    p = w / w.sum()
    inputs = np.zeros((n, T), dtype=np.int64)
    targets = np.full((n, T), -1, dtype=np.int64)
    for i in range(n):
        keys = rng.choice(V // 2 - 1, P, replace=False) + 1
        values = rng.choice(V - V // 2, P, replace=False) + V // 2
        inputs[i, 0:2 * P:2] = keys
        inputs[i, 1:2 * P:2] = values
        pos = 2 * P + 2 * rng.choice(space, P, replace=False, p=p)
        inputs[i, pos] = keys
        targets[i, pos] = values
        if s["random_non_queries"]:
            rest = np.arange(2 * P, T)
            free = rest[inputs[i, rest] == 0]
            inputs[i, free] = rng.integers(0, V, size=free.size)
    return inputs, targets


class EpochOrder:
    """The k-th training sequence is example perm_e[k mod N] of epoch e = k // N, each epoch's
    permutation from its own stream, as attnlab orders its fixed set."""

    def __init__(self, n, seed):
        import numpy as np
        self.np, self.n, self.seed, self.cache = np, n, seed, {}

    def perm(self, epoch):
        if epoch not in self.cache:
            self.cache = {epoch: self.np.random.default_rng([self.seed, 2, epoch]).permutation(self.n)}
        return self.cache[epoch]

    def batch(self, step, B):
        k = self.np.arange(step * B, (step + 1) * B)
        epoch = k // self.n
        idx = self.np.empty(B, dtype=self.np.int64)
        for e in self.np.unique(epoch):  # a batch spans at most two epochs
            at = epoch == e
            idx[at] = self.perm(int(e))[k[at] % self.n]
        return idx


def training_batches(s, dev):
    """A function step -> (inputs, targets) on dev: the fixed set in EpochOrder, or with
    mqar.train_examples = 0 a fresh batch every step from one numpy stream."""
    import numpy as np
    rng = np.random.default_rng([s["seed"], 1])
    if s["train_examples"] == 0:
        def fresh(step):
            x, y = mqar_set(s["batch"], s, rng)
            return torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        return fresh, "fresh sequences every step"
    train_x, train_y = (torch.from_numpy(a).to(dev) for a in mqar_set(s["train_examples"], s, rng))
    order = EpochOrder(s["train_examples"], s["seed"])

    def fixed(step):
        idx = torch.from_numpy(order.batch(step, s["batch"])).to(dev)
        return train_x[idx], train_y[idx]
    return fixed, f"{s['train_examples']} training sequences"


# ---- the model ---------------------------------------------------------------------------------

def head_decay(a, A_log, dt_bias):
    """GDN's log decay a head, -exp(A_log) * softplus(a + dt_bias), with the exact softplus."""
    return -A_log.float().exp() * F.softplus(a.float() + (dt_bias.float() if dt_bias is not None else 0.0))


def gdn_through_chunk_kda(chunk_kda):
    """fla's GatedDeltaNet calls chunk_gated_delta_rule with the gate computed in the kernel; this
    stand-in computes the same gate per head (head_decay) and runs the recurrence through chunk_kda
    with that decay on every key channel."""
    def core(q, k, v, g, beta, A_log=None, dt_bias=None, initial_state=None, output_final_state=False,
             use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True, use_beta_sigmoid_in_kernel=True,
             allow_neg_eigval=False, state_v_first=True, cu_seqlens=None, scale=None, **kw):
        if initial_state is not None or output_final_state or cu_seqlens is not None or kw:
            raise NotImplementedError(f"gdn via chunk_kda: training without states or varlen only (got {sorted(kw)})")
        if use_gate_in_kernel:
            g = head_decay(g, A_log, dt_bias)
        g = g.unsqueeze(-1).expand(*g.shape, q.shape[-1]).contiguous()
        return chunk_kda(q=q, k=k, v=v, g=g, beta=beta, scale=scale, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
                         use_gate_in_kernel=False, use_beta_sigmoid_in_kernel=use_beta_sigmoid_in_kernel,
                         allow_neg_eigval=allow_neg_eigval, state_v_first=state_v_first)
    return core


def gdn_naive(naive_recurrent):
    def core(q, k, v, g, beta, A_log=None, dt_bias=None, initial_state=None, output_final_state=False,
             use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True, use_beta_sigmoid_in_kernel=True,
             allow_neg_eigval=False, state_v_first=True, cu_seqlens=None, scale=None, **kw):
        if initial_state is not None or output_final_state or cu_seqlens is not None or kw:
            raise NotImplementedError("gdn naive: training without states or varlen only")
        if use_qk_l2norm_in_kernel:  # fla's l2norm: x / sqrt(sum x^2 + 1e-6)
            q, k = (x.float() * torch.rsqrt(x.float().pow(2).sum(-1, keepdim=True) + 1e-6) for x in (q, k))
        if use_gate_in_kernel:
            g = head_decay(g, A_log, dt_bias)
        if use_beta_sigmoid_in_kernel:
            beta = torch.sigmoid(beta.float()) * (2.0 if allow_neg_eigval else 1.0)
        o, _ = naive_recurrent(q, k, v, beta, g, scale=scale)
        return o.to(v.dtype), None
    return core


def build_model(s, mods):
    class SwiGLU(nn.Module):
        """attnlab's MLP (core/mlp.h): down(silu(gate x) * up x)."""
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(s["d_model"], s["d_ff"], bias=False)
            self.up = nn.Linear(s["d_model"], s["d_ff"], bias=False)
            self.down = nn.Linear(s["d_ff"], s["d_model"], bias=False)

        def forward(self, x):
            return self.down(F.silu(self.gate(x)) * self.up(x))

    class Block(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.attn_norm = nn.RMSNorm(s["d_model"], eps=s["norm_eps"])
            kw = dict(hidden_size=s["d_model"], num_heads=s["n_heads"], head_dim=s["head_dim"],
                      expand_v=s["expand_v"], use_short_conv=s["short_conv"], conv_size=s["conv_size"],
                      norm_eps=s["norm_eps"], layer_idx=i, mode="chunk")
            if s["mixer"] == "gdn":
                self.mixer = mods["fla.layers.gated_deltanet"].GatedDeltaNet(use_gate=s["output_gate"], **kw)
            else:
                self.mixer = mods["fla.layers.kda"].KimiDeltaAttention(**kw)
            if s["d_ff"]:
                self.mlp_norm = nn.RMSNorm(s["d_model"], eps=s["norm_eps"])
                self.mlp = SwiGLU()

        def forward(self, x):
            x = x + self.mixer(hidden_states=self.attn_norm(x), attention_mask=None)[0]
            return x + self.mlp(self.mlp_norm(x)) if s["d_ff"] else x

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Embedding(s["vocab"], s["d_model"])
            self.layers = nn.ModuleList(Block(i) for i in range(s["n_layers"]))
            self.norm = nn.RMSNorm(s["d_model"], eps=s["norm_eps"])
            self.lm_head = nn.Linear(s["d_model"], s["vocab"], bias=False)

        def forward(self, tokens):
            x = self.embeddings(tokens)
            for layer in self.layers:
                x = layer(x)
            return self.lm_head(self.norm(x))

    model = Model()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, s["init_std"])
                if getattr(mod, "bias", None) is not None:
                    nn.init.zeros_(mod.bias)
    return model


# ---- training ----------------------------------------------------------------------------------

def evaluate(model, inputs, targets, batch, amp):
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad(), amp():
        for i in range(0, inputs.shape[0], batch):
            x, y = inputs[i:i + batch], targets[i:i + batch]
            logits = model(x).float()
            mask = y >= 0
            loss_sum += F.cross_entropy(logits[mask], y[mask], reduction="sum").item()
            correct += (logits[mask].argmax(-1) == y[mask]).sum().item()
            count += mask.sum().item()
    return loss_sum / count, correct / count


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main():
    global torch, nn, F
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="an attnlab run's resolved config.lua")
    ap.add_argument("--out", required=True, help="a new folder for metrics.jsonl and summary.json")
    ap.add_argument("--seed", type=int, help="instead of the config's seed")
    ap.add_argument("--lr", type=float, help="instead of the config's train.lr")
    ap.add_argument("--gdn-core", choices=("kda", "fla", "naive"), default="kda",
                    help="GDN's recurrence: fla's chunk_kda with the head decay on every key channel (default; "
                         "runs on Hopper), fla's chunk_gated_delta_rule, or fla's naive recurrence")
    ap.add_argument("--precision", choices=("config", "bf16", "fp32"), default="config",
                    help="matrix products in bf16 autocast or fp32 (default: the config's cuda.matmul)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (a smoke test)")
    args = ap.parse_args()

    s = setup_from_config(read_attnlab_config(args.config), args.config, args)
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out}: exists; give a new folder (nothing is overwritten)")
    C.configure_env()
    C.preflight(need_cuda=True)
    C.install_flash_attn_shim()
    import numpy as np
    import torch as _torch
    torch, nn, F = _torch, _torch.nn, _torch.nn.functional
    mods = C.import_modules(["fla.layers.gated_deltanet", "fla.layers.kda", "fla.ops.kda",
                             "fla.ops.gated_delta_rule.naive"])
    if s["mixer"] == "gdn" and args.gdn_core != "fla":
        core = (gdn_through_chunk_kda(mods["fla.ops.kda"].chunk_kda) if args.gdn_core == "kda"
                else gdn_naive(mods["fla.ops.gated_delta_rule.naive"].naive_recurrent_gated_delta_rule))
        mods["fla.layers.gated_deltanet"].chunk_gated_delta_rule = core
    precision = s["precision"] if args.precision == "config" else args.precision
    if precision not in ("bf16", "fp32"):
        raise SystemExit(f"{args.config}: cuda.matmul = '{precision}': expected bf16 or fp32")
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")

    t0 = time.time()
    next_batch, training = training_batches(s, dev)
    val_x, val_y = (torch.from_numpy(a).to(dev) for a in
                    mqar_set(s["val_examples"], s, np.random.default_rng([s["eval_seed"], 3])))
    print(f"data: {training} and {s['val_examples']} held-out sequences of {s['seq_len']} "
          f"tokens, {s['pairs']} pairs, vocabulary {s['vocab']} ({time.time() - t0:.1f} s)", flush=True)

    torch.manual_seed(s["seed"])
    model = build_model(s, mods).to(dev)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=s["lr"], betas=s["betas"], eps=s["eps"], fused=True)
    os.makedirs(args.out)
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    print(f"{s['mixer']} (fla, gdn core {args.gdn_core if s['mixer'] == 'gdn' else '-'}), {params:,} parameters, "
          f"{s['steps']} steps of {s['batch']}, lr {s['lr']:g}, seed {s['seed']}, {precision}", flush=True)

    steps = min(s["steps"], args.max_steps) if args.max_steps else s["steps"]
    status, reason, last = "finished", None, {}
    loss_sum, loss_count = torch.zeros((), device=dev), 0  # summed on the GPU: no sync a step
    model.train()  # evaluation too: fla's layers take another kernel (fused_recurrent) in eval mode
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(s, step)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = next_batch(step)
        with amp():
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, s["vocab"]), y.view(-1), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
        opt.step()
        loss_sum += loss.detach()
        loss_count += 1
        done = step + 1
        evaluating = done == steps or (s["eval_every"] > 0 and done % s["eval_every"] == 0)
        if not evaluating and done % s["log_every"] != 0:
            continue
        row = dict(step=done, loss=loss_sum.item() / loss_count, lr=lr, elapsed_s=time.time() - t0)
        if s["train_examples"]:
            row["epoch"] = done * s["batch"] / s["train_examples"]
        loss_sum.zero_()
        loss_count = 0
        if not math.isfinite(row["loss"]):
            status, reason = "failed", f"non-finite training loss before step {done}"
            break
        if evaluating:
            row["val_loss"], row["val_accuracy"] = evaluate(model, val_x, val_y, s["eval_batch"], amp)
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        last.update(row)
        if not evaluating and done % max(s["log_every"], steps // 20) == 0:  # about 20 progress lines a run
            print(f"step {done:6d}  train loss {row['loss']:.4g}  ({row['elapsed_s']:.0f} s)", flush=True)
        if evaluating:
            print(f"step {done:6d}  {'epoch %5.1f  ' % row['epoch'] if 'epoch' in row else ''}train loss {row['loss']:.4g}  "
                  f"val loss {row['val_loss']:.4g}  val accuracy {row['val_accuracy']:.4f}  ({row['elapsed_s']:.0f} s)",
                  flush=True)
            if s["stop_accuracy"] > 0 and row["val_accuracy"] > s["stop_accuracy"]:
                reason = (f"stopped early: val accuracy {row['val_accuracy']:.4f} is above "
                          f"train.stop_accuracy = {s['stop_accuracy']:g}")
                break
    metrics.close()
    if status == "finished" and reason is None and steps < s["steps"]:
        reason = f"stopped at --max-steps {steps} of train.steps = {s['steps']}"
    summary = dict(status=status, reason=reason, train_loss=last.get("loss"), **{k: last.get(k) for k in
                   ("step", "epoch", "val_loss", "val_accuracy", "elapsed_s")},
                   params=params, layers="fla", gdn_core=args.gdn_core if s["mixer"] == "gdn" else None,
                   precision=precision, setup={k: v for k, v in s.items()}, config=os.path.abspath(args.config),
                   fla_commit=C.fla_commit(), versions=C.versions())
    write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    print(f"{status}: {reason or 'trained to the end'}; summary in {args.out}/summary.json", flush=True)
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
