/* softmax: multi-head causal softmax attention, optionally grouped-query (n_kv_heads < n_heads),
 * with RoPE or NoPE. q, k and v come from one fused projection [q (H) | k (Hkv) | v (Hkv)]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/attention_layout.h"
#include "core/io/export_fla.h"
#include "core/linear.h"
#include "core/mixer.h"
#include "core/util.h"

/* its section, model.softmax */
typedef struct {
    int n_kv_heads; /* 0: as many as query heads */
    char *position; /* "rope" | "nope" */
} SoftmaxConfig;

static const Field softmax_fields[] = {
    MIXER_INT("n_kv_heads", SoftmaxConfig, n_kv_heads, "0", 0, 1024,
              "key/value heads (grouped-query attention); 0: n_heads (multi-head)"),
    MIXER_ENUM("position", SoftmaxConfig, position, "rope", MIXER_POSITION, "rotary embedding on q and k, or none"),
};

extern const MixerOps mixer_softmax;

static int kv_heads(const ModelConfig *mc, const SoftmaxConfig *c) { return c->n_kv_heads ? c->n_kv_heads : mc->n_heads; }

static bool softmax_check(const MixerOps *self, const ModelConfig *mc, const void *cfg, const char *src, Error *err) {
    (void)self;
    const SoftmaxConfig *c = cfg;
    if (mc->n_heads % kv_heads(mc, c) != 0)
        return error_set(err, "%s: model.n_heads (%d) must be a multiple of model.softmax.n_kv_heads (%d)", src,
                         mc->n_heads, kv_heads(mc, c));
    if (strcmp(c->position, "rope") == 0 && config_head_dim(mc) % 2 != 0)
        return error_set(err, "%s: model.softmax.position = 'rope' needs an even head dimension, got %d", src,
                         config_head_dim(mc));
    return true;
}

static const char *softmax_position(const void *cfg) { return ((const SoftmaxConfig *)cfg)->position; }

typedef struct {
    Mixer base;
    int C, H, Hkv, D;
    bool rope;
    const RopeTable *rope_table;
    Param wqkv, wo;
    /* activations */
    float *qkv, *att, *lse; /* qkv in the scratch where the attention keeps its own copies */
    void *saved;            /* what the attention keeps for its backward (attention_saved) */
    /* scratch */
    float *dqkv, *datt, *work;
    /* decode: cache [B, max_context, Hkv * D] for k and v; one step's buffers */
    float *k_cache, *v_cache, *qkv_step, *att_step, *decode_work;
    long max_context;
} Softmax;

static int qkv_width(const Softmax *s) { return (s->H + 2 * s->Hkv) * s->D; }

static AttnShape attn_shape(const Softmax *s, int B, int T) {
    int w = qkv_width(s);
    return (AttnShape){.B = B, .T = T, .H = s->H, .Hkv = s->Hkv, .Dk = s->D, .Dv = s->D, .q_stride = w,
                       .k_stride = w, .v_stride = w, .o_stride = (long)s->H * s->D,
                       .scale = 1.0f / sqrtf((float)s->D)};
}

static Mixer *softmax_create(const MixerSpec *spec, ParamSet *ps) {
    const ModelConfig *mc = spec->model;
    Softmax *s = xcalloc(1, sizeof *s);
    s->C = mc->d_model;
    s->H = mc->n_heads;
    const SoftmaxConfig *c = mixer_config(mc, &mixer_softmax);
    s->Hkv = kv_heads(mc, c);
    s->D = config_head_dim(mc);
    s->rope = strcmp(c->position, "rope") == 0;
    if (s->rope) s->rope_table = rope_cache_request(spec->rope, s->D);
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mixer.qkv_proj.weight", spec->layer);
    params_matrix(ps, &s->wqkv, name, qkv_width(s), s->C, (float)mc->init_std);
    snprintf(name, sizeof name, "layers.%d.mixer.o_proj.weight", spec->layer);
    params_matrix(ps, &s->wo, name, s->C, (long)s->H * s->D, (float)config_out_init_std(mc));
    return &s->base;
}

static void softmax_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T) {
    Softmax *s = (Softmax *)m;
    size_t N = (size_t)B * T;
    AttnShape shape = attn_shape(s, B, T);
    size_t saved = be->attention_saved(&shape); /* > 0: the backward reads its own copies, not qkv */
    arena_floats(saved ? scratch : acts, &s->qkv, N * qkv_width(s));
    arena_declare(acts, &s->saved, saved);
    arena_floats(acts, &s->att, N * s->H * s->D);
    arena_floats(acts, &s->lse, N * s->H);
    arena_floats(scratch, &s->dqkv, N * qkv_width(s));
    arena_floats(scratch, &s->datt, N * s->H * s->D);
    arena_declare(scratch, &s->work, be->attention_workspace(&shape));
}

static void rotate(const Softmax *s, const Backend *be, float *qkv, int B, int T, bool inverse) {
    const RopeTable *t = s->rope_table;
    void (*op)(float *, int, int, int, int, long, int, int, const float *, const float *, int) =
        inverse ? be->rope_backward : be->rope_forward;
    /* q's heads and then k's lie side by side in a row: one call rotates them all */
    op(qkv, B, T, s->H + s->Hkv, s->D, qkv_width(s), 0, s->D, t->cos, t->sin, 0);
}

/* The attention's shape. With RoPE, the attention rotates q and k (and its gradients) itself
 * where the backend can (the GPU's kernels, as they pack q and k: one pass over them fewer each
 * way); where the shape carries no tables, the layer rotates (attn_layer_rotates). */
static AttnShape rotary_shape(const Softmax *s, const Backend *be, int B, int T) {
    return attn_rotating_shape(be, attn_shape(s, B, T), s->rope_table);
}

static void softmax_forward(Mixer *m, const Backend *be, const float *x, float *y, int B, int T) {
    Softmax *s = (Softmax *)m;
    int N = B * T, w = qkv_width(s);
    linear_forward(be, s->qkv, x, &s->wqkv, N, s->C, w, false);
    AttnShape shape = rotary_shape(s, be, B, T);
    if (attn_layer_rotates(&shape, s->rope_table)) rotate(s, be, s->qkv, B, T, false);
    const float *q = s->qkv, *k = q + (size_t)s->H * s->D, *v = k + (size_t)s->Hkv * s->D;
    be->attention_forward(&shape, s->att, s->lse, s->saved, q, k, NULL, v, s->work);
    linear_forward(be, y, s->att, &s->wo, N, s->H * s->D, s->C, true);
}

static void softmax_backward(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T) {
    Softmax *s = (Softmax *)m;
    int N = B * T, w = qkv_width(s), HD = s->H * s->D;
    linear_backward(be, s->datt, dy, s->att, &s->wo, N, HD, s->C, false);
    AttnShape shape = rotary_shape(s, be, B, T);
    const float *q = s->qkv, *k = q + HD, *v = k + (size_t)s->Hkv * s->D;
    float *dq = s->dqkv, *dk = dq + HD, *dv = dk + (size_t)s->Hkv * s->D;
    be->attention_backward(&shape, dq, dk, NULL, dv, s->datt, q, k, NULL, v, s->att, s->lse, s->saved, s->work);
    if (attn_layer_rotates(&shape, s->rope_table)) rotate(s, be, s->dqkv, B, T, true);
    linear_backward(be, dx, s->dqkv, x, &s->wqkv, N, s->C, w, false);
}

/* Projections 2 C (w + H D) per token; scores and weighted sum 2 * 2 H D per visible key,
 * (T + 1) / 2 keys on average under the causal mask. */
static double softmax_flops(const Mixer *m, int T) {
    const Softmax *s = (const Softmax *)m;
    double proj = 2.0 * s->C * (qkv_width(s) + (double)s->H * s->D);
    double attn = 4.0 * s->H * s->D * (T + 1) / 2.0;
    return proj + attn;
}

static void softmax_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context) {
    Softmax *s = (Softmax *)m;
    size_t row = (size_t)s->Hkv * s->D;
    s->max_context = max_context;
    arena_floats(cache, &s->k_cache, (size_t)B * max_context * row);
    arena_floats(cache, &s->v_cache, (size_t)B * max_context * row);
    arena_floats(scratch, &s->qkv_step, (size_t)B * qkv_width(s));
    arena_floats(scratch, &s->att_step, (size_t)B * s->H * s->D);
    AttnShape shape = attn_shape(s, B, (int)max_context);
    arena_declare(scratch, &s->decode_work, be->attention_decode_workspace(&shape));
}

/* Nothing to clear: a step at position pos only reads cache rows [0, pos], which earlier steps wrote. */
static void softmax_decode_reset(Mixer *m, const Backend *be, int B) {
    (void)m;
    (void)be;
    (void)B;
}

static void softmax_decode_step(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                                const DecodeAt *at) {
    Softmax *s = (Softmax *)m;
    int w = qkv_width(s), HD = s->H * s->D, row = s->Hkv * s->D;
    if (at->pos >= s->max_context) die("decode: position %ld is past the cache of %ld tokens", at->pos, s->max_context);
    const LinearOut qkv = {s->wqkv.w, s->qkv_step, w, LINEAR_SET};
    be->linear_group(x, x_norm, B, s->C, 1, &qkv);
    if (s->rope) {
        const RopeTable *t = s->rope_table;
        be->rope_forward(s->qkv_step, B, 1, s->H + s->Hkv, s->D, w, 0, s->D, t->step_cos, t->step_sin, 0);
    }
    long seq = s->max_context * row;
    be->cache_write(s->k_cache, seq, row, at->pos_len, s->qkv_step + HD, w, B, row);
    be->cache_write(s->v_cache, seq, row, at->pos_len, s->qkv_step + HD + row, w, B, row);
    AttnShape shape = attn_shape(s, B, (int)s->max_context);
    shape.k_stride = shape.v_stride = row;
    be->attention_decode(&shape, seq, (int)at->pos + 1, at->pos_len + 1, s->att_step, s->qkv_step, s->k_cache,
                         s->v_cache, s->decode_work);
    linear_forward(be, y, s->att_step, &s->wo, B, HD, s->C, true);
}

static size_t softmax_cache_bytes(const Mixer *m, long context) {
    const Softmax *s = (const Softmax *)m;
    return sizeof(float) * 2 * (size_t)s->Hkv * s->D * (size_t)context;
}

static void softmax_destroy(Mixer *m) { free(m); }

/* ---- in flash-linear-attention: fla.layers.attn.Attention, alone (TransformerForCausalLM) or as
 * the `attn` layers of another model; always RoPE, head_dim = hidden_size / num_heads ---- */

static bool fla_check(const MixerOps *self, const ModelConfig *mc, const void *cfg, Error *err) {
    (void)self;
    const SoftmaxConfig *c = cfg;
    if (strcmp(c->position, "rope") != 0)
        return error_set(err, "model.softmax.position = '%s': fla's attention always uses RoPE", c->position);
    if (config_head_dim(mc) * mc->n_heads != mc->d_model)
        return error_set(err, "softmax heads of %d x %d channels in d_model %d: fla's attention has head_dim = "
                              "hidden_size / num_heads", mc->n_heads, config_head_dim(mc), mc->d_model);
    return true;
}

static void fla_attn_config(const MixerOps *self, cJSON *o, const ModelConfig *mc, const void *cfg) {
    (void)self;
    cJSON_AddNumberToObject(o, "num_kv_heads", kv_heads(mc, cfg));
    cJSON_AddNumberToObject(o, "rope_theta", mc->rope_base);
    cJSON_AddNullToObject(o, "window_size");
    cJSON_AddFalseToObject(o, "qkv_bias");
}

static void fla_config(const MixerOps *self, cJSON *o, const ModelConfig *mc, const void *cfg) {
    fla_attn_config(self, o, mc, cfg);
    cJSON_AddFalseToObject(o, "qk_norm");
}

/* qkv_proj is fla's q_proj, k_proj, v_proj one above the other */
static int fla_split(const MixerOps *self, const ModelConfig *mc, const void *cfg, const char *param, const char **names,
                     long *rows) {
    (void)self;
    if (strcmp(param, "qkv_proj.weight") != 0) return 0;
    long D = config_head_dim(mc), kv = (long)kv_heads(mc, cfg) * D;
    names[0] = "q_proj.weight", names[1] = "k_proj.weight", names[2] = "v_proj.weight";
    rows[0] = (long)mc->n_heads * D, rows[1] = rows[2] = kv;
    return 3;
}

static const FlaExport softmax_fla = {.model_type = "transformer",
                                      .architecture = "TransformerForCausalLM",
                                      .attn = true,
                                      .check = fla_check,
                                      .config = fla_config,
                                      .attn_config = fla_attn_config,
                                      .split = fla_split};

const MixerOps mixer_softmax = {
    .name = "softmax",
    .linear_time = false,
    MIXER_SECTION(softmax_fields, SoftmaxConfig),
    .check = softmax_check,
    .position = softmax_position,
    .op_core = OP_CORE_SOFTMAX,
    .fla = &softmax_fla,
    .create = softmax_create,
    .declare = softmax_declare,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .declare_decode = softmax_declare_decode,
    .decode_reset = softmax_decode_reset,
    .decode_step = softmax_decode_step,
    .decode_takes_norm = true,
    .flops_per_token = softmax_flops,
    .cache_bytes = softmax_cache_bytes,
    .destroy = softmax_destroy,
};
