/* The token-mixer interface. Every mixer (variants/<name>.c) describes itself and implements
 * these operations; the rest of attnlab only ever talks to a mixer through them and builds every
 * list of mixers from the registry, so adding a variant is one file plus one line in
 * variants/registry.c, and core/ names no mixer.
 *
 * Life of a mixer: create (declares its parameters) -> declare (its activations for a batch
 * shape; called again when the model is reshaped) -> forward/backward per step. Generation:
 * declare_decode (its cache for B sequences) -> decode_reset -> decode_step per token. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "backend.h"
#include "core/config/config.h"
#include "params.h"
#include "rope_table.h"

/* Where a decode step is: pos on the host (bounds checks), and in backend memory
 * pos_len = {pos, pos + 1}, which the step's kernels read (cache_write, attention_decode) instead
 * of taking pos as an argument, with the rotary tables' step rows (rope_cache_at) at pos: a step's
 * launches are then the same at every position, and the GPU replays them as one CUDA graph. */
typedef struct {
    long pos;
    const int *pos_len;
} DecodeAt;

/* What a mixer is told when it is built. */
typedef struct {
    const struct MixerOps *ops; /* the mixer being made */
    const ModelConfig *model; /* the mixer reads its own section (mixer_config) */
    int layer;                /* 0-based index, used in parameter names */
    RopeCache *rope;          /* shared rotary tables */
} MixerSpec;

typedef struct Mixer Mixer;

/* The core the op harness (`attnlab op`) and `bench kernels` run for a mixer. */
typedef enum {
    OP_CORE_NONE,               /* no core of its own */
    OP_CORE_DELTA_CHANNEL_GATE, /* the gated delta rule, one log decay per key channel */
    OP_CORE_DELTA_HEAD_GATE,    /* the gated delta rule, one log decay per head */
    OP_CORE_LINEAR,             /* causal linear attention */
    OP_CORE_SOFTMAX,            /* causal softmax attention */
    OP_CORE_DPLR,               /* the diagonal-plus-low-rank rule (fla's dplr), a decay per key channel */
} OpCore;

struct FlaExport; /* core/io/export_fla.h */

typedef struct MixerOps {
    /* ---- what the mixer is ---- */
    const char *name;          /* in configs (model.mixer, model.layers) and its section model.<name> */
    bool linear_time;          /* a fixed-size recurrent state (a hybrid's linear layers), else attention */
    /* its section model.<name>: fields with paths relative to it and offsets into its own config
     * struct of config_size bytes (MIXER_INT and its kind below), which mixer_config returns */
    const Field *fields;
    int n_fields;
    size_t config_size;
    /* rules between fields, checked when some layer uses the mixer (optional); src names the file */
    bool (*check)(const struct MixerOps *self, const ModelConfig *m, const void *cfg, const char *src, Error *err);
    const char *(*position)(const void *cfg); /* "rope" or "nope", for describe */
    OpCore op_core;
    const struct FlaExport *fla; /* its layer in flash-linear-attention's models (NULL: none) */
    const void *variant;         /* the variant's own data, for code two variants share (gdn and kda: their gates) */
    /* ---- the layer ---- */
    /* Allocates the mixer and declares its parameters (named "layers.<i>.mixer.<what>"). */
    Mixer *(*create)(const MixerSpec *spec, ParamSet *params);
    /* Declares activations kept from forward to backward (acts) and buffers live only inside
     * one forward or backward call (scratch, shared by all layers), for B x T tokens. */
    void (*declare)(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T);
    /* y += mixer(x); x and y are [B*T, d_model]. */
    void (*forward)(Mixer *m, const Backend *be, const float *x, float *y, int B, int T);
    /* dx = d(loss)/dx given dy = d(loss)/dy (dx overwritten); adds parameter gradients. */
    void (*backward)(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T);
    /* Declares the decode cache (KV cache or recurrent state, kept across steps) and the
     * per-step buffers (scratch, shared by all layers) for B sequences of up to max_context tokens. */
    void (*declare_decode)(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context);
    /* Empties every sequence's cache, and makes any weights the steps derive from the parameters
     * as they are now (declared in the cache arena; their copy for the products through
     * be->decode_weights(w, n, true): MLA's absorbed projections). */
    void (*decode_reset)(Mixer *m, const Backend *be, int B);
    /* One token per sequence at position at->pos (the same for all B): x, y [B, d_model], y +=
     * output. Equal to the forward at that position of the sequence fed so far. The mixer's input
     * is RMSNorm(x) with x_norm (the block's norm of the stream, which its products fold in through
     * linear_group: one launch fewer a layer on the GPU), or x itself when x_norm is NULL; a mixer
     * whose MixerOps leave decode_takes_norm false always gets NULL (the model normalizes). x may
     * be y (the model passes its stream as both): read x before adding to y. */
    void (*decode_step)(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                        const DecodeAt *at);
    bool decode_takes_norm;
    /* Forward multiply-adds x 2 per token at context T (for FLOP and MFU reports). */
    double (*flops_per_token)(const Mixer *m, int T);
    /* Bytes of decode state per sequence after `context` tokens (KV cache or fixed state). */
    size_t (*cache_bytes)(const Mixer *m, long context);
    void (*destroy)(Mixer *m);
} MixerOps;

struct Mixer {
    const MixerOps *ops;
};

/* A field of a mixer's section: path relative to model.<name>, offset into its struct T. */
#define MIXER_INT(path, T, member, def, lo, hi, doc) {path, FIELD_INT, offsetof(T, member), def, lo, hi, NULL, doc, 0}
#define MIXER_NUM(path, T, member, def, lo, hi, doc) {path, FIELD_NUM, offsetof(T, member), def, lo, hi, NULL, doc, 0}
#define MIXER_BOOL(path, T, member, def, doc) {path, FIELD_BOOL, offsetof(T, member), def, 0, 1, NULL, doc, 0}
#define MIXER_ENUM(path, T, member, def, choices, doc) {path, FIELD_ENUM, offsetof(T, member), def, 0, 0, choices, doc, 0}
#define MIXER_POSITION "rope|nope"
/* The section entries of a MixerOps: its field table F and its config struct T. */
#define MIXER_SECTION(F, T) .fields = F, .n_fields = (int)(sizeof F / sizeof F[0]), .config_size = sizeof(T)

/* ---- the registry (variants/registry.c) ---- */
int mixer_count(void);
const MixerOps *mixer_at(int i);
/* Adds a mixer to the registry's list (the tests add a toy one); only before the first config. */
void mixer_register(const MixerOps *ops);
const MixerOps *mixer_lookup(const char *name);
/* Looks the mixer up and creates it (NULL when the name is unknown). */
Mixer *mixer_create(const char *name, const MixerSpec *spec, ParamSet *params);
/* The names joined by '|': all mixers, the linear-time ones, or the full-attention ones. */
typedef enum { MIXERS_ALL, MIXERS_LINEAR, MIXERS_FULL } MixerSet;
const char *mixer_names(MixerSet which);
/* The default of model.mixer (MIXERS_ALL), model.hybrid.linear, model.hybrid.full. */
const char *mixer_default(MixerSet which);
/* The mixer's own section of a model config (its struct, of ops->config_size bytes). */
const void *mixer_config(const ModelConfig *m, const MixerOps *ops);
