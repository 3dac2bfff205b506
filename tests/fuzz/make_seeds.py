#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/: hostile files (bad-*), each of which attnlab must
reject with a one-line error (tests/cli_test.sh checks that), and a few well-formed ones (ok-*) that
give the fuzzer valid structure to mutate. Run from the repository root; the output is committed,
so the corpora do not change unless this script does."""
import json, os, struct

ROOT = "tests/fuzz/corpus"

def put(harness, name, data):
    os.makedirs(f"{ROOT}/{harness}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"{ROOT}/{harness}/{name}", "wb") as f:
        f.write(data)

# ---- safetensors ----
def st(header, data=b"", header_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data

f32 = lambda n: struct.pack(f"<{n}f", *[0.5 * i for i in range(n)])
CKPT_META = {"attnlab_checkpoint": "1", "step": "3", "train_seconds": "0.5", "wall_seconds": "0.7",
             "tokens_seen": "768", "data_rng": "0123456789abcdef" * 4,
             "config": "return { model = { d_model = 32, n_layers = 1, n_heads = 2 } }"}
ok_w = {"param.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
put("safetensors", "ok-checkpoint.safetensors", st({**ok_w, "__metadata__": CKPT_META}, f32(6)))
B, T, H, K = 1, 4, 1, 2
n = B * T * H * K
qkv = {name: {"dtype": "F32", "shape": [B, T, H, K], "data_offsets": [i * 4 * n, (i + 1) * 4 * n]}
       for i, name in enumerate(["q", "k", "v"])}
put("safetensors", "ok-op-input.safetensors", st(qkv, f32(3 * n)))
put("safetensors", "ok-bf16-f16-scalar.safetensors",
    st({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},
        "s": {"dtype": "F32", "shape": [], "data_offsets": [8, 12]}}, b"\x80\x3f\x00\x40\x00\x3c\x00\x40" + f32(1)))

put("safetensors", "bad-too-short", b"\x10\x00\x00")
put("safetensors", "bad-header-length-past-end", st({"w": ok_w["param.w"]}, f32(6), header_len=4096))
put("safetensors", "bad-header-length-huge", struct.pack("<Q", 2**64 - 1) + b"{}")
put("safetensors", "bad-offsets-out-of-range",
    st({"w": {"dtype": "F32", "shape": [256], "data_offsets": [0, 1024]}}, f32(4)))
put("safetensors", "bad-offsets-past-2^64",
    st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551616]}}, f32(1)))
put("safetensors", "bad-offsets-overlap",
    st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, f32(6)))
put("safetensors", "bad-offsets-reversed",
    st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, f32(4)))
put("safetensors", "bad-hole", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32(4)))
put("safetensors", "bad-shape-overflow",
    st({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 0]}}))
put("safetensors", "bad-shape-product-wraps-to-small",
    st({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0, 4294967296], "data_offsets": [0, 0]}}))
put("safetensors", "bad-shape-negative", st({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, f32(4)))
put("safetensors", "bad-shape-float", st({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}, f32(2)))
put("safetensors", "bad-shape-too-many-dims",
    st({"w": {"dtype": "F32", "shape": [1] * 40, "data_offsets": [0, 4]}}, f32(1)))
put("safetensors", "bad-unknown-dtype", st({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 4]}}, b"abcd"))
put("safetensors", "bad-dtype-not-string", st({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, f32(1)))
put("safetensors", "bad-truncated-data",
    st({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}, f32(8)))
put("safetensors", "bad-size-mismatch", st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(2)))
put("safetensors", "bad-not-json", st(b'{"w": {"dtype": "F32", "shape": [1], "data_offs'))
put("safetensors", "bad-header-not-object", st(b"[1, 2, 3]"))
put("safetensors", "bad-nesting-bomb", st(b"{\"w\":" + b"[" * 20000 + b"]" * 20000 + b"}"))
put("safetensors", "bad-control-byte", st(b'{"w\x01": {}}'))
put("safetensors", "bad-nul-escape", st(b'{"w\\u0000x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', f32(1)))
put("safetensors", "bad-header-not-utf8", st(b'{"w\xff": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', f32(1)))
put("safetensors", "bad-duplicate-name",
    st(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
       b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', f32(2)))
put("safetensors", "bad-metadata-not-strings", st({"__metadata__": {"step": 3}}))
put("safetensors", "bad-tensor-missing-key", st({"w": {"dtype": "F32", "shape": [1]}}, f32(1)))
put("safetensors", "bad-tensor-extra-key",
    st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "mmap": True}}, f32(1)))
for key, value in [("step", "nan"), ("step", "1e300"), ("step", "-3"), ("step", "2.5"), ("train_seconds", "inf"),
                   ("data_rng", "zz" * 32), ("data_rng", "0" * 64), ("attnlab_checkpoint", "99")]:
    put("safetensors", f"bad-checkpoint-{key}-{value.replace('.', '_')[:8]}",
        st({**ok_w, "__metadata__": {**CKPT_META, key: value}}, f32(6)))
put("safetensors", "bad-checkpoint-no-config",
    st({**ok_w, "__metadata__": {k: v for k, v in CKPT_META.items() if k != "config"}}, f32(6)))

# ---- token shards (llm.c: 256 int32 header, magic 20240520, version 1, token count; uint16 tokens) ----
def shard(tokens, magic=20240520, version=1, count=None, header_ints=256, extra=b""):
    header = [magic, version, len(tokens) if count is None else count] + [0] * (header_ints - 3)
    return struct.pack(f"<{header_ints}i", *header) + struct.pack(f"<{len(tokens)}H", *tokens) + extra

toks = [(i * 37) % 256 for i in range(600)]
put("shard", "ok-bytes.bin", shard(toks))
put("shard", "ok-gpt2.bin", shard([(i * 7919) % 50257 for i in range(300)]))
put("shard", "bad-empty", b"")
put("shard", "bad-short-header", shard(toks)[:100])
put("shard", "bad-magic", shard(toks, magic=20240521))
put("shard", "bad-version", shard(toks, version=7))
put("shard", "bad-count-larger-than-file", shard(toks, count=10**6))
put("shard", "bad-count-smaller-than-file", shard(toks, count=10))
put("shard", "bad-count-negative", shard(toks, count=-5))
put("shard", "bad-count-int-max", shard(toks, count=2**31 - 1))
put("shard", "bad-no-tokens", shard([]))
put("shard", "bad-odd-trailing-byte", shard(toks, extra=b"\x01"))
put("shard", "bad-token-too-large", shard([1, 2, 65535, 3] * 40))

# ---- text ----
english = "The quick brown fox jumps over the lazy dog.\n" * 20
put("text", "ok-english.txt", english)
put("text", "ok-utf8-multibyte.txt", "naïve café — 日本語 🙂\n" * 20)
put("text", "bad-empty.txt", b"")
put("text", "bad-overlong-slash.txt", english.encode() + b"\xc0\xaf" + english.encode())
put("text", "bad-overlong-3byte.txt", b"abc\xe0\x80\xaf")
put("text", "bad-surrogate.txt", b"abc\xed\xa0\x80def")
put("text", "bad-truncated-sequence.txt", english.encode() + b"\xe2\x82")
put("text", "bad-above-u10ffff.txt", b"abc\xf4\x90\x80\x80")
put("text", "bad-lone-continuation.txt", b"abc\x80def")
put("text", "bad-latin1.txt", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1") * 10)
put("text", "bad-utf16.txt", "hello world\n".encode("utf-16"))
put("text", "bad-ff-bytes.txt", b"\xff\xfe\xfd" * 50)

# ---- config (Lua source; "--set\n" then one override per line) ----
# (the configs under configs/ are seeds too: tests/fuzz/run.sh adds that folder)
put("config", "ok-hybrid.lua", 'return { model = { n_layers = 4, hybrid = { ratio = "3:1", linear = "kda", full = "mla" } } }')
put("config", "ok-sweep-like.lua", 'local m = {}\nfor i = 1, 3 do m[#m + 1] = i end\nreturn { model = { d_model = 64 * #m } }')
put("config", "ok-set.txt", "--set\nmodel.d_model=128\ntrain.lr=0.001\nmodel.hybrid.ratio=1:1")
put("config", "bad-loop-forever.lua", "while true do end")
put("config", "bad-memory-bomb.lua", "local t = {}\nfor i = 1, 1e9 do t[i] = ('x'):rep(1e6) .. i end")
put("config", "bad-string-rep-huge.lua", "return { experiment = ('x'):rep(2^40) }")
put("config", "bad-recursion.lua", "local function f(n) return f(n + 1) + 1 end\nreturn f(1)")
put("config", "bad-os-execute.lua", "os.execute('touch /tmp/attnlab-pwned')\nreturn {}")
put("config", "bad-io-popen.lua", "io.popen('id')\nreturn {}")
put("config", "bad-io-write.lua", "local f = io.open('/tmp/attnlab-pwned', 'w')\nreturn {}")
put("config", "bad-loadlib.lua", "package.loadlib('/lib/x86_64-linux-gnu/libc.so.6', 'system')\nreturn {}")
put("config", "bad-require-outside.lua", "return require('../../../etc/passwd')")
put("config", "bad-binary-chunk.lua", "return load(string.dump(function() return {} end))()")
put("config", "bad-dofile.lua", "return dofile('/etc/passwd')")
put("config", "bad-syntax.lua", "return { model = { d_model = 64 }")
put("config", "bad-not-a-table.lua", "return 42")
put("config", "bad-unknown-field.lua", "return { train = { lr_shedule = 'cosine' } }")
put("config", "bad-wrong-type.lua", "return { model = { d_model = 'wide' } }")
put("config", "bad-out-of-range.lua", "return { model = { d_model = -64 } }")
put("config", "bad-nan.lua", "return { train = { lr = 0/0 } }")
put("config", "bad-huge-integer.lua", "return { model = { d_model = 2^63 } }")
put("config", "bad-error-multiline.lua", "error('first line\\nsecond line')")
put("config", "bad-error-table.lua", "error({})")
put("config", "bad-gc-metamethod.lua", "setmetatable({}, { __gc = function() while true do end end })\nreturn {}")
put("config", "bad-coroutine-loop.lua", "local co = coroutine.wrap(function() while true do end end)\nco()\nreturn {}")
put("config", "bad-set-unknown.txt", "--set\nmodel.d_modl=128")
put("config", "bad-set-not-a-number.txt", "--set\nmodel.d_model=abc")
put("config", "bad-set-no-equals.txt", "--set\nmodel.d_model")
put("config", "bad-set-overflow.txt", "--set\nmodel.d_model=99999999999999999999999")
put("config", "bad-set-d-model-not-multiple.txt", "--set\nmodel.d_model=100\nmodel.n_heads=3")

# ---- op harness: one selector byte (bits 0-1: softmax, linear, gdn, kda; bit 3: dplr instead;
# bit 2: chunks of 16), then the safetensors input ----
OPS = {"softmax": 0, "linear": 1, "gdn": 2, "kda": 3}
for name, path in [("softmax", "softmax_scale"), ("linear", "linear"), ("gdn", "gdn_no_states"),
                   ("kda", "kda_bf16_inputs")]:
    with open(f"tests/fixtures/{path}.in.safetensors", "rb") as f:
        put("op", f"ok-{path}", bytes([OPS[name] | 4]) + f.read())

def tensors(spec, dtype="F32"):
    """spec: [(name, shape)] -> a safetensors file with those F32 tensors (values 0.1 apart)."""
    header, data, off = {}, b"", 0
    for name, shape in spec:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + 4 * n]}
        data += struct.pack(f"<{n}f", *[-0.1 * (i % 7) for i in range(n)])
        off += 4 * n
    return st(header, data)

B, T, H, K = 1, 5, 2, 4
good = [("q", [B, T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K]), ("g", [B, T, H, K]), ("beta", [B, T, H])]
put("op", "ok-kda-small", bytes([3]) + tensors(good))
put("op", "bad-op-missing-beta", bytes([3]) + tensors(good[:4]))
put("op", "bad-op-k-length-differs", bytes([3]) + tensors([("q", [B, T, H, K]), ("k", [B, T + 1, H, K])] + good[2:]))
put("op", "bad-op-q-is-3d", bytes([1]) + tensors([("q", [T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K])]))
put("op", "bad-op-gdn-g-per-channel", bytes([2]) + tensors(good))
put("op", "bad-op-int-dtype", bytes([1]) + tensors([("q", [B, T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K])], "I32"))
put("op", "bad-op-state-shape", bytes([1]) + tensors([("q", [B, T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K]),
                                                       ("initial_state", [B, H, K, K + 1])]))
put("op", "bad-op-scale-two-values", bytes([0]) + tensors([("q", [B, T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K]),
                                                            ("scale", [2])]))
put("op", "bad-op-softmax-heads-not-multiple", bytes([0]) + tensors([("q", [B, T, 3, K]), ("k", [B, T, 2, K]),
                                                                     ("v", [B, T, 2, K])]))
put("op", "bad-op-empty-length", bytes([1]) + tensors([("q", [B, 0, H, K]), ("k", [B, 0, H, K]), ("v", [B, 0, H, K])]))
DPLR = 8
with open("tests/fixtures/dplr_no_states.in.safetensors", "rb") as f:
    put("op", "ok-dplr_no_states", bytes([DPLR | 4]) + f.read())
dplr = [("q", [B, T, H, K]), ("k", [B, T, H, K]), ("v", [B, T, H, K]), ("a", [B, T, H, K]), ("b", [B, T, H, K]),
        ("gk", [B, T, H, K])]
put("op", "ok-dplr-small", bytes([DPLR]) + tensors(dplr))
put("op", "bad-op-dplr-missing-gk", bytes([DPLR]) + tensors(dplr[:5]))
put("op", "bad-op-dplr-a-per-head", bytes([DPLR | 4]) + tensors(dplr[:3] + [("a", [B, T, H])] + dplr[4:]))
put("op", "bad-op-dplr-given-beta", bytes([DPLR]) + tensors(dplr + [("beta", [B, T, H])]))
