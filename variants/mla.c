/* mla: Multi-head Latent Attention (DeepSeek-V2). Keys and values are rebuilt per head from a
 * normalized latent c = RMSNorm(x W_dkv) of kv_lora_rank channels; a decoupled key of
 * qk_rope_head_dim channels, shared by all heads, joins each head's key. Under RoPE it and the
 * matching query channels are rotated; under NoPE (Kimi Linear's MLA) nothing is rotated and the
 * layer is otherwise the same: width, parameters, scale and cache. Queries come from x, or through
 * a normalized low-rank bottleneck when q_lora_rank > 0.
 *
 * Training runs causal attention on the keys and values where the projections leave them: head
 * h's key [k_nope_h | k_rope] is read from the up-projection's output and the one shared k_rope
 * (AttnShape's layout), so no per-head copy is made.
 * Decode caches only [c | k_rope] per token and absorbs the up-projections: the score of head h is
 * (W_uk_h^T q_nope_h) . c_j + q_rope_h . k_rope_j, the output W_uv_h (sum_j p_j c_j): one
 * multi-query attention over the latent cache. W_uk_h^T W_q_nope_h is made once per decode, so
 * that the query product writes the absorbed query itself: a per-head product and a copy a layer
 * fewer, for about 5 MB more bf16 weights a step reads a layer at 12 x 768 (at one token a launch
 * costs more than that; the absorbed weights take 15 MB a layer in the decode cache, and 7.7 MB
 * more for their bf16 copy on the GPU). W_o_h W_uv_h absorbed too measured no faster (README). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/attention_layout.h"
#include "core/linear.h"
#include "core/mixer.h"
#include "core/util.h"

/* its section, model.mla */
typedef struct {
    int q_lora_rank;      /* 0: queries straight from x */
    int kv_lora_rank;     /* 0: d_model / 2 */
    int qk_nope_head_dim; /* 0: model head_dim */
    int qk_rope_head_dim; /* 0: head_dim / 2 (the decoupled key: rotated under RoPE only) */
    int v_head_dim;       /* 0: model head_dim */
    char *position;
} MlaConfig;

static const Field mla_fields[] = {
    MIXER_INT("q_lora_rank", MlaConfig, q_lora_rank, "0", 0, 65536, "query bottleneck rank; 0: queries straight from x"),
    MIXER_INT("kv_lora_rank", MlaConfig, kv_lora_rank, "0", 0, 65536, "rank of the cached key/value latent; 0: d_model / 2"),
    MIXER_INT("qk_nope_head_dim", MlaConfig, qk_nope_head_dim, "0", 0, 4096,
              "query/key channels without position per head; 0: head_dim"),
    MIXER_INT("qk_rope_head_dim", MlaConfig, qk_rope_head_dim, "0", 0, 4096,
              "decoupled key channels (one key shared by all heads), rotated under RoPE only; 0: head_dim / 2"),
    MIXER_INT("v_head_dim", MlaConfig, v_head_dim, "0", 0, 4096, "value channels per head; 0: head_dim"),
    MIXER_ENUM("position", MlaConfig, position, "rope", MIXER_POSITION, "decoupled RoPE, or none (Kimi Linear's NoPE MLA)"),
};

extern const MixerOps mixer_mla;

/* MLA's dimensions with the defaults filled in */
typedef struct {
    int q_rank, kv_rank, nope, rope, v;
} MlaDims;

static MlaDims mla_dims(const ModelConfig *mc, const MlaConfig *c) {
    int hd = config_head_dim(mc);
    return (MlaDims){.q_rank = c->q_lora_rank,
                     .kv_rank = c->kv_lora_rank ? c->kv_lora_rank : mc->d_model / 2,
                     .nope = c->qk_nope_head_dim ? c->qk_nope_head_dim : hd,
                     .rope = c->qk_rope_head_dim ? c->qk_rope_head_dim : hd / 2,
                     .v = c->v_head_dim ? c->v_head_dim : hd};
}

static bool mla_check(const MixerOps *self, const ModelConfig *mc, const void *cfg, const char *src, Error *err) {
    (void)self;
    const MlaConfig *c = cfg;
    MlaDims d = mla_dims(mc, c);
    if (d.rope <= 0 || (strcmp(c->position, "rope") == 0 && d.rope % 2))
        return error_set(err, "%s: model.mla.qk_rope_head_dim must be positive, and even under RoPE, got %d", src, d.rope);
    if (d.kv_rank < 1) return error_set(err, "%s: model.mla.kv_lora_rank must be positive", src);
    return true;
}

static const char *mla_position(const void *cfg) { return ((const MlaConfig *)cfg)->position; }

typedef struct {
    Mixer base;
    int C, H, dn, dr, dv, r, rq;
    float eps;
    const RopeTable *rope_table; /* NULL under NoPE: the decoupled channels are not rotated */
    Param w_q, w_dq, q_norm, w_uq, w_dkv, kv_norm, w_ukv, w_kr, w_o;
    /* activations */
    float *cq, *cq_n, *cq_rstd; /* query bottleneck [N, rq] */
    float *q;                   /* [N, H (dn + dr)] */
    float *c, *c_n, *c_rstd;    /* latent [N, r] */
    /* the attention reads its keys and values where the projections leave them (AttnShape's
     * layout): head h's key [k_nope_h | k_rope] is columns [h (dn + dv), + dn) of kv and the
     * shared kr, its value the dv columns after k_nope_h */
    float *kv;                  /* [N, H (dn + dv)] */
    float *kr;                  /* decoupled key [N, dr] */
    void *saved;                /* what the attention keeps for its backward (attention_saved); q, kv and kr
                                 * are then in the scratch */
    float *att, *lse;
    float *dq, *datt, *dkv, *dkr, *dc_n, *dc, *dcq_n, *dcq, *work; /* dkv, dkr: as kv, kr */
    /* decode */
    long max_context;
    float *cache; /* [B, max_context, r + dr] */
    /* the absorbed query weights (decode_reset makes them) [H (r + dr), q_in]: head h's rows
     * W_uk_h^T W_q_nope_h, then W_q_rope_h, so that the query product writes the absorbed query
     * [W_uk_h^T q_nope_h | q_rope_h] */
    float *w_qa;
    float *s_cq, *s_c, *s_kr, *s_qa, *s_ohat, *s_att, *s_work; /* one step */
} Mla;

static int qk_dim(const Mla *m) { return m->dn + m->dr; }
/* a head's rows of W_ukv: its keys' no-position part, then its values */
static int kv_dim(const Mla *m) { return m->dn + m->dv; }

static Mixer *mla_create(const MixerSpec *spec, ParamSet *ps) {
    const ModelConfig *mc = spec->model;
    const MlaConfig *c = mixer_config(mc, &mixer_mla);
    MlaDims d = mla_dims(mc, c);
    Mla *m = xcalloc(1, sizeof *m);
    m->C = mc->d_model;
    m->H = mc->n_heads;
    m->dn = d.nope;
    m->dr = d.rope;
    m->dv = d.v;
    m->r = d.kv_rank;
    m->rq = d.q_rank;
    m->eps = (float)mc->norm_eps;
    if (strcmp(c->position, "rope") == 0) m->rope_table = rope_cache_request(spec->rope, m->dr);
    float std = (float)mc->init_std, out_std = (float)config_out_init_std(mc);
    int l = spec->layer, C = m->C, HQ = m->H * qk_dim(m);
    char name[96];
#define NAME(what) (snprintf(name, sizeof name, "layers.%d.mixer.%s", l, what), name)
    if (m->rq) {
        params_matrix(ps, &m->w_dq, NAME("q_proj.0.weight"), m->rq, C, std);
        params_gain(ps, &m->q_norm, NAME("q_proj.1.weight"), m->rq);
        params_matrix(ps, &m->w_uq, NAME("q_proj.2.weight"), HQ, m->rq, std);
    } else {
        params_matrix(ps, &m->w_q, NAME("q_proj.weight"), HQ, C, std);
    }
    params_matrix(ps, &m->w_dkv, NAME("kv_proj.0.weight"), m->r, C, std);
    params_gain(ps, &m->kv_norm, NAME("kv_proj.1.weight"), m->r);
    params_matrix(ps, &m->w_ukv, NAME("kv_proj.2.weight"), (long)m->H * kv_dim(m), m->r, std);
    params_matrix(ps, &m->w_kr, NAME("k_rope.weight"), m->dr, C, std);
    params_matrix(ps, &m->w_o, NAME("o_proj.weight"), C, (long)m->H * m->dv, out_std);
#undef NAME
    return &m->base;
}

static AttnShape attn_shape(const Mla *m, int B, int T) {
    long HQ = (long)m->H * qk_dim(m), HKV = (long)m->H * kv_dim(m);
    return (AttnShape){.B = B, .T = T, .H = m->H, .Hkv = m->H, .Dk = qk_dim(m), .Dv = m->dv, .q_stride = HQ,
                       .k_stride = HKV, .v_stride = HKV, .o_stride = (long)m->H * m->dv,
                       .scale = 1.0f / sqrtf((float)qk_dim(m)), .k_head = kv_dim(m), .v_head = kv_dim(m),
                       .k_shared = m->dr, .k_shared_stride = m->dr};
}

/* The attention's shape. Under RoPE the attention rotates the decoupled key and the query
 * columns that meet it (the last dr of each head: attn_rotated) itself where the backend can (the
 * GPU's kernels, as they pack q and k), and the shape carries the tables; else the layer rotates
 * (attn_layer_rotates, rotate). */
static AttnShape rotary_shape(const Mla *m, const Backend *be, int B, int T) {
    return attn_rotating_shape(be, attn_shape(m, B, T), m->rope_table);
}

/* q's rotary columns and the shared key kr rotated (inverse: their gradients turned back) */
static void rotate(const Mla *m, const Backend *be, float *q, float *kr, int B, int T, bool inverse) {
    const RopeTable *t = m->rope_table;
    void (*op)(float *, int, int, int, int, long, int, int, const float *, const float *, int) =
        inverse ? be->rope_backward : be->rope_forward;
    op(kr, B, T, 1, m->dr, m->dr, 0, m->dr, t->cos, t->sin, 0);
    op(q, B, T, m->H, qk_dim(m), (long)m->H * qk_dim(m), m->dn, m->dr, t->cos, t->sin, 0);
}

static void mla_declare(Mixer *mx, const Backend *be, Arena *acts, Arena *scratch, int B, int T) {
    Mla *m = (Mla *)mx;
    size_t N = (size_t)B * T, HQ = (size_t)m->H * qk_dim(m), HKV = (size_t)m->H * kv_dim(m),
           HV = (size_t)m->H * m->dv;
    if (m->rq) {
        arena_floats(acts, &m->cq, N * m->rq);
        arena_floats(acts, &m->cq_n, N * m->rq);
        arena_floats(acts, &m->cq_rstd, N);
        arena_floats(scratch, &m->dcq_n, N * m->rq);
        arena_floats(scratch, &m->dcq, N * m->rq);
    }
    AttnShape shape = attn_shape(m, B, T);
    size_t saved = be->attention_saved(&shape); /* > 0: the backward reads its own copies of q, k, v */
    Arena *qkv = saved ? scratch : acts;
    arena_floats(qkv, &m->q, N * HQ);
    arena_floats(qkv, &m->kv, N * HKV);
    arena_floats(qkv, &m->kr, N * m->dr);
    arena_declare(acts, &m->saved, saved);
    arena_floats(acts, &m->c, N * m->r);
    arena_floats(acts, &m->c_n, N * m->r);
    arena_floats(acts, &m->c_rstd, N);
    arena_floats(scratch, &m->dkr, N * m->dr);
    arena_floats(acts, &m->att, N * HV);
    arena_floats(acts, &m->lse, N * m->H);
    arena_floats(scratch, &m->dq, N * HQ);
    arena_floats(scratch, &m->datt, N * HV);
    arena_floats(scratch, &m->dkv, N * HKV);
    arena_floats(scratch, &m->dc_n, N * m->r);
    arena_floats(scratch, &m->dc, N * m->r);
    arena_declare(scratch, &m->work, be->attention_workspace(&shape));
}

/* The three products of x (through x_norm, at decode) in one group: the queries q_or_cq through
 * wq (q [N, H (dn + dr)], their bottleneck cq [N, rq], or at decode the absorbed queries), the
 * latent c [N, r] and the shared rotary key kr [N, dr] (one launch at decode). */
static void project_input(Mla *m, const Backend *be, const float *x, const RowNorm *x_norm, const float *wq,
                          float *q_or_cq, int q_width, float *c, float *kr, int N) {
    LinearOut outs[3] = {
        {wq, q_or_cq, q_width, LINEAR_SET},
        {m->w_dkv.w, c, m->r, LINEAR_SET},
        {m->w_kr.w, kr, m->dr, LINEAR_SET},
    };
    be->linear_group(x, x_norm, N, m->C, 3, outs);
}

/* q from its bottleneck cq, where there is one (project_input made q itself otherwise). */
static void finish_queries(Mla *m, const Backend *be, float *q, const float *cq, float *cq_n, float *rstd, int N) {
    if (!m->rq) return;
    be->rmsnorm_forward(cq_n, rstd, cq, m->q_norm.w, N, m->rq, m->eps);
    linear_forward(be, q, cq_n, &m->w_uq, N, m->rq, m->H * qk_dim(m), false);
}

static void mla_forward(Mixer *mx, const Backend *be, const float *x, float *y, int B, int T) {
    Mla *m = (Mla *)mx;
    int N = B * T, H = m->H, dk = qk_dim(m), HQ = H * dk, HKV = H * kv_dim(m), HV = H * m->dv;
    if (m->rq) project_input(m, be, x, NULL, m->w_dq.w, m->cq, m->rq, m->c, m->kr, N);
    else project_input(m, be, x, NULL, m->w_q.w, m->q, HQ, m->c, m->kr, N);
    finish_queries(m, be, m->q, m->cq, m->cq_n, m->cq_rstd, N);
    be->rmsnorm_forward(m->c_n, m->c_rstd, m->c, m->kv_norm.w, N, m->r, m->eps);
    linear_forward(be, m->kv, m->c_n, &m->w_ukv, N, m->r, HKV, false);
    AttnShape shape = rotary_shape(m, be, B, T);
    if (attn_layer_rotates(&shape, m->rope_table)) rotate(m, be, m->q, m->kr, B, T, false);
    be->attention_forward(&shape, m->att, m->lse, m->saved, m->q, m->kv, m->kr, m->kv + m->dn, m->work);
    linear_forward(be, y, m->att, &m->w_o, N, HV, m->C, true);
}

static void mla_backward(Mixer *mx, const Backend *be, const float *x, const float *dy, float *dx, int B, int T) {
    Mla *m = (Mla *)mx;
    int N = B * T, H = m->H, dk = qk_dim(m), HQ = H * dk, HKV = H * kv_dim(m), HV = H * m->dv;
    linear_backward(be, m->datt, dy, m->att, &m->w_o, N, HV, m->C, false);
    AttnShape shape = rotary_shape(m, be, B, T);
    be->attention_backward(&shape, m->dq, m->dkv, m->dkr, m->dkv + m->dn, m->datt, m->q, m->kv, m->kr, m->kv + m->dn,
                           m->att, m->lse, m->saved, m->work);
    if (attn_layer_rotates(&shape, m->rope_table)) rotate(m, be, m->dq, m->dkr, B, T, true);
    linear_backward(be, m->dc_n, m->dkv, m->c_n, &m->w_ukv, N, m->r, HKV, false);
    be->zero(m->dc, (size_t)N * m->r);
    be->rmsnorm_backward(m->dc, m->kv_norm.g, m->dc_n, m->c, m->kv_norm.w, m->c_rstd, N, m->r);
    if (m->rq) {
        linear_backward(be, m->dcq_n, m->dq, m->cq_n, &m->w_uq, N, m->rq, HQ, false);
        be->zero(m->dcq, (size_t)N * m->rq);
        be->rmsnorm_backward(m->dcq, m->q_norm.g, m->dcq_n, m->cq, m->q_norm.w, m->cq_rstd, N, m->rq);
    }
    /* project_input's three products back to x in one op (dx written once: the sum in this order) */
    const LinearGrad grads[3] = {
        linear_grad(&m->w_kr, m->dkr, m->dr),
        linear_grad(&m->w_dkv, m->dc, m->r),
        m->rq ? linear_grad(&m->w_dq, m->dcq, m->rq) : linear_grad(&m->w_q, m->dq, HQ),
    };
    be->linear_group_backward(dx, x, N, m->C, 3, grads, false);
}

/* ---- decode over the latent cache ---- */

static int cache_row(const Mla *m) { return m->r + m->dr; }
/* the width of what the queries are made from: x, or the bottleneck */
static int query_input(const Mla *m) { return m->rq ? m->rq : m->C; }

static AttnShape absorbed_shape(const Mla *m, int B, int T) {
    int row = cache_row(m);
    return (AttnShape){.B = B, .T = T, .H = m->H, .Hkv = 1, .Dk = row, .Dv = m->r, .q_stride = (long)m->H * row,
                       .k_stride = row, .v_stride = row, .o_stride = (long)m->H * m->r,
                       .scale = 1.0f / sqrtf((float)qk_dim(m))};
}

static void mla_declare_decode(Mixer *mx, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context) {
    Mla *m = (Mla *)mx;
    size_t row = (size_t)cache_row(m);
    m->max_context = max_context;
    arena_floats(cache, &m->cache, (size_t)B * max_context * row);
    arena_floats(cache, &m->w_qa, (size_t)m->H * row * query_input(m));
    if (m->rq) arena_floats(scratch, &m->s_cq, (size_t)B * m->rq);
    arena_floats(scratch, &m->s_c, (size_t)B * m->r);
    arena_floats(scratch, &m->s_kr, (size_t)B * m->dr);
    arena_floats(scratch, &m->s_qa, (size_t)B * m->H * row);
    arena_floats(scratch, &m->s_ohat, (size_t)B * m->H * m->r);
    arena_floats(scratch, &m->s_att, (size_t)B * m->H * m->dv);
    AttnShape shape = absorbed_shape(m, B, (int)max_context);
    arena_declare(scratch, &m->s_work, be->attention_decode_workspace(&shape));
}

/* The cache needs no emptying: a step at pos reads only rows [0, pos], which earlier steps wrote.
 * The absorbed query weights from the parameters as they are now (W_uk_h is rows [h (dn + dv), + dn)
 * of W_ukv; W_q_nope_h rows [h dk, + dn) of the query weights, W_q_rope_h the dr rows after them). */
static void mla_decode_reset(Mixer *mx, const Backend *be, int B) {
    (void)B;
    Mla *m = (Mla *)mx;
    int H = m->H, r = m->r, row = cache_row(m), in = query_input(m), dk = qk_dim(m);
    const float *wq = m->rq ? m->w_uq.w : m->w_q.w;
    long long w_head = (long long)kv_dim(m) * r;
    be->gemm_batched(true, false, r, in, m->dn, 1.0f, m->w_ukv.w, r, w_head, wq, in, (long long)dk * in, 0.0f, m->w_qa,
                     in, (long long)row * in, H);
    be->copy_heads(m->w_qa + (size_t)r * in, 0, (long)row * in, wq + (size_t)m->dn * in, 0, (long)dk * in, 1, H,
                   m->dr * in, false);
    be->decode_weights(m->w_qa, (size_t)H * row * in, true);
}

static void mla_decode_step(Mixer *mx, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                            const DecodeAt *at) {
    Mla *m = (Mla *)mx;
    if (at->pos >= m->max_context) die("decode: position %ld is past the cache of %ld tokens", at->pos, m->max_context);
    int H = m->H, row = cache_row(m), r = m->r, HQA = H * row;
    long seq = m->max_context * row;
    /* the absorbed queries [W_uk_h^T q_nope_h | q_rope_h], from x or from the bottleneck cq (its
     * norm folded into the product: nothing keeps cq_n) */
    if (m->rq) {
        project_input(m, be, x, x_norm, m->w_dq.w, m->s_cq, m->rq, m->s_c, m->s_kr, B);
        const RowNorm q_norm = {m->q_norm.w, m->eps};
        const LinearOut q = {m->w_qa, m->s_qa, HQA, LINEAR_SET};
        be->linear_group(m->s_cq, &q_norm, B, m->rq, 1, &q);
    } else {
        project_input(m, be, x, x_norm, m->w_qa, m->s_qa, HQA, m->s_c, m->s_kr, B);
    }
    if (m->rope_table) {
        const RopeTable *t = m->rope_table;
        be->rope_forward(m->s_kr, B, 1, 1, m->dr, m->dr, 0, m->dr, t->step_cos, t->step_sin, 0);
        be->rope_forward(m->s_qa, B, 1, H, row, HQA, r, m->dr, t->step_cos, t->step_sin, 0);
    }
    /* the new cache row: [RMSNorm(x W_dkv) | x W_kr, rotated under RoPE] */
    const RowNorm kv_norm = {m->kv_norm.w, m->eps};
    be->cache_write_normed(m->cache, seq, at->pos_len, m->s_c, r, &kv_norm, m->s_kr, m->dr, B);
    AttnShape shape = absorbed_shape(m, B, (int)m->max_context);
    be->attention_decode(&shape, seq, (int)at->pos + 1, at->pos_len + 1, m->s_ohat, m->s_qa, m->cache, m->cache,
                         m->s_work);
    /* o_h = W_uv_h (sum_j p_j c_j); W_uv_h is rows [h (dn + dv) + dn, + dv) of W_ukv */
    long long w_head = (long long)kv_dim(m) * r;
    be->gemm_batched(false, true, B, m->dv, r, 1.0f, m->s_ohat, H * r, r, m->w_ukv.w + (size_t)m->dn * r, r, w_head,
                     0.0f, m->s_att, H * m->dv, m->dv, H);
    linear_forward(be, y, m->s_att, &m->w_o, B, H * m->dv, m->C, true);
}

/* ---- sizes ---- */

static double mla_flops(const Mixer *mx, int T) {
    const Mla *m = (const Mla *)mx;
    double C = m->C, H = m->H, HQ = H * qk_dim(m), HV = H * m->dv;
    double q = m->rq ? C * m->rq + (double)m->rq * HQ : C * HQ;
    double proj = q + C * m->r + (double)m->r * H * kv_dim(m) + C * m->dr + HV * C;
    double attn = 2.0 * H * (qk_dim(m) + m->dv) * (T + 1) / 2.0;
    return 2.0 * proj + attn;
}

static size_t mla_cache_bytes(const Mixer *mx, long context) {
    return sizeof(float) * (size_t)cache_row((const Mla *)mx) * (size_t)context;
}

static void mla_destroy(Mixer *m) { free(m); }

const MixerOps mixer_mla = {
    .name = "mla",
    .linear_time = false,
    MIXER_SECTION(mla_fields, MlaConfig),
    .check = mla_check,
    .position = mla_position,
    .op_core = OP_CORE_NONE, /* its attention runs softmax's core with a latent of its own */
    .create = mla_create,
    .declare = mla_declare,
    .forward = mla_forward,
    .backward = mla_backward,
    .declare_decode = mla_declare_decode,
    .decode_reset = mla_decode_reset,
    .decode_step = mla_decode_step,
    .decode_takes_norm = true,
    .flops_per_token = mla_flops,
    .cache_bytes = mla_cache_bytes,
    .destroy = mla_destroy,
};
