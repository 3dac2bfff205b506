/* The run configuration: a Lua file returns a table; every field is checked against one schema
 * table (name, type, default, range, doc) that also prints `attnlab help config`. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/util.h"

/* At most this many mixers can be registered (variants/registry.c, core/mixer.h). */
enum { MIXERS_MAX = 16 };

/* A list of names (model.layers). */
typedef struct {
    char **items;
    int n;
} NameList;

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
    void *mixer_cfg[MIXERS_MAX]; /* each registered mixer's own section model.<name>, by registry index
                                  * (its struct is the mixer's: core/mixer.h, mixer_config) */
} ModelConfig;

typedef struct {
    int steps;
    int batch_size;
    int seq_len;
    int grad_accum;
    int data_parallel; /* GPUs sharing each micro-batch (a launch setting; the environment's world wins) */
    double lr;
    double lr_min_ratio;
    int warmup_steps;
    char *lr_schedule; /* "cosine" | "linear" | "constant" */
    double weight_decay;
    double beta1, beta2, adam_eps;
    double grad_clip; /* 0: off */
    double stop_accuracy; /* finish once a validation pass's accuracy is above this; 0: off */
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
    int max_length_factor; /* lm, needle: also evaluate at 2x, 4x, ... up to this factor of train.seq_len */
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

typedef struct {
    int keys;            /* needles per sequence, each with its own key */
    int queries;         /* how many of them the question asks for */
    char *key_format;    /* "words" | "numbers" | "uuids" */
    char *value_format;  /* "numbers" | "words" | "uuids" */
    char *train_targets; /* "all" | "answer" */
} NeedleConfig;

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

/* The GPU backend's settings (read on device = "cuda" alone). */
typedef struct {
    char *matmul; /* "bf16" | "fp32" */
} CudaConfig;

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
    NeedleConfig needle;
    EfficiencyConfig efficiency;
    CudaConfig cuda;
    DebugConfig debug;
    /* not fields: where the config came from, for messages and defaults */
    char *source_path;
} Config;

typedef enum { FIELD_INT, FIELD_NUM, FIELD_BOOL, FIELD_STR, FIELD_ENUM, FIELD_LIST } FieldType;

typedef struct Field {
    const char *path;    /* "train.lr"; a mixer's own fields say "chunk_size" for model.<mixer>.chunk_size */
    FieldType type;
    size_t offset;       /* into Config, or into the mixer's section (mixer > 0) */
    const char *fallback; /* the default, written as on the command line */
    double min, max;     /* inclusive range for numbers */
    const char *choices; /* "a|b|c" for enums and the items of lists */
    const char *doc;
    int mixer;           /* 0: a field of Config; i + 1: of registered mixer i's section */
} Field;

/* The core's fields (config_schema.c); the names of mixers in its choices and defaults are
 * these placeholders, filled from the registry: */
#define MIXER_NAMES_ALL "<mixers>"
#define MIXER_NAMES_LINEAR "<linear-time mixers>"
#define MIXER_NAMES_FULL "<full-attention mixers>"
#define MIXER_DEFAULT "<default mixer>"
#define MIXER_DEFAULT_LINEAR "<default linear-time mixer>"
#define MIXER_DEFAULT_FULL "<default full-attention mixer>"
extern const Field config_core_fields[];
extern const int config_n_core_fields;
/* Every field: the core's, then each registered mixer's section (after the other model.*
 * fields), with whole paths and the registry's names filled in. Built on first use. */
int config_field_count(void);
/* Whether the table was built (a mixer registered after that would be missing from it). */
bool config_fields_built(void);
const Field *config_field(int i);

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
/* A field's current value as text ("3:1", "0.001", "true", "a,b" for a list). */
void config_field_text(const Config *c, const Field *f, char *buf, size_t len);
/* Whether a dotted path names a section of fields (model, model.hybrid, ...). */
bool config_is_section(const char *path);
/* Whether an override changes anything in the resolved config c: model.mixer under a hybrid
 * ratio or a layer list, a mixer's section with no layer of that mixer, a task's section in
 * another task do not. False with why (one phrase) otherwise. */
bool config_set_takes_effect(const Config *c, const char *assignment, char *why, size_t len);
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
/* The std of a block's output projections (mixer out, MLP down): init_std, or init_std /
 * sqrt(2 n_layers) under rescale_residual_init. */
double config_out_init_std(const ModelConfig *m);
/* Whether some layer of the model uses the mixer `name`. */
bool config_uses_mixer(const ModelConfig *m, const char *name);
/* The layers' mixers in words: "A" when all layers are A, else "3 A, 1 B" (each with its count, in
 * the order the layers first use it); config_layers_text: "4 layers of A", "4 layers (3 A, 1 B)". */
void config_mixers_text(const ModelConfig *m, char *out, size_t len);
void config_layers_text(const ModelConfig *m, char *out, size_t len);
