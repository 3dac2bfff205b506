/* The run configuration: a Lua file returns a table; every field is checked against one schema
 * table (name, type, default, range, doc) that also prints `attnlab help config`. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util.h"

/* A list of names (model.layers). */
typedef struct {
    char **items;
    int n;
} NameList;

typedef struct {
    int n_kv_heads;  /* 0: as many as query heads */
    char *position;  /* "rope" | "nope" */
} SoftmaxConfig;

typedef struct {
    int q_lora_rank;      /* 0: queries straight from x */
    int kv_lora_rank;     /* 0: d_model / 2 */
    int qk_nope_head_dim; /* 0: model head_dim */
    int qk_rope_head_dim; /* 0: head_dim / 2 under RoPE; always 0 under NoPE */
    int v_head_dim;       /* 0: model head_dim */
    char *position;
} MlaConfig;

typedef struct {
    char *feature_map; /* "identity" | "elu1" | "relu" */
    bool normalize;
    int chunk_size;    /* 0: the recurrent form */
    char *position;
} LinearConfig;

/* gdn and kda share their switches; gate_rank is kda's low-rank gate width. */
typedef struct {
    int head_dim;    /* key channels per head; 0: the model's head_dim */
    double expand_v; /* value channels per head = head_dim * expand_v (fla's expand_v) */
    int chunk_size;
    bool short_conv;
    int conv_size;
    bool output_gate;
    bool qk_norm;
    char *position;
    int gate_rank; /* kda: 0 means the value head dimension */
} DeltaConfig;

typedef struct {
    char *ratio;  /* "L:F": L linear-time layers then F full-attention layers, repeated; "" off */
    char *linear; /* the linear-time mixer */
    char *full;   /* the full-attention mixer */
} HybridConfig;

typedef struct {
    int vocab_size;
    int d_model;
    int n_layers;
    int n_heads;
    int head_dim; /* 0: d_model / n_heads */
    int d_ff;     /* 0: 8/3 d_model rounded up to a multiple of 64 */
    bool mlp;     /* false: blocks are norm -> mixer -> residual only (Zoology's MQAR models) */
    bool tie_embeddings;
    double norm_eps;
    double init_std;
    bool rescale_residual_init; /* output projections drawn with init_std / sqrt(2 n_layers) */
    double rope_base;
    char *mixer;      /* every layer's mixer, unless hybrid.ratio or layers says otherwise */
    HybridConfig hybrid;
    NameList layers;  /* explicit mixer per layer */
    SoftmaxConfig softmax;
    MlaConfig mla;
    LinearConfig linear;
    DeltaConfig gdn, kda;
} ModelConfig;

typedef struct {
    int steps;
    int batch_size;
    int seq_len;
    int grad_accum;
    double lr;
    double lr_min_ratio;
    int warmup_steps;
    char *lr_schedule; /* "cosine" | "linear" | "constant" */
    double weight_decay;
    double beta1, beta2, adam_eps;
    double grad_clip; /* 0: off */
    int log_every;
    int eval_every;       /* 0: only at the end */
    int checkpoint_every; /* 0: only at the end */
} TrainConfig;

typedef struct {
    char *path;
    char *format; /* "auto" | "text" | "shard" */
    double val_fraction;
    int split_block;
} DataConfig;

typedef struct {
    int max_batches;
    int batch_size;        /* 0: train.batch_size */
    int examples;          /* synthetic tasks: size of the held-out set */
    int seed;              /* synthetic tasks: seed of the held-out set (fixed across training seeds) */
    int max_length_factor; /* lm: also evaluate at 2x, 4x, ... up to this factor of train.seq_len */
} EvalConfig;

typedef struct {
    int num_kv_pairs;
    double power_a;
    bool random_non_queries;
    int train_examples; /* 0: a fresh random batch every step; N: a fixed set of N, in epochs */
    int epochs;         /* with train_examples: sets train.steps; 0: train.steps decides */
} MqarConfig;

typedef struct {
    double push_prob;
    char *score; /* "all" | "pops" */
} StackConfig;

/* Fault injection, for the tests of what happens when training goes wrong. */
typedef struct {
    int nan_at_step; /* 0: off */
    char *nan_in;    /* "loss" | "grad" | "activation" */
    int nan_layer;
} DebugConfig;

typedef struct {
    char *contexts;  /* comma-separated context lengths */
    int prefill_max; /* longest context whose prefill is timed */
    int decode_steps;
    int batch_size;
} EfficiencyConfig;

typedef struct {
    char *experiment; /* "": the config file's name */
    char *run;
    char *out_dir;
    char *device;
    int threads;
    int seed;
    char *task;
    ModelConfig model;
    TrainConfig train;
    DataConfig data;
    EvalConfig eval;
    MqarConfig mqar;
    StackConfig stack;
    EfficiencyConfig efficiency;
    DebugConfig debug;
    /* not fields: where the config came from, for messages and defaults */
    char *source_path;
} Config;

typedef enum { FIELD_INT, FIELD_NUM, FIELD_BOOL, FIELD_STR, FIELD_ENUM, FIELD_LIST } FieldType;

typedef struct {
    const char *path;    /* "train.lr" */
    FieldType type;
    size_t offset;       /* into Config */
    const char *fallback; /* the default, written as on the command line */
    double min, max;     /* inclusive range for numbers */
    const char *choices; /* "a|b|c" for enums and the items of lists */
    const char *doc;
} Field;

extern const Field config_fields[];
extern const int config_n_fields;

/* Defaults for every field. */
void config_defaults(Config *c);
/* Loads a Lua config file (which may `require` files beside it or under configs/), applies
 * its fields over the defaults, then each "path=value" override, then the cross-field
 * checks. On failure fills err with a one-line message naming the file and field. */
bool config_load(Config *c, const char *path, char **overrides, int n_overrides, Error *err);
/* The same from Lua source text (checkpoints keep the resolved config as text). */
bool config_load_string(Config *c, const char *source, const char *chunk_name, char **overrides,
                        int n_overrides, Error *err);
/* For sweeps: applies a Lua table (at stack index idx) of fields over c, as a config file's table
 * is; keys may be nested sections or dotted paths. */
struct lua_State;
bool config_apply_table(Config *c, struct lua_State *L, int idx, const char *source, Error *err);
/* A field's current value as text ("3:1", "0.001", "true", "kda,mla"). */
void config_field_text(const Config *c, const Field *f, char *buf, size_t len);
/* Whether a dotted path names a section of fields (model, model.kda, ...). */
bool config_is_section(const char *path);
/* Applies one "path=value" override. */
bool config_set(Config *c, const char *assignment, Error *err);
/* Checks rules between fields (divisibility, lengths) and fills derived defaults. */
bool config_check(Config *c, Error *err);
/* The resolved config as a Lua file that loads back to the same values (caller frees). */
char *config_to_lua(const Config *c, const char *header_comment);
/* `attnlab help config`. */
void config_print_help(FILE *out);
const Field *config_find_field(const char *path);
/* Fills err with "unknown field 'PATH' in SOURCE (did you mean 'NEAREST'?)"; returns false. */
bool config_unknown_field(const char *path, const char *source, Error *err);
void config_free(Config *c);

/* Derived model sizes, after config_check. */
int config_head_dim(const ModelConfig *m);
int config_d_ff(const ModelConfig *m);
/* The mixer of layer i: model.layers[i], else the hybrid pattern, else model.mixer. */
const char *config_layer_mixer(const ModelConfig *m, int layer);
/* MLA's dimensions with the defaults filled in. */
typedef struct {
    int q_rank, kv_rank, nope, rope, v;
} MlaDims;
MlaDims config_mla_dims(const ModelConfig *m);
/* The key and value channels per head of a gdn or kda layer (d is model.gdn or model.kda). */
typedef struct {
    int k, v;
} DeltaDims;
DeltaDims config_delta_dims(const ModelConfig *m, const DeltaConfig *d);
/* The std of a block's output projections (mixer out, MLP down): init_std, or init_std /
 * sqrt(2 n_layers) under rescale_residual_init. */
double config_out_init_std(const ModelConfig *m);
/* Whether a mixer name is one of the linear-time family (linear, gdn, kda). */
bool mixer_is_linear_time(const char *name);
