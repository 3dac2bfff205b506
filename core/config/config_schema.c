/* Every config field of the core: path, type, default, range, one-line doc. Each mixer defines
 * its own section (variants/<name>.c); config.c puts them together (config_field). This is the
 * only place a core field is defined; validation, defaults, --set, the resolved config.lua and
 * `attnlab help config` all read it. */
#include <float.h>
#include <stddef.h>

#include "config.h"

#define INT(path, member, def, lo, hi, doc) {path, FIELD_INT, offsetof(Config, member), def, lo, hi, NULL, doc, 0}
#define NUM(path, member, def, lo, hi, doc) {path, FIELD_NUM, offsetof(Config, member), def, lo, hi, NULL, doc, 0}
#define BOOL(path, member, def, doc) {path, FIELD_BOOL, offsetof(Config, member), def, 0, 1, NULL, doc, 0}
#define STR(path, member, def, doc) {path, FIELD_STR, offsetof(Config, member), def, 0, 0, NULL, doc, 0}
#define ENUM(path, member, def, choices, doc) {path, FIELD_ENUM, offsetof(Config, member), def, 0, 0, choices, doc, 0}
#define LIST(path, member, choices, doc) {path, FIELD_LIST, offsetof(Config, member), "", 0, 0, choices, doc, 0}

const Field config_core_fields[] = {
    STR("experiment", experiment, "", "results go to <out_dir>/<experiment>/<run>/; empty: the config file's name"),
    STR("run", run, "main", "name of this run inside its experiment"),
    STR("out_dir", out_dir, "results", "root folder for results"),
    ENUM("device", device, "cpu", "cpu|cuda", "backend that runs the model"),
    INT("threads", threads, "0", 0, 1024, "CPU threads for OpenMP and OpenBLAS; 0: all cores"),
    INT("seed", seed, "1", 0, 2147483647, "seed for initialization and data sampling"),
    ENUM("task", task, "lm", "lm|mqar|palindrome|stack|needle|efficiency",
         "lm: next token of data.path; mqar, palindrome, stack: synthetic recall; needle: data.path's text with "
         "needles to retrieve; efficiency: time and cache"),

    INT("model.vocab_size", model.vocab_size, "256", 2, 1 << 20, "token vocabulary; 256 for byte-level text"),
    INT("model.d_model", model.d_model, "256", 8, 65536, "width of the residual stream"),
    INT("model.n_layers", model.n_layers, "4", 1, 1024, "number of blocks (norm, mixer, norm, MLP)"),
    INT("model.n_heads", model.n_heads, "4", 1, 1024, "attention (query) heads per mixer"),
    INT("model.head_dim", model.head_dim, "0", 0, 4096, "channels per head; 0: d_model / n_heads"),
    INT("model.d_ff", model.d_ff, "0", 0, 1 << 20, "SwiGLU hidden width; 0: 8/3 d_model rounded up to a multiple of 64"),
    BOOL("model.mlp", model.mlp, "true",
         "each block's second half, norm -> SwiGLU MLP -> residual; false: norm -> mixer -> residual only"),
    BOOL("model.tie_embeddings", model.tie_embeddings, "false", "LM head shares the token embedding matrix"),
    NUM("model.norm_eps", model.norm_eps, "1e-6", 1e-12, 1, "epsilon inside every RMSNorm"),
    NUM("model.init_std", model.init_std, "0.02", 1e-6, 10,
        "std of the normal init of every weight matrix and short convolution (as fla's models)"),
    BOOL("model.rescale_residual_init", model.rescale_residual_init, "false",
         "GPT-2's init: mixer and MLP output projections drawn with init_std / sqrt(2 n_layers); off, as fla's models"),
    NUM("model.rope_base", model.rope_base, "10000", 1, 1e12, "RoPE base: angle of channel pair i is pos * base^(-2i/d)"),
    ENUM("model.mixer", model.mixer, MIXER_DEFAULT, MIXER_NAMES_ALL,
         "token mixer of every layer (without hybrid.ratio or layers)"),
    STR("model.hybrid.ratio", model.hybrid.ratio, "",
        "'L:F': L linear-time layers then F full-attention layers, repeated from the bottom; '': off"),
    ENUM("model.hybrid.linear", model.hybrid.linear, MIXER_DEFAULT_LINEAR, MIXER_NAMES_LINEAR,
         "the linear-time mixer of the hybrid"),
    ENUM("model.hybrid.full", model.hybrid.full, MIXER_DEFAULT_FULL, MIXER_NAMES_FULL, "the full-attention mixer of the hybrid"),
    LIST("model.layers", model.layers, MIXER_NAMES_ALL, "explicit mixer of every layer, bottom first (n_layers entries)"),
    /* then each mixer's own section, model.<name>.*, from the registry (variants/) */

    INT("train.steps", train.steps, "1000", 1, 1 << 30, "optimizer steps"),
    INT("train.batch_size", train.batch_size, "8", 1, 1 << 20, "sequences per micro-batch"),
    INT("train.seq_len", train.seq_len, "256", 2, 1 << 24, "tokens per training sequence"),
    INT("train.grad_accum", train.grad_accum, "1", 1, 1 << 16, "micro-batches per optimizer step"),
    INT("train.data_parallel", train.data_parallel, "1", 1, 4096,
        "GPUs that share each micro-batch, one process each (batch_size / N sequences per GPU, gradients summed "
        "with NCCL); `train --gpus` and a torchrun or srun world size take precedence"),
    NUM("train.lr", train.lr, "1e-3", 0, 10, "peak learning rate"),
    NUM("train.lr_min_ratio", train.lr_min_ratio, "0.1", 0, 1, "final learning rate as a fraction of the peak"),
    INT("train.warmup_steps", train.warmup_steps, "100", 0, 1 << 30, "linear warmup steps from 0 to the peak"),
    ENUM("train.lr_schedule", train.lr_schedule, "cosine", "cosine|linear|constant", "decay after warmup"),
    NUM("train.weight_decay", train.weight_decay, "0.1", 0, 10, "AdamW decoupled decay on weight matrices"),
    NUM("train.beta1", train.beta1, "0.9", 0, 0.999999, "AdamW first-moment decay"),
    NUM("train.beta2", train.beta2, "0.95", 0, 0.999999999, "AdamW second-moment decay"),
    NUM("train.adam_eps", train.adam_eps, "1e-8", 0, 1, "AdamW epsilon"),
    NUM("train.grad_clip", train.grad_clip, "1.0", 0, 1e9, "clip the global gradient norm to this; 0: off"),
    NUM("train.stop_accuracy", train.stop_accuracy, "0", 0, 1,
        "finish early once a validation pass's accuracy is above this (Zoology's MQAR protocol stops at 0.99); 0: off"),
    INT("train.log_every", train.log_every, "10", 1, 1 << 30, "steps between progress lines and metrics rows"),
    INT("train.eval_every", train.eval_every, "200", 0, 1 << 30, "steps between validation passes; 0: at the end only"),
    INT("train.checkpoint_every", train.checkpoint_every, "200", 0, 1 << 30,
        "steps between checkpoints; 0: at the end only"),

    STR("data.path", data.path, "data/brown.txt", "UTF-8 text (byte tokens) or llm.c uint16 token shard"),
    ENUM("data.format", data.format, "auto", "auto|text|shard", "auto: a shard when the file starts with the shard magic"),
    NUM("data.val_fraction", data.val_fraction, "0.1", 0.001, 0.5, "share of the data held out for validation"),
    INT("data.split_block", data.split_block, "8192", 64, 1 << 30,
        "tokens per block of the interleaved train/validation split"),

    INT("eval.max_batches", eval.max_batches, "16", 1, 1 << 20, "validation batches per evaluation, at most"),
    INT("eval.batch_size", eval.batch_size, "0", 0, 1 << 20, "sequences per validation batch; 0: train.batch_size"),
    INT("eval.examples", eval.examples, "1000", 1, 1 << 24, "synthetic tasks: held-out sequences"),
    INT("eval.seed", eval.seed, "20241", 0, 2147483647,
        "synthetic tasks: seed of the held-out set, the same whatever the training seed"),
    INT("eval.max_length_factor", eval.max_length_factor, "1", 1, 64,
        "lm, needle: also evaluate at 2x, 4x, ... this many times train.seq_len (length extrapolation)"),

    INT("mqar.num_kv_pairs", mqar.num_kv_pairs, "8", 1, 1 << 20, "key-value pairs per sequence"),
    NUM("mqar.power_a", mqar.power_a, "0.01", 1e-6, 1, "power law of query gaps: p(gap i) ~ i^(a-1); 1 is uniform"),
    BOOL("mqar.random_non_queries", mqar.random_non_queries, "true",
         "fill the positions between queries with random tokens (else 0)"),
    INT("mqar.train_examples", mqar.train_examples, "0", 0, 1 << 24,
        "N > 0: train on a fixed set of N sequences drawn from seed, reshuffled every epoch; 0: fresh ones every step"),
    INT("mqar.epochs", mqar.epochs, "0", 0, 1 << 20,
        "with train_examples: passes over the set; sets train.steps = ceil(epochs N / (batch_size grad_accum))"),
    NUM("stack.push_prob", stack.push_prob, "0.5", 0.01, 0.99, "probability of a push when the stack is not empty"),
    ENUM("stack.score", stack.score, "all", "all|pops",
         "which answers count: after every operation, or only after pops (the ones that need memory)"),
    INT("needle.keys", needle.keys, "1", 1, 64,
        "needles per sequence, each with its own key (RULER's single key: 1, multi-key: 4)"),
    INT("needle.queries", needle.queries, "1", 1, 64,
        "how many of the needles one question asks for, their values answered in the order asked (RULER's "
        "multi-query: 4 of 4); at most needle.keys"),
    ENUM("needle.key_format", needle.key_format, "words", "words|numbers|uuids",
         "keys: two words of data.path joined by '-', 7-digit numbers or UUIDs"),
    ENUM("needle.value_format", needle.value_format, "numbers", "numbers|words|uuids",
         "the values to retrieve: 7-digit numbers, two words joined by '-', or UUIDs"),
    ENUM("needle.train_targets", needle.train_targets, "all", "all|answer",
         "training loss on every next byte (language modelling with retrieval) or on the answer's bytes only"),

    STR("efficiency.contexts", efficiency.contexts, "1024,4096,16384,65536,131072",
        "context lengths at which decode time and cache are measured (comma-separated)"),
    INT("efficiency.prefill_max", efficiency.prefill_max, "16384", 0, 1 << 24,
        "longest context whose prefill (full forward) is timed"),
    INT("efficiency.decode_steps", efficiency.decode_steps, "8", 1, 1 << 16, "timed decode steps per context (median)"),
    INT("efficiency.batch_size", efficiency.batch_size, "1", 1, 1 << 16, "sequences decoded together"),

    ENUM("cuda.matmul", cuda.matmul, "bf16", "bf16|fp32",
         "GPU products: bf16 operands on tensor cores with fp32 accumulation (as autocast), or exact fp32 "
         "(reference-grade, slower); ATTNLAB_CUDA_MATMUL, when set, takes precedence and the run's config.lua says "
         "what ran"),

    INT("debug.nan_at_step", debug.nan_at_step, "0", 0, 1 << 30,
        "fault injection for tests: make step N non-finite (0: off)"),
    ENUM("debug.nan_in", debug.nan_in, "loss", "loss|grad|activation",
         "fault injection: poison the loss, a gradient of layer debug.nan_layer, or that layer's output"),
    INT("debug.nan_layer", debug.nan_layer, "0", 0, 1 << 20, "fault injection: the layer poisoned (grad, activation)"),
};

const int config_n_core_fields = (int)(sizeof config_core_fields / sizeof config_core_fields[0]);
