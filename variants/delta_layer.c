/* The gdn/kda/dplr layer (see delta_layer.h). The forward and the decode step run the same code on
 * two sets of buffers: the full sequence (chunkwise core, full convolution) or one token per
 * sequence (recurrent step with the state and the convolution tail kept in the cache). */
#include "delta_layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/linear.h"
#include "core/util.h"
#include "short_conv.h"

/* the L2 norm of q and k: eps under the sum of squares (the forward and the decode step) */
static const float QK_NORM_EPS = 1e-6f;

/* The tensors of one forward. For training a layer keeps only the projections q_pre, k_pre, v_pre,
 * beta, the low-rank gate inputs f1 and z1, gdn's full output-gate input z, and the core's output o
 * (with the core's own saved states); the rest, 8 of kda's 12 [N, C]-sized tensors (15 before the
 * convolutions' outputs were folded into SiLU's), are cheap to make again from those (convolution
 * and SiLU, norms, gates, low-rank products), so they live in the
 * scratch every layer shares and the backward remakes them (remake_for_backward), bit for bit.
 * Those the backward is done with early share bytes with its later buffers (delta_layer_declare). */
typedef struct {
    float *q_pre, *k_pre, *v_pre; /* projections [N, HK], [N, HK], [N, HV] */
    float *q, *k, *v;             /* what the core sees: SiLU, then L2 norm and RoPE on q and k */
    float *q_rn, *k_rn;           /* 1 / ||.|| of each head row, for the L2 norm's backward */
    float *beta;                  /* [N, H] */
    float *f1, *a, *g;            /* kda's low-rank gate input [N, R]; gate input and log decay [N, H*gw] */
    float *o, *o_n, *o_rstd;      /* core output, per-head RMSNorm of it, 1/rms per head row */
    float *z1, *z, *y_g;          /* output gate: kda's low-rank [N, R], pre-activation and gated output [N, HV] */
    float *tmp_q, *tmp_k;         /* SiLU outputs before the L2 norm (without the convolutions) */
    float *r1, *r;                /* dplr's read gate: low-rank input [N, R], pre-activation [N, HK] */
    float *a_rd, *b_wr, *v_b;     /* dplr's core inputs: a = k sigmoid(r), b = -beta k [N, HK]; beta v [N, HV] */
} DeltaBuffers;

typedef struct {
    Mixer base;
    const DeltaGates *gates;
    DeltaConfig cfg;
    int C, H, K, V, W, R, gw;
    float eps;
    bool rope;
    const RopeTable *rope_table;
    Param w_q, w_k, w_v, w_b, w_a, w_f1, w_f2, A_log, dt_bias, o_norm, w_g, w_g1, w_g2, b_g,
        w_o, w_r1, w_r2, b_r;
    DeltaBuffers train, step;
    float *saved, *work;                                     /* core: states kept for the backward, scratch */
    float *d_out, *d_on, *d_o, *dz, *dz1, *dq, *dk, *dv, *dg, *dbeta, *da, *df1; /* backward scratch */
    float *d_alt, *d_alt_k, *d_alt_v; /* the input paths' second buffers (k's and v's: without q/k norms) */
    float *d_read, *d_write, *dr1;    /* dplr: the core's da and db; the read gate's low-rank gradient */
    ShortConv conv;                                            /* with cfg.short_conv */
    float *state;                                              /* decode cache, beside conv's tails */
} DeltaLayer;

/* ---- parameters ---- */

/* dt = exp(U(log 0.001, log 0.1)) clamped to >= 1e-4; dt_bias = softplus^-1(dt) = dt + log(-expm1(-dt)) */
static void init_dt_bias(float *w, size_t n, Rng *rng, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        double dt = exp(log(lo) + (log(hi) - log(lo)) * rng_uniform(rng));
        if (dt < 1e-4) dt = 1e-4;
        w[i] = (float)(dt + log(-expm1(-dt)));
    }
}

static void add_param(ParamSet *ps, Param *p, int layer, const char *what, long rows, long cols, float std) {
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mixer.%s", layer, what);
    params_matrix(ps, p, name, rows, cols, std);
}

static void add_custom(ParamSet *ps, Param *p, int layer, const char *what, int ndim, const long *shape, bool decay,
                       ParamInitFn fn, float a, float b) {
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mixer.%s", layer, what);
    params_custom(ps, p, name, ndim, shape, decay, fn, a, b);
}

/* ---- its section ---- */

DeltaDims delta_layer_dims(const ModelConfig *m, const DeltaConfig *c) {
    DeltaDims r;
    r.k = c->head_dim ? c->head_dim : config_head_dim(m);
    r.v = (int)lround(r.k * c->expand_v);
    return r;
}

bool delta_layer_check(const MixerOps *self, const ModelConfig *m, const void *cfg, const char *src, Error *err) {
    const DeltaConfig *c = cfg;
    const char *name = self->name;
    DeltaDims d = delta_layer_dims(m, c);
    if (strcmp(c->position, "rope") == 0 && d.k % 2 != 0)
        return error_set(err, "%s: model.%s.position = 'rope' needs an even head dimension, got %d", src, name, d.k);
    if (d.v < 1 || fabs(d.k * c->expand_v - d.v) > 1e-9)
        return error_set(err, "%s: model.%s.expand_v = %g times %d key channels is not a whole number of value channels",
                         src, name, c->expand_v, d.k);
    return true;
}

const char *delta_layer_position(const void *cfg) { return ((const DeltaConfig *)cfg)->position; }

/* ---- in flash-linear-attention (fla/layers/gated_deltanet.py, kda.py) ---- */

bool delta_layer_fla_check(const MixerOps *self, const ModelConfig *m, const void *cfg, Error *err) {
    const DeltaConfig *c = cfg;
    const char *name = self->name;
    bool low_rank = ((const DeltaGates *)self->variant)->low_rank;
    if (!c->qk_norm) return error_set(err, "model.%s.qk_norm = false: fla always L2-normalizes q and k", name);
    if (strcmp(c->position, "nope") != 0)
        return error_set(err, "model.%s.position = '%s': fla's layer has no rotary embedding", name, c->position);
    if (low_rank && !c->output_gate) return error_set(err, "model.%s.output_gate = false: fla's KDA is always gated", name);
    if (low_rank && c->gate_rank && c->gate_rank != delta_layer_dims(m, c).v)
        return error_set(err, "model.%s.gate_rank = %d: fla's KDA gates have the value head width (%d)", name,
                         c->gate_rank, delta_layer_dims(m, c).v);
    return true;
}

void delta_layer_fla_config(const MixerOps *self, cJSON *o, const ModelConfig *m, const void *cfg) {
    const DeltaConfig *c = cfg;
    DeltaDims d = delta_layer_dims(m, c);
    cJSON_AddStringToObject(o, "attn_mode", "chunk");
    cJSON_AddNumberToObject(o, "head_dim", d.k);
    cJSON_AddNumberToObject(o, "expand_v", (double)d.v / d.k);
    cJSON_AddNullToObject(o, "num_v_heads");
    cJSON_AddBoolToObject(o, "use_short_conv", c->short_conv);
    cJSON_AddNumberToObject(o, "conv_size", c->conv_size);
    cJSON_AddFalseToObject(o, "allow_neg_eigval");
    if (((const DeltaGates *)self->variant)->low_rank) { /* KimiDeltaAttention */
        cJSON_AddFalseToObject(o, "safe_gate");
        cJSON_AddNullToObject(o, "lower_bound");
    } else {
        cJSON_AddBoolToObject(o, "use_gate", c->output_gate);
    }
}

Mixer *delta_layer_create(const MixerSpec *spec, ParamSet *ps) {
    const ModelConfig *mc = spec->model;
    DeltaLayer *L = xcalloc(1, sizeof *L);
    const DeltaGates *G = L->gates = spec->ops->variant;
    L->cfg = *(const DeltaConfig *)mixer_config(mc, spec->ops);
    L->C = mc->d_model;
    L->H = mc->n_heads;
    DeltaDims dims = delta_layer_dims(mc, &L->cfg);
    L->K = dims.k;
    L->V = dims.v;
    L->W = L->cfg.conv_size;
    L->R = G->low_rank ? (L->cfg.gate_rank ? L->cfg.gate_rank : L->V) : 0;
    L->gw = G->channel_decay ? L->K : 1;
    L->eps = (float)mc->norm_eps;
    L->rope = strcmp(L->cfg.position, "rope") == 0;
    if (L->rope) L->rope_table = rope_cache_request(spec->rope, L->K);
    int l = spec->layer, C = L->C, HK = L->H * L->K, HV = L->H * L->V;
    float std = (float)mc->init_std, out_std = (float)config_out_init_std(mc);
    add_param(ps, &L->w_q, l, "q_proj.weight", HK, C, std);
    add_param(ps, &L->w_k, l, "k_proj.weight", HK, C, std);
    add_param(ps, &L->w_v, l, "v_proj.weight", HV, C, std);
    if (L->cfg.short_conv) short_conv_create(&L->conv, ps, l, HK, HV, L->W, std);
    add_param(ps, &L->w_b, l, "b_proj.weight", L->H, C, std);
    if (G->low_rank) {
        add_param(ps, &L->w_f1, l, "f_proj.0.weight", L->R, C, std);
        add_param(ps, &L->w_f2, l, "f_proj.1.weight", HK, L->R, std);
    } else {
        add_param(ps, &L->w_a, l, "a_proj.weight", L->H, C, std);
    }
    /* A = exp(A_log) ~ U(A_min, 16); no weight decay */
    long h = L->H, hg = (long)L->H * L->gw, v = L->V;
    add_custom(ps, &L->A_log, l, "A_log", 1, &h, false, init_log_uniform, G->A_min, 16.0f);
    add_custom(ps, &L->dt_bias, l, "dt_bias", 1, &hg, false, init_dt_bias, 0.001f, 0.1f);
    char name[96];
    if (G->read_gate) { /* named after the core's input it makes, as fla's RWKV-7 names its a_lora */
        long hk = HK;
        add_param(ps, &L->w_r1, l, "a_proj.0.weight", L->R, C, std);
        add_param(ps, &L->w_r2, l, "a_proj.1.weight", HK, L->R, std);
        snprintf(name, sizeof name, "layers.%d.mixer.a_proj.1.bias", l);
        params_add(ps, &L->b_r, name, 1, &hk, false, INIT_ZEROS, 0.0f);
    }
    snprintf(name, sizeof name, "layers.%d.mixer.o_norm.weight", l);
    params_gain(ps, &L->o_norm, name, v);
    if (L->cfg.output_gate) {
        if (G->low_rank) {
            long hv = HV;
            add_param(ps, &L->w_g1, l, "g_proj.0.weight", L->R, C, std);
            add_param(ps, &L->w_g2, l, "g_proj.1.weight", HV, L->R, std);
            snprintf(name, sizeof name, "layers.%d.mixer.g_proj.1.bias", l);
            params_add(ps, &L->b_g, name, 1, &hv, false, INIT_ZEROS, 0.0f);
        } else {
            add_param(ps, &L->w_g, l, "g_proj.weight", HV, C, std);
        }
    }
    add_param(ps, &L->w_o, l, "o_proj.weight", C, HV, out_std);
    return &L->base;
}

/* ---- buffers ---- */

/* keep: what the backward reads as the forward left it (the layer's activations). */
static void declare_kept(DeltaLayer *L, Arena *keep, DeltaBuffers *bf, size_t N) {
    size_t HK = (size_t)L->H * L->K, HV = (size_t)L->H * L->V;
    arena_floats(keep, &bf->q_pre, N * HK);
    arena_floats(keep, &bf->k_pre, N * HK);
    arena_floats(keep, &bf->v_pre, N * HV);
    arena_floats(keep, &bf->beta, N * L->H);
    if (L->gates->low_rank) arena_floats(keep, &bf->f1, N * L->R);
    arena_floats(keep, &bf->o, N * HV);
    if (!L->cfg.output_gate) return;
    if (L->gates->low_rank) arena_floats(keep, &bf->z1, N * L->R);
    else arena_floats(keep, &bf->z, N * HV); /* a full projection of x: dearer to remake than to keep */
}

/* What the backward remakes (remake_for_backward) and reads to its end: the core's inputs. */
static void declare_core_inputs(DeltaLayer *L, Arena *remade, DeltaBuffers *bf, size_t N) {
    size_t HK = (size_t)L->H * L->K, HV = (size_t)L->H * L->V, H = L->H, G = H * L->gw;
    arena_floats(remade, &bf->q, N * HK);
    arena_floats(remade, &bf->k, N * HK);
    arena_floats(remade, &bf->v, N * HV);
    if (L->cfg.qk_norm) {
        arena_floats(remade, &bf->q_rn, N * H);
        arena_floats(remade, &bf->k_rn, N * H);
    }
    arena_floats(remade, &bf->a, N * G);
    arena_floats(remade, &bf->g, N * G);
    arena_floats(remade, &bf->o_rstd, N * H);
    if (L->gates->read_gate) {
        arena_floats(remade, &bf->r1, N * L->R);
        arena_floats(remade, &bf->r, N * HK);
        arena_floats(remade, &bf->a_rd, N * HK);
        arena_floats(remade, &bf->b_wr, N * HK);
        arena_floats(remade, &bf->v_b, N * HV);
    }
}

/* core_qkv's intermediates: dead once q, k and v are made: SiLU's outputs before the L2 norm,
 * without the convolutions. (With them there are none: conv1d_silu_forward makes SiLU of the
 * convolutions and the norms in one pass, and the input paths' backward makes the convolutions'
 * outputs again inside conv1d_silu_backward.) */
static void declare_qkv_temporaries(DeltaLayer *L, Arena *remade, DeltaBuffers *bf, size_t N) {
    size_t HK = (size_t)L->H * L->K;
    if (L->cfg.qk_norm && !L->cfg.short_conv) {
        arena_floats(remade, &bf->tmp_q, N * HK);
        arena_floats(remade, &bf->tmp_k, N * HK);
    }
}

/* norm_and_gate's outputs: dead once the output gate's and the norm's backward have run. */
static void declare_output_side(DeltaLayer *L, Arena *remade, DeltaBuffers *bf, size_t N) {
    size_t HV = (size_t)L->H * L->V;
    arena_floats(remade, &bf->o_n, N * HV);
    if (!L->cfg.output_gate) return;
    if (L->gates->low_rank) arena_floats(remade, &bf->z, N * HV);
    arena_floats(remade, &bf->y_g, N * HV);
}

/* Every tensor of one forward, each in its own bytes (the decode step: B tokens). */
static void declare_buffers(DeltaLayer *L, Arena *keep, Arena *remade, DeltaBuffers *bf, size_t N) {
    memset(bf, 0, sizeof *bf);
    declare_kept(L, keep, bf, N);
    declare_core_inputs(L, remade, bf, N);
    declare_qkv_temporaries(L, remade, bf, N);
    declare_output_side(L, remade, bf, N);
}

static ScanShape core_shape(const DeltaLayer *L, int B, int T, int chunk) {
    return (ScanShape){B, T, L->H, L->K, L->V, 1.0f / sqrtf((float)L->K), chunk, L->gates->channel_decay};
}

/* Training: the layer's activations in acts; in the scratch every layer shares, the remade core
 * inputs and the gradients that live to the backward's end, then four groups that take turns in
 * the same bytes, in the order forward and backward use them (delta_layer_backward): core_qkv's
 * intermediates; the output side (norm_and_gate's outputs and their gradients); the core's
 * workspace; the decay gate's and the input paths' buffers. */
void delta_layer_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T) {
    DeltaLayer *L = (DeltaLayer *)m;
    DeltaBuffers *bf = &L->train;
    size_t N = (size_t)B * T, HK = (size_t)L->H * L->K, HV = (size_t)L->H * L->V, G = (size_t)L->H * L->gw;
    memset(bf, 0, sizeof *bf);
    declare_kept(L, acts, bf, N);
    ScanShape s = core_shape(L, B, T, L->cfg.chunk_size);
    bool dplr = L->gates->read_gate;
    arena_floats(acts, &L->saved, dplr ? be->dplr_saved(&s) : be->delta_rule_saved(&s));

    declare_core_inputs(L, scratch, bf, N);
    arena_floats(scratch, &L->d_o, N * HV);
    arena_floats(scratch, &L->dq, N * HK);
    arena_floats(scratch, &L->dk, N * HK);
    arena_floats(scratch, &L->dv, N * HV);
    arena_floats(scratch, &L->dg, N * G);
    arena_floats(scratch, &L->dbeta, N * L->H);
    if (L->gates->low_rank) {
        arena_floats(scratch, &L->dz1, N * L->R);
        arena_floats(scratch, &L->df1, N * L->R);
    }
    if (dplr) {
        arena_floats(scratch, &L->d_read, N * HK);
        arena_floats(scratch, &L->d_write, N * HK);
        arena_floats(scratch, &L->dr1, N * L->R);
    }
    /* the full-rank output gate's gradient (gdn) lives until dx's one product at the end; the
     * low-rank one's dz only until its product into dz1 */
    if (!L->gates->low_rank) arena_floats(scratch, &L->dz, N * HV);

    size_t turns = arena_mark(scratch);
    declare_qkv_temporaries(L, scratch, bf, N);
    arena_rewind(scratch, turns);
    declare_output_side(L, scratch, bf, N);
    arena_floats(scratch, &L->d_out, N * HV);
    arena_floats(scratch, &L->d_on, N * HV);
    if (L->gates->low_rank) arena_floats(scratch, &L->dz, N * HV);
    arena_rewind(scratch, turns);
    arena_declare(scratch, &L->work, dplr ? be->dplr_workspace(&s) : be->delta_rule_workspace(&s));
    arena_rewind(scratch, turns);
    size_t widest = HK > HV ? HK : HV;
    arena_floats(scratch, &L->d_alt, N * widest);
    if (!L->cfg.qk_norm) { /* each input path ends in a second buffer of its own (delta_layer_backward) */
        arena_floats(scratch, &L->d_alt_k, N * HK);
        arena_floats(scratch, &L->d_alt_v, N * HV);
    }
    arena_floats(scratch, &L->da, N * G);
}

/* ---- forward (and decode step) ---- */

/* dplr's core inputs: the read gate a = k sigmoid((x W_a1) W_a2 + b_a), the write b = -beta k and
 * the values beta v (kda folds beta into its core; dplr's core takes the vectors as they are). x
 * NULL: a decode step's group made r1 = x W_a1 already. */
static void dplr_inputs(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, int N) {
    const int C = L->C, H = L->H, HK = H * L->K;
    if (x) linear_forward(be, bf->r1, x, &L->w_r1, N, C, L->R, false);
    linear_forward(be, bf->r, bf->r1, &L->w_r2, N, L->R, HK, false);
    be->bias_forward(bf->r, L->b_r.w, N, HK);
    be->gate_forward(bf->a_rd, bf->k, bf->r, (size_t)N * HK, ACT_SIGMOID);
    be->row_scale_forward(bf->b_wr, bf->k, bf->beta, N * H, L->K, -1.0f);
    be->row_scale_forward(bf->v_b, bf->v, bf->beta, N * H, L->V, 1.0f);
}

/* The core over the sequence (training) or one token per sequence with the state in the cache (x
 * NULL there: the step's group made every product of x). */
static void run_core(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, int B, int T, bool step) {
    ScanShape s = core_shape(L, B, step ? 1 : T, step ? 0 : L->cfg.chunk_size);
    if (L->gates->read_gate) {
        dplr_inputs(L, be, bf, x, B * T);
        if (step) be->dplr_step(&s, L->state, bf->o, bf->q, bf->k, bf->v_b, bf->a_rd, bf->b_wr, bf->g);
        else be->dplr_forward(&s, bf->o, NULL, L->saved, bf->q, bf->k, bf->v_b, bf->a_rd, bf->b_wr, bf->g, NULL, L->work);
    } else if (step) {
        be->delta_rule_step(&s, L->state, bf->o, bf->q, bf->k, bf->v, bf->g, bf->beta);
    } else {
        be->delta_rule_forward(&s, bf->o, NULL, L->saved, bf->q, bf->k, bf->v, bf->g, bf->beta, NULL, L->work);
    }
}

/* q and k rotated, under RoPE; a decode step rotates by its position's row (rope_cache_at). */
static void rotate_qk(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, int B, int T, bool step) {
    if (!L->rope) return;
    const RopeTable *t = L->rope_table;
    const int H = L->H, K = L->K, HK = H * K;
    const float *cos = step ? t->step_cos : t->cos, *sin = step ? t->step_sin : t->sin;
    be->rope_forward(bf->q, B, T, H, K, HK, 0, K, cos, sin, 0);
    be->rope_forward(bf->k, B, T, H, K, HK, 0, K, cos, sin, 0);
}

/* q, k and v as the core sees them, from the projections: [short convolution], SiLU, [L2 norm],
 * [RoPE]. */
static void core_qkv(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, int B, int T, bool step) {
    const int N = B * T, H = L->H, K = L->K, HK = H * L->K, HV = H * L->V;
    if (L->cfg.short_conv) { /* SiLU and the norms in the convolutions' pass; a decode step's in one launch */
        if (step)
            short_conv_silu_step(&L->conv, be, bf->q, bf->k, bf->v, bf->q_rn, bf->k_rn, bf->q_pre, bf->k_pre, bf->v_pre,
                                 B, H, L->cfg.qk_norm, QK_NORM_EPS);
        else
            short_conv_silu_forward(&L->conv, be, bf->q, bf->k, bf->v, bf->q_rn, bf->k_rn, bf->q_pre, bf->k_pre,
                                    bf->v_pre, B, T, H, L->cfg.qk_norm, QK_NORM_EPS);
    } else {
        float *q_act = L->cfg.qk_norm ? bf->tmp_q : bf->q, *k_act = L->cfg.qk_norm ? bf->tmp_k : bf->k;
        be->silu_forward(q_act, bf->q_pre, (size_t)N * HK);
        be->silu_forward(k_act, bf->k_pre, (size_t)N * HK);
        be->silu_forward(bf->v, bf->v_pre, (size_t)N * HV);
        if (L->cfg.qk_norm) {
            be->l2norm_forward(bf->q, bf->q_rn, bf->tmp_q, N * H, K, QK_NORM_EPS);
            be->l2norm_forward(bf->k, bf->k_rn, bf->tmp_k, N * H, K, QK_NORM_EPS);
        }
    }
    rotate_qk(L, be, bf, B, T, step);
}

/* The log decay g from kda's low-rank input f1 (kept), or gdn's projection of x (x NULL: a decode
 * step's group made it). */
static void decay_gate(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, int N) {
    if (L->gates->low_rank) linear_forward(be, bf->a, bf->f1, &L->w_f2, N, L->R, L->H * L->K, false);
    else if (x) linear_forward(be, bf->a, x, &L->w_a, N, L->C, L->H, false);
    be->decay_gate_forward(bf->g, bf->a, L->A_log.w, L->dt_bias.w, N, L->H, L->gw);
}

/* The core's output normalized per head and, with the output gate, gated by z (kda's made from
 * its low-rank input z1 here; gdn's z is its projection of x, made by the forward). */
static void norm_and_gate(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, int N) {
    const int HV = L->H * L->V;
    be->rmsnorm_forward(bf->o_n, bf->o_rstd, bf->o, L->o_norm.w, N * L->H, L->V, L->eps);
    if (!L->cfg.output_gate) return;
    if (L->gates->low_rank) {
        linear_forward(be, bf->z, bf->z1, &L->w_g2, N, L->R, HV, false);
        be->bias_forward(bf->z, L->b_g.w, N, HV);
    }
    be->gate_forward(bf->y_g, bf->o_n, bf->z, (size_t)N * HV, L->gates->out_gate);
}

/* The products of x that the forward keeps, in one group (one launch at decode): q, k and v
 * before their convolutions, beta's logits and the gates' inputs (kda's low-rank f1 and z1,
 * gdn's output gate z). The backward remakes gdn's decay input a and dplr's read-gate input r1
 * (decay_gate, dplr_inputs); a decode step makes them here too, where its RMSNorm x_norm is folded in. */
static void project_input(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, const RowNorm *x_norm,
                          int N, bool step) {
    const int HK = L->H * L->K, HV = L->H * L->V;
    LinearOut outs[LINEAR_GROUP_MAX] = {
        {L->w_q.w, bf->q_pre, HK, LINEAR_SET},
        {L->w_k.w, bf->k_pre, HK, LINEAR_SET},
        {L->w_v.w, bf->v_pre, HV, LINEAR_SET},
        {L->w_b.w, bf->beta, L->H, LINEAR_SET},
    };
    int n = 4;
    if (L->gates->low_rank) outs[n++] = (LinearOut){L->w_f1.w, bf->f1, L->R, LINEAR_SET};
    if (L->cfg.output_gate && L->gates->low_rank) outs[n++] = (LinearOut){L->w_g1.w, bf->z1, L->R, LINEAR_SET};
    else if (L->cfg.output_gate) outs[n++] = (LinearOut){L->w_g.w, bf->z, HV, LINEAR_SET};
    if (step && !L->gates->low_rank) outs[n++] = (LinearOut){L->w_a.w, bf->a, L->H, LINEAR_SET};
    if (step && L->gates->read_gate) outs[n++] = (LinearOut){L->w_r1.w, bf->r1, L->R, LINEAR_SET};
    be->linear_group(x, x_norm, N, L->C, n, outs);
}

static void run_forward(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, const RowNorm *x_norm,
                        float *y, int B, int T, bool step) {
    const int N = B * T, C = L->C, H = L->H, HV = H * L->V;
    project_input(L, be, bf, x, x_norm, N, step);
    core_qkv(L, be, bf, B, T, step);
    be->sigmoid_forward(bf->beta, bf->beta, (size_t)N * H);
    decay_gate(L, be, bf, step ? NULL : x, N);
    run_core(L, be, bf, step ? NULL : x, B, T, step);
    norm_and_gate(L, be, bf, N);
    linear_forward(be, y, L->cfg.output_gate ? bf->y_g : bf->o_n, &L->w_o, N, HV, C, true);
}

void delta_layer_forward(Mixer *m, const Backend *be, const float *x, float *y, int B, int T) {
    run_forward((DeltaLayer *)m, be, &((DeltaLayer *)m)->train, x, NULL, y, B, T, false);
}

/* ---- backward ---- */

/* The products of x (project_input's, and gdn's decay input and dplr's read-gate input) whose
 * gradients the backward gathers, in the order dx sums them: one linear_group_backward at the end
 * writes dx. */
typedef struct {
    LinearGrad grads[LINEAR_GROUP_MAX];
    int n;
} InputGrads;

static void gather(InputGrads *g, const Param *W, const float *dy, int out) {
    if (g->n == LINEAR_GROUP_MAX) die("internal: a delta layer with more than %d products of x", LINEAR_GROUP_MAX);
    g->grads[g->n++] = linear_grad(W, dy, out);
}

/* The core's backward into dq, dk, dv, dg and dbeta; dplr's through its inputs too: v' = beta v,
 * b = -beta k and a = k sigmoid(r) send gradient to v, k, beta and, through r, its projections
 * (dx gains the read gate's path). */
static void core_backward(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, InputGrads *to_x, int B, int T) {
    ScanShape s = core_shape(L, B, T, L->cfg.chunk_size);
    if (!L->gates->read_gate) {
        be->delta_rule_backward(&s, L->dq, L->dk, L->dv, L->dg, L->dbeta, NULL, NULL, L->d_o, bf->q, bf->k, bf->v,
                                bf->g, bf->beta, L->saved, L->work);
        return;
    }
    const int N = B * T, H = L->H, HK = H * L->K;
    be->dplr_backward(&s, L->dq, L->dk, L->dv, L->d_read, L->d_write, L->dg, NULL, NULL, L->d_o, bf->q, bf->k, bf->v_b,
                      bf->a_rd, bf->b_wr, bf->g, L->saved, L->work);
    be->zero(L->dbeta, (size_t)N * H);
    be->row_scale_backward(L->dv, L->dbeta, L->dv, bf->v, bf->beta, N * H, L->V, 1.0f, false);
    be->row_scale_backward(L->dk, L->dbeta, L->d_write, bf->k, bf->beta, N * H, L->K, -1.0f, true);
    /* free now, and until they are used again (d_alt's bytes were the core's workspace) */
    float *dk_read = L->d_write, *dr = L->d_alt;
    be->gate_backward(dk_read, dr, L->d_read, bf->k, bf->r, (size_t)N * HK, ACT_SIGMOID);
    be->add(L->dk, dk_read, (size_t)N * HK);
    be->bias_backward(L->b_r.g, dr, N, HK);
    linear_backward(be, L->dr1, dr, bf->r1, &L->w_r2, N, L->R, HK, false);
    gather(to_x, &L->w_r1, L->dr1, L->R);
}

/* One input path back to its projection's output: [RoPE] <- [L2 norm] <- SiLU <- [short conv],
 * gathered for dx. d holds the core's gradient on entry; alt is a second buffer; the two take turns
 * as input and output (the path's result stays in one of them until dx's product). The L2
 * norm's backward runs first, on the rotated vectors: its Jacobian commutes with a rotation, and
 * the stored output is the rotated one. SiLU's backward reads the convolution's output, which
 * conv1d_silu_backward makes again as it goes (the forward's own sums, so bit for bit) rather than
 * keep it through the backward; that op takes d's buffer as scratch (its values are lost). */
static void input_path_backward(DeltaLayer *L, const Backend *be, float *d, float *alt, const float *pre,
                                const float *normed, const float *rnorm, Param *conv, const Param *w,
                                InputGrads *to_x, int B, int T, int width, bool normalize, bool rotate) {
    const int N = B * T, K = L->K;
    if (normalize) {
        be->l2norm_backward(alt, d, normed, rnorm, N * L->H, K);
        float *t = d;
        d = alt;
        alt = t;
    }
    if (rotate) {
        const RopeTable *t = L->rope_table;
        be->rope_backward(d, B, T, L->H, K, width, 0, K, t->cos, t->sin, 0);
    }
    if (L->cfg.short_conv) be->conv1d_silu_backward(alt, conv->g, d, pre, conv->w, B, T, width, L->W);
    else be->silu_backward(alt, d, pre, (size_t)N * width);
    gather(to_x, w, alt, width);
}

/* What the forward left in the shared scratch, made again from what the layer kept, by the same
 * operations on the same inputs: the same numbers. */
static void remake_for_backward(DeltaLayer *L, const Backend *be, DeltaBuffers *bf, const float *x, int B, int T) {
    const int N = B * T;
    core_qkv(L, be, bf, B, T, false);
    decay_gate(L, be, bf, x, N);
    if (L->gates->read_gate) dplr_inputs(L, be, bf, x, N);
    norm_and_gate(L, be, bf, N);
}

void delta_layer_backward(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T) {
    DeltaLayer *L = (DeltaLayer *)m;
    DeltaBuffers *bf = &L->train;
    const int N = B * T, C = L->C, H = L->H, HK = H * L->K, HV = H * L->V;
    remake_for_backward(L, be, bf, x, B, T);
    InputGrads to_x = {.n = 0};
    linear_backward(be, L->d_out, dy, L->cfg.output_gate ? bf->y_g : bf->o_n, &L->w_o, N, HV, C, false);
    const float *d_on = L->d_out;
    if (L->cfg.output_gate) {
        be->gate_backward(L->d_on, L->dz, L->d_out, bf->o_n, bf->z, (size_t)N * HV, L->gates->out_gate);
        if (L->gates->low_rank) {
            be->bias_backward(L->b_g.g, L->dz, N, HV);
            linear_backward(be, L->dz1, L->dz, bf->z1, &L->w_g2, N, L->R, HV, false);
            gather(&to_x, &L->w_g1, L->dz1, L->R);
        } else {
            gather(&to_x, &L->w_g, L->dz, HV);
        }
        d_on = L->d_on;
    }
    be->zero(L->d_o, (size_t)N * HV);
    be->rmsnorm_backward(L->d_o, L->o_norm.g, d_on, bf->o, L->o_norm.w, bf->o_rstd, N * H, L->V);
    core_backward(L, be, bf, &to_x, B, T);
    be->decay_gate_backward(L->da, L->A_log.g, L->dt_bias.g, L->dg, bf->a, L->A_log.w, L->dt_bias.w, N, H, L->gw);
    if (L->gates->low_rank) {
        linear_backward(be, L->df1, L->da, bf->f1, &L->w_f2, N, L->R, HK, false);
        gather(&to_x, &L->w_f1, L->df1, L->R);
    } else {
        gather(&to_x, &L->w_a, L->da, H);
    }
    be->sigmoid_backward(L->dbeta, L->dbeta, bf->beta, (size_t)N * H);
    gather(&to_x, &L->w_b, L->dbeta, H);
    /* Each path's result waits for dx's product. With q/k norms the q and k paths end in dq and dk,
     * so one second buffer serves all three (v's path, last, ends in it); without them each path
     * ends in its second buffer, and each has its own. */
    bool norm = L->cfg.qk_norm;
    float *alt_k = norm ? L->d_alt : L->d_alt_k, *alt_v = norm ? L->d_alt : L->d_alt_v;
    input_path_backward(L, be, L->dq, L->d_alt, bf->q_pre, bf->q, bf->q_rn, &L->conv.q, &L->w_q, &to_x, B, T, HK,
                        norm, L->rope);
    input_path_backward(L, be, L->dk, alt_k, bf->k_pre, bf->k, bf->k_rn, &L->conv.k, &L->w_k, &to_x, B, T, HK, norm,
                        L->rope);
    input_path_backward(L, be, L->dv, alt_v, bf->v_pre, NULL, NULL, &L->conv.v, &L->w_v, &to_x, B, T, HV, false,
                        false);
    be->linear_group_backward(dx, x, N, C, to_x.n, to_x.grads, false);
}

/* ---- decode ---- */

void delta_layer_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context) {
    (void)be;
    (void)max_context; /* the state does not grow with the context */
    DeltaLayer *L = (DeltaLayer *)m;
    size_t HK = (size_t)L->H * L->K;
    declare_buffers(L, scratch, scratch, &L->step, (size_t)B);
    arena_floats(cache, &L->state, (size_t)B * HK * L->V);
    if (L->cfg.short_conv) short_conv_declare_decode(&L->conv, cache, B);
}

void delta_layer_decode_reset(Mixer *m, const Backend *be, int B) {
    DeltaLayer *L = (DeltaLayer *)m;
    size_t HK = (size_t)L->H * L->K;
    be->zero(L->state, (size_t)B * HK * L->V);
    if (L->cfg.short_conv) short_conv_decode_reset(&L->conv, be, B);
}

void delta_layer_decode_step(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                             const DecodeAt *at) {
    (void)at; /* a recurrent step: the position matters only to the rotation, whose step row is set */
    run_forward((DeltaLayer *)m, be, &((DeltaLayer *)m)->step, x, x_norm, y, B, 1, true);
}

/* ---- sizes ---- */

/* Per token: the projections, the convolution, and the core at its recurrent cost (decay, read,
 * write and output over the K x V state of every head). */
double delta_layer_flops(const Mixer *m, int T) {
    (void)T;
    const DeltaLayer *L = (const DeltaLayer *)m;
    double C = L->C, HK = (double)L->H * L->K, HV = (double)L->H * L->V, H = L->H, R = L->R;
    double proj = C * (2 * HK + HV + H) + HV * C;
    proj += L->gates->low_rank ? C * R + R * HK : C * H;
    if (L->cfg.output_gate) proj += L->gates->low_rank ? C * R + R * HV : C * HV;
    if (L->gates->read_gate) proj += C * R + R * HK;
    double conv = L->cfg.short_conv ? L->W * (2 * HK + HV) : 0;
    /* dplr reads the state through a (one more pass over it than the delta rule's decayed read) */
    double core = (L->gates->read_gate ? 5.0 : 4.0) * H * L->K * L->V;
    return 2.0 * (proj + conv + core);
}

size_t delta_layer_cache_bytes(const Mixer *m, long context) {
    (void)context;
    const DeltaLayer *L = (const DeltaLayer *)m;
    size_t HK = (size_t)L->H * L->K;
    size_t conv = L->cfg.short_conv ? short_conv_cache_floats(&L->conv) : 0;
    return sizeof(float) * (HK * L->V + conv);
}

void delta_layer_destroy(Mixer *m) { free(m); }
