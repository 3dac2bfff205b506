/* linear: causal linear attention (Katharopoulos et al. 2020). q, k, v projections, an optional
 * short causal convolution over each (Based's and GDN's), a feature map phi on q and k (identity,
 * elu+1, relu), optional RoPE, the linear attention core, optional
 * normalizer o_t = S_t^T phi(q_t) / (phi(q_t) . z_t + eps), output projection. The normalizer
 * z_t = sum phi(k_j) is carried as one more value channel of ones, so the core stays the plain
 * recurrence (and its chunkwise form) and z comes out as the last output column. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/linear.h"
#include "core/mixer.h"
#include "core/util.h"
#include "short_conv.h"

static const float NORMALIZER_EPS = 1e-6f;

/* its section, model.linear */
typedef struct {
    char *feature_map; /* "identity" | "elu1" | "relu" */
    bool normalize;
    int chunk_size; /* 0: the recurrent form */
    char *position;
    bool short_conv;
    int conv_size;
} LinearConfig;

static const Field linear_fields[] = {
    MIXER_ENUM("feature_map", LinearConfig, feature_map, "elu1", "identity|elu1|relu", "phi applied to q and k"),
    MIXER_BOOL("normalize", LinearConfig, normalize, "true", "divide by phi(q) . sum of phi(k) (+ eps)"),
    MIXER_INT("chunk_size", LinearConfig, chunk_size, "64", 0, 4096,
              "rows per chunk of the chunkwise training form; 0: train with the recurrent form"),
    MIXER_ENUM("position", LinearConfig, position, "nope", MIXER_POSITION, "rotary embedding on q and k, or none"),
    MIXER_BOOL("short_conv", LinearConfig, short_conv, "false",
               "a causal depthwise convolution over q, k and v after their projections (before phi), as GDN's"),
    MIXER_INT("conv_size", LinearConfig, conv_size, "4", 1, 64, "the short convolution's taps"),
};

extern const MixerOps mixer_linear;

static bool linear_check(const MixerOps *self, const ModelConfig *mc, const void *cfg, const char *src, Error *err) {
    (void)self;
    const LinearConfig *c = cfg;
    if (strcmp(c->position, "rope") == 0 && config_head_dim(mc) % 2 != 0)
        return error_set(err, "%s: model.linear.position = 'rope' needs an even head dimension, got %d", src,
                         config_head_dim(mc));
    return true;
}

static const char *linear_position(const void *cfg) { return ((const LinearConfig *)cfg)->position; }

typedef struct {
    float *q_pre, *k_pre, *v_pre; /* projections [N, HK], [N, HV] */
    float *q_c, *k_c;             /* after the short convolution (without it: the projections) */
    float *q, *k;                 /* after phi (and RoPE) */
    float *v;                     /* [N, HV]: v_pre after the short convolution, or v_pre itself */
    float *v_aug, *o_aug; /* with the normalizer: [N, H, V + 1] */
    float *o;             /* [N, HV] */
} LinearBuffers;

typedef struct {
    Mixer base;
    int C, H, K, V, chunk, W; /* W: the convolution's taps, 0 without it */
    FeatureMap phi;
    bool normalize, rope;
    const RopeTable *rope_table;
    Param w_q, w_k, w_v, w_o;
    ShortConv conv; /* when W > 0 */
    LinearBuffers train, step;
    float *saved, *work;                          /* core */
    float *d_o, *d_oaug, *dq, *dk, *dv, *dv_aug; /* backward scratch */
    float *d_conv_v, *d_conv_q, *d_conv_k;        /* the convolution's input gradients, one a path */
    float *state;                                          /* decode cache [B, H, K, Vc], beside conv's tails */
} LinearLayer;

/* Value channels the core carries: V, plus the ones channel of the normalizer. */
static int core_v(const LinearLayer *L) { return L->V + (L->normalize ? 1 : 0); }

static ScanShape core_shape(const LinearLayer *L, int B, int T, int chunk) {
    /* with the normalizer the scale cancels in the ratio */
    float scale = L->normalize ? 1.0f : 1.0f / sqrtf((float)L->K);
    return (ScanShape){B, T, L->H, L->K, core_v(L), scale, chunk, false};
}

static Mixer *linear_create(const MixerSpec *spec, ParamSet *ps) {
    const ModelConfig *mc = spec->model;
    LinearLayer *L = xcalloc(1, sizeof *L);
    L->C = mc->d_model;
    L->H = mc->n_heads;
    L->K = L->V = config_head_dim(mc);
    const LinearConfig *c = mixer_config(mc, &mixer_linear);
    L->chunk = c->chunk_size;
    L->normalize = c->normalize;
    const char *fm = c->feature_map;
    L->phi = strcmp(fm, "elu1") == 0 ? FEATURE_ELU1 : strcmp(fm, "relu") == 0 ? FEATURE_RELU : FEATURE_IDENTITY;
    L->rope = strcmp(c->position, "rope") == 0;
    if (L->rope) L->rope_table = rope_cache_request(spec->rope, L->K);
    L->W = c->short_conv ? c->conv_size : 0;
    int HK = L->H * L->K, HV = L->H * L->V;
    float std = (float)mc->init_std, out_std = (float)config_out_init_std(mc);
    const struct {
        Param *p;
        const char *what;
        long rows, cols;
        float std;
    } table[] = {{&L->w_q, "q_proj.weight", HK, L->C, std},
                 {&L->w_k, "k_proj.weight", HK, L->C, std},
                 {&L->w_v, "v_proj.weight", HV, L->C, std},
                 {&L->w_o, "o_proj.weight", L->C, HV, out_std}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "layers.%d.mixer.%s", spec->layer, table[i].what);
        params_matrix(ps, table[i].p, name, table[i].rows, table[i].cols, table[i].std);
    }
    if (L->W) short_conv_create(&L->conv, ps, spec->layer, HK, HV, L->W, std);
    return &L->base;
}

static void declare_buffers(const LinearLayer *L, Arena *a, LinearBuffers *bf, size_t N) {
    size_t HK = (size_t)L->H * L->K, HV = (size_t)L->H * L->V;
    memset(bf, 0, sizeof *bf);
    arena_floats(a, &bf->q_pre, N * HK);
    arena_floats(a, &bf->k_pre, N * HK);
    arena_floats(a, &bf->v_pre, N * HV);
    if (L->W) {
        arena_floats(a, &bf->q_c, N * HK);
        arena_floats(a, &bf->k_c, N * HK);
        arena_floats(a, &bf->v, N * HV);
    }
    arena_floats(a, &bf->q, N * HK);
    arena_floats(a, &bf->k, N * HK);
    arena_floats(a, &bf->o, N * HV);
    if (L->normalize) {
        arena_floats(a, &bf->v_aug, N * L->H * core_v(L));
        arena_floats(a, &bf->o_aug, N * L->H * core_v(L));
    }
}

static void linear_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T) {
    LinearLayer *L = (LinearLayer *)m;
    size_t N = (size_t)B * T, HK = (size_t)L->H * L->K, HVc = (size_t)L->H * core_v(L);
    declare_buffers(L, acts, &L->train, N);
    ScanShape s = core_shape(L, B, T, L->chunk);
    arena_floats(acts, &L->saved, be->linear_attn_saved(&s));
    arena_declare(scratch, &L->work, be->linear_attn_workspace(&s));
    arena_floats(scratch, &L->d_o, N * L->H * L->V);
    arena_floats(scratch, &L->d_oaug, N * HVc);
    arena_floats(scratch, &L->dq, N * HK);
    arena_floats(scratch, &L->dk, N * HK);
    arena_floats(scratch, &L->dv_aug, N * HVc);
    if (L->W) { /* each path's result waits for dx's one product */
        arena_floats(scratch, &L->d_conv_v, N * L->H * L->V);
        arena_floats(scratch, &L->d_conv_q, N * HK);
        arena_floats(scratch, &L->d_conv_k, N * HK);
    }
}

/* Without the convolution, its outputs are its inputs. */
static void alias_conv(const LinearLayer *L, LinearBuffers *bf) {
    if (L->W) return;
    bf->q_c = bf->q_pre;
    bf->k_c = bf->k_pre;
    bf->v = bf->v_pre;
}

/* x_norm: the RMSNorm x goes through before the projections (a decode step's), or NULL */
static void run_forward(LinearLayer *L, const Backend *be, LinearBuffers *bf, const float *x, const RowNorm *x_norm,
                        float *y, int B, int T, bool step) {
    const int N = B * T, C = L->C, H = L->H, K = L->K, HK = H * K, HV = H * L->V;
    alias_conv(L, bf);
    const LinearOut qkv[3] = {{L->w_q.w, bf->q_pre, HK, LINEAR_SET}, {L->w_k.w, bf->k_pre, HK, LINEAR_SET},
                              {L->w_v.w, bf->v_pre, HV, LINEAR_SET}};
    be->linear_group(x, x_norm, N, C, 3, qkv);
    if (L->W) short_conv_forward(&L->conv, be, bf->q_c, bf->k_c, bf->v, bf->q_pre, bf->k_pre, bf->v_pre, B, T, step);
    be->feature_map_forward(bf->q, bf->q_c, (size_t)N * HK, L->phi);
    be->feature_map_forward(bf->k, bf->k_c, (size_t)N * HK, L->phi);
    if (L->rope) {
        const RopeTable *t = L->rope_table;
        /* a decode step rotates by its position's row (rope_cache_at) */
        const float *cos = step ? t->step_cos : t->cos, *sin = step ? t->step_sin : t->sin;
        be->rope_forward(bf->q, B, T, H, K, HK, 0, K, cos, sin, 0);
        be->rope_forward(bf->k, B, T, H, K, HK, 0, K, cos, sin, 0);
    }
    const float *v = bf->v;
    float *o = bf->o;
    if (L->normalize) {
        be->append_ones(bf->v_aug, bf->v, N * H, L->V);
        v = bf->v_aug;
        o = bf->o_aug;
    }
    if (step) {
        ScanShape s = core_shape(L, B, 1, 0);
        be->linear_attn_step(&s, L->state, o, bf->q, bf->k, v);
    } else {
        ScanShape s = core_shape(L, B, T, L->chunk);
        be->linear_attn_forward(&s, o, NULL, L->saved, bf->q, bf->k, v, NULL, L->work);
    }
    if (L->normalize) be->normalize_by_last(bf->o, bf->o_aug, N * H, L->V, NORMALIZER_EPS);
    linear_forward(be, y, bf->o, &L->w_o, N, HV, C, true);
}

static void linear_forward_mixer(Mixer *m, const Backend *be, const float *x, float *y, int B, int T) {
    run_forward((LinearLayer *)m, be, &((LinearLayer *)m)->train, x, NULL, y, B, T, false);
}

/* d (the gradient at the convolution's output, width channels) back through [short conv] into
 * d_conv, gathered for dx with the projection w. */
static void conv_path_backward(LinearLayer *L, const Backend *be, const float *d, const float *pre, Param *conv,
                               float *d_conv, const Param *w, LinearGrad *to_x, int B, int T, int width) {
    if (L->W) {
        be->conv1d_backward(d_conv, conv->g, d, pre, conv->w, B, T, width, L->W);
        d = d_conv;
    }
    *to_x = linear_grad(w, d, width);
}

/* One of q and k back to its projection: [RoPE] <- phi <- [short conv], in place in d up to the
 * convolution. */
static void qk_path_backward(LinearLayer *L, const Backend *be, float *d, const float *c_in, const float *pre,
                             Param *conv, float *d_conv, const Param *w, LinearGrad *to_x, int B, int T) {
    const int N = B * T, K = L->K, HK = L->H * K;
    if (L->rope) {
        const RopeTable *t = L->rope_table;
        be->rope_backward(d, B, T, L->H, K, HK, 0, K, t->cos, t->sin, 0);
    }
    be->feature_map_backward(d, d, c_in, (size_t)N * HK, L->phi);
    conv_path_backward(L, be, d, pre, conv, d_conv, w, to_x, B, T, HK);
}

static void linear_backward_mixer(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B,
                                  int T) {
    LinearLayer *L = (LinearLayer *)m;
    LinearBuffers *bf = &L->train;
    const int N = B * T, C = L->C, H = L->H, HV = H * L->V;
    alias_conv(L, bf);
    linear_backward(be, L->d_o, dy, bf->o, &L->w_o, N, HV, C, false);
    const float *d_core = L->d_o, *v = bf->v;
    if (L->normalize) {
        be->normalize_by_last_backward(L->d_oaug, L->d_o, bf->o_aug, N * H, L->V, NORMALIZER_EPS);
        d_core = L->d_oaug;
        v = bf->v_aug;
    }
    ScanShape s = core_shape(L, B, T, L->chunk);
    be->linear_attn_backward(&s, L->dq, L->dk, L->dv_aug, NULL, NULL, d_core, bf->q, bf->k, v, L->saved, L->work);
    /* without the normalizer dv_aug is dv; with it, drop the ones channel's gradient */
    const float *dv = L->dv_aug;
    if (L->normalize) {
        be->copy_rows(L->d_o, L->V, L->dv_aug, core_v(L), N * H, L->V, false);
        dv = L->d_o;
    }
    LinearGrad to_x[3]; /* v, q, k: the order dx sums them */
    conv_path_backward(L, be, dv, bf->v_pre, &L->conv.v, L->d_conv_v, &L->w_v, &to_x[0], B, T, HV);
    qk_path_backward(L, be, L->dq, bf->q_c, bf->q_pre, &L->conv.q, L->d_conv_q, &L->w_q, &to_x[1], B, T);
    qk_path_backward(L, be, L->dk, bf->k_c, bf->k_pre, &L->conv.k, L->d_conv_k, &L->w_k, &to_x[2], B, T);
    be->linear_group_backward(dx, x, N, C, 3, to_x, false);
}

static void linear_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context) {
    (void)be;
    (void)max_context;
    LinearLayer *L = (LinearLayer *)m;
    declare_buffers(L, scratch, &L->step, (size_t)B);
    arena_floats(cache, &L->state, (size_t)B * L->H * L->K * core_v(L));
    if (L->W) short_conv_declare_decode(&L->conv, cache, B);
}

static void linear_decode_reset(Mixer *m, const Backend *be, int B) {
    LinearLayer *L = (LinearLayer *)m;
    be->zero(L->state, (size_t)B * L->H * L->K * core_v(L));
    if (L->W) short_conv_decode_reset(&L->conv, be, B);
}

static void linear_decode_step(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                               const DecodeAt *at) {
    (void)at; /* a recurrent step: the position matters only to the rotation, whose step row is set */
    run_forward((LinearLayer *)m, be, &((LinearLayer *)m)->step, x, x_norm, y, B, 1, true);
}

/* Projections, plus the core at its recurrent cost: write and read the K x Vc state per head; and
 * the short convolution's taps. */
static double linear_flops(const Mixer *m, int T) {
    (void)T;
    const LinearLayer *L = (const LinearLayer *)m;
    double HK = (double)L->H * L->K, HV = (double)L->H * L->V;
    return 2.0 * (L->C * (2 * HK + HV) + HV * L->C + 2.0 * L->H * L->K * core_v(L) + L->W * (2 * HK + HV));
}

static size_t linear_cache_bytes(const Mixer *m, long context) {
    (void)context;
    const LinearLayer *L = (const LinearLayer *)m;
    return sizeof(float) * ((size_t)L->H * L->K * core_v(L) + (L->W ? short_conv_cache_floats(&L->conv) : 0));
}

static void linear_destroy(Mixer *m) { free(m); }

const MixerOps mixer_linear = {
    .name = "linear",
    .linear_time = true,
    MIXER_SECTION(linear_fields, LinearConfig),
    .check = linear_check,
    .position = linear_position,
    .op_core = OP_CORE_LINEAR,
    .create = linear_create,
    .declare = linear_declare,
    .forward = linear_forward_mixer,
    .backward = linear_backward_mixer,
    .declare_decode = linear_declare_decode,
    .decode_reset = linear_decode_reset,
    .decode_step = linear_decode_step,
    .decode_takes_norm = true,
    .flops_per_token = linear_flops,
    .cache_bytes = linear_cache_bytes,
    .destroy = linear_destroy,
};
