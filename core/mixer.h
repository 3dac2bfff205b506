/* The token-mixer interface. Every mixer (variants/<name>.c) implements these operations; the
 * model only ever talks to a mixer through them, so adding a variant is one file plus one line
 * in variants/registry.c.
 *
 * Life of a mixer: create (declares its parameters) -> declare (its activations for a batch
 * shape; called again when the model is reshaped) -> forward/backward per step. Generation:
 * declare_decode (its cache for B sequences) -> decode_reset -> decode_step per token. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "backend.h"
#include "config.h"
#include "params.h"
#include "rope_table.h"

/* What a mixer is told when it is built. */
typedef struct {
    const ModelConfig *model; /* the mixer reads its own section (model.<name>) */
    int layer;                /* 0-based index, used in parameter names */
    RopeCache *rope;          /* shared rotary tables */
} MixerSpec;

typedef struct Mixer Mixer;

typedef struct MixerOps {
    const char *name;
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
    /* Empties every sequence's cache. */
    void (*decode_reset)(Mixer *m, const Backend *be, int B);
    /* One token per sequence at position pos (the same for all B): x, y [B, d_model], y += output.
     * Equal to the forward at that position of the sequence fed so far. */
    void (*decode_step)(Mixer *m, const Backend *be, const float *x, float *y, int B, long pos);
    /* Forward multiply-adds x 2 per token at context T (for FLOP and MFU reports). */
    double (*flops_per_token)(const Mixer *m, int T);
    /* Bytes of decode state per sequence after `context` tokens (KV cache or fixed state). */
    size_t (*cache_bytes)(const Mixer *m, long context);
    void (*destroy)(Mixer *m);
} MixerOps;

struct Mixer {
    const MixerOps *ops;
};

/* variants/registry.c */
const MixerOps *mixer_lookup(const char *name);
/* Looks the mixer up and creates it (NULL when the name is unknown). */
Mixer *mixer_create(const char *name, const MixerSpec *spec, ParamSet *params);
/* "softmax|..." for messages. */
const char *mixer_names(void);
