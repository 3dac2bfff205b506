/* Gradient checks of every CPU op against finite differences, and forward checks against plain
 * double-precision references where the forward is not obvious (attention, cross-entropy). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/attention_layout.h"
#include "core/backend.h"
#include "core/linear.h"
#include "core/util.h"
#include "gradcheck.h"
#include "test.h"

/* ---- RMSNorm, also used to show that the checker catches wrong backwards ---- */

typedef struct {
    const Backend *be;
    int N, C;
    float *x, *w, *out, *rstd, *R;
} NormCase;

static double norm_loss(void *p) {
    NormCase *c = p;
    c->be->rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return dot_loss(c->out, c->R, (size_t)c->N * c->C);
}

static NormCase norm_case(Rng *rng) {
    NormCase c = {backend_cpu(), 6, 20, NULL, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.N * c.C;
    c.x = new_normal(n, 1.0f, rng);
    c.w = new_normal(c.C, 1.0f, rng);
    c.out = new_zeros(n);
    c.rstd = new_zeros(c.N);
    c.R = new_normal(n, 1.0f, rng);
    return c;
}

TEST(test_rmsnorm_gradient) {
    Rng rng;
    rng_seed(&rng, 1);
    NormCase c = norm_case(&rng);
    size_t n = (size_t)c.N * c.C;
    float *dx = new_zeros(n), *dw = new_zeros(c.C);
    norm_loss(&c);
    c.be->rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    double ex = gradcheck(norm_loss, &c, c.x, dx, n, 200, 1e-2f, &rng);
    double ew = gradcheck(norm_loss, &c, c.w, dw, c.C, 200, 1e-2f, &rng);
    CHECK(ex < GRAD_TOL, "rmsnorm dx relative error %.2e", ex);
    CHECK(ew < GRAD_TOL, "rmsnorm dw relative error %.2e", ew);
    /* the backward adds to dx (the residual stream's gradient): a second call doubles it */
    float *dx2 = new_zeros(n), *dw2 = new_zeros(c.C);
    memcpy(dx2, dx, sizeof(float) * n);
    c.be->rmsnorm_backward(dx2, dw2, c.R, c.x, c.w, c.rstd, c.N, c.C);
    for (size_t i = 0; i < n; i++) CHECK(fabsf(dx2[i] - 2 * dx[i]) <= 1e-5f * (1 + fabsf(dx[i])), "dx not accumulated");
}

TEST(test_gradcheck_catches_a_wrong_backward) {
    Rng rng;
    rng_seed(&rng, 2);
    NormCase c = norm_case(&rng);
    size_t n = (size_t)c.N * c.C;
    float *dx = new_zeros(n), *dw = new_zeros(c.C);
    norm_loss(&c);
    c.be->rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    /* a gradient 5% too large */
    float *scaled = new_zeros(n);
    for (size_t i = 0; i < n; i++) scaled[i] = 1.05f * dx[i];
    double e_scaled = gradcheck(norm_loss, &c, c.x, scaled, n, 200, 1e-2f, &rng);
    CHECK(e_scaled > GRAD_TOL, "a 5%% error went unnoticed (%.2e)", e_scaled);
    /* a classic bug: treating rstd as a constant, i.e. dropping its derivative */
    float *dropped = new_zeros(n);
    for (int r = 0; r < c.N; r++)
        for (int j = 0; j < c.C; j++)
            dropped[r * c.C + j] = c.rstd[r] * c.w[j] * c.R[r * c.C + j];
    double e_dropped = gradcheck(norm_loss, &c, c.x, dropped, n, 200, 1e-2f, &rng);
    CHECK(e_dropped > GRAD_TOL, "a dropped term went unnoticed (%.2e)", e_dropped);
}

/* ---- embedding ---- */

typedef struct {
    const Backend *be;
    int N, C, V;
    int *tokens;
    float *wte, *out, *R;
} EmbCase;

static double emb_loss(void *p) {
    EmbCase *c = p;
    c->be->embedding_forward(c->out, c->tokens, c->wte, c->N, c->C);
    return dot_loss(c->out, c->R, (size_t)c->N * c->C);
}

TEST(test_embedding_gradient) {
    Rng rng;
    rng_seed(&rng, 3);
    EmbCase c = {backend_cpu(), 12, 8, 5, NULL, NULL, NULL, NULL};
    c.tokens = xmalloc(sizeof(int) * c.N);
    for (int i = 0; i < c.N; i++) c.tokens[i] = (int)rng_below(&rng, c.V); /* repeats: rows collect several */
    c.wte = new_normal((size_t)c.V * c.C, 1.0f, &rng);
    c.out = new_zeros((size_t)c.N * c.C);
    c.R = new_normal((size_t)c.N * c.C, 1.0f, &rng);
    float *dwte = new_zeros((size_t)c.V * c.C);
    c.be->embedding_backward(dwte, c.R, c.tokens, c.N, c.C);
    double e = gradcheck(emb_loss, &c, c.wte, dwte, (size_t)c.V * c.C, 1000, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "embedding dwte relative error %.2e", e);
}

/* ---- linear ---- */

typedef struct {
    const Backend *be;
    int N, in, out;
    float *x, *y, *R;
    Param W;
} LinCase;

static double lin_loss(void *p) {
    LinCase *c = p;
    linear_forward(c->be, c->y, c->x, &c->W, c->N, c->in, c->out, false);
    return dot_loss(c->y, c->R, (size_t)c->N * c->out);
}

TEST(test_linear_gradient) {
    Rng rng;
    rng_seed(&rng, 4);
    LinCase c = {backend_cpu(), 7, 9, 5, NULL, NULL, NULL, {NULL, NULL}};
    c.x = new_normal((size_t)c.N * c.in, 1.0f, &rng);
    c.y = new_zeros((size_t)c.N * c.out);
    c.R = new_normal((size_t)c.N * c.out, 1.0f, &rng);
    c.W.w = new_normal((size_t)c.out * c.in, 1.0f, &rng);
    c.W.g = new_zeros((size_t)c.out * c.in);
    float *dx = new_zeros((size_t)c.N * c.in);
    linear_backward(c.be, dx, c.R, c.x, &c.W, c.N, c.in, c.out, false);
    double ex = gradcheck(lin_loss, &c, c.x, dx, (size_t)c.N * c.in, 500, 1e-2f, &rng);
    double ew = gradcheck(lin_loss, &c, c.W.w, c.W.g, (size_t)c.out * c.in, 500, 1e-2f, &rng);
    CHECK(ex < GRAD_TOL, "linear dx relative error %.2e", ex);
    CHECK(ew < GRAD_TOL, "linear dW relative error %.2e", ew);
    /* accumulate: y += x W^T on top of what is there */
    float *y0 = new_normal((size_t)c.N * c.out, 1.0f, &rng), *y1 = new_zeros((size_t)c.N * c.out);
    memcpy(y1, y0, sizeof(float) * c.N * c.out);
    linear_forward(c.be, y1, c.x, &c.W, c.N, c.in, c.out, true);
    lin_loss(&c);
    for (int i = 0; i < c.N * c.out; i++) CHECK_NEAR(y1[i], y0[i] + c.y[i], 1e-5, "accumulated linear output");
}

/* ---- SwiGLU ---- */

typedef struct {
    const Backend *be;
    int N, F;
    float *gu, *out, *R;
} SwiCase;

static double swi_loss(void *p) {
    SwiCase *c = p;
    c->be->swiglu_forward(c->out, c->gu, c->N, c->F);
    return dot_loss(c->out, c->R, (size_t)c->N * c->F);
}

TEST(test_swiglu_gradient) {
    Rng rng;
    rng_seed(&rng, 5);
    SwiCase c = {backend_cpu(), 5, 11, NULL, NULL, NULL};
    c.gu = new_normal((size_t)c.N * 2 * c.F, 2.0f, &rng);
    c.out = new_zeros((size_t)c.N * c.F);
    c.R = new_normal((size_t)c.N * c.F, 1.0f, &rng);
    float *dgu = new_zeros((size_t)c.N * 2 * c.F);
    c.be->swiglu_backward(dgu, c.R, c.gu, c.N, c.F);
    double e = gradcheck(swi_loss, &c, c.gu, dgu, (size_t)c.N * 2 * c.F, 500, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "swiglu relative error %.2e", e);
    /* forward against the definition */
    swi_loss(&c);
    for (int n = 0; n < c.N; n++)
        for (int i = 0; i < c.F; i++) {
            double g = c.gu[n * 2 * c.F + i], u = c.gu[n * 2 * c.F + c.F + i];
            CHECK_NEAR(c.out[n * c.F + i], g / (1 + exp(-g)) * u, 1e-5 * (1 + fabs(g * u)), "swiglu value");
        }
}

/* ---- RoPE ---- */

typedef struct {
    const Backend *be;
    int B, T, H, D, stride, offset, rot;
    float *x, *y, *R, *cos, *sin;
} RopeCase;

static double rope_loss(void *p) {
    RopeCase *c = p;
    size_t n = (size_t)c->B * c->T * c->stride;
    memcpy(c->y, c->x, sizeof(float) * n);
    c->be->rope_forward(c->y, c->B, c->T, c->H, c->D, c->stride, c->offset, c->rot, c->cos, c->sin, 0);
    return dot_loss(c->y, c->R, n);
}

static void rope_tables(float *cos_t, float *sin_t, int T, int rot) {
    for (int p = 0; p < T; p++)
        for (int j = 0; j < rot / 2; j++) {
            double a = p * pow(10000.0, -2.0 * j / rot);
            cos_t[p * rot / 2 + j] = (float)cos(a);
            sin_t[p * rot / 2 + j] = (float)sin(a);
        }
}

TEST(test_rope_gradient_and_relative_positions) {
    Rng rng;
    rng_seed(&rng, 6);
    /* two heads of 10 channels, rotating channels [2, 10) of each, inside rows of 23 floats */
    RopeCase c = {backend_cpu(), 2, 5, 2, 10, 23, 2, 8, NULL, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.B * c.T * c.stride;
    c.x = new_normal(n, 1.0f, &rng);
    c.y = new_zeros(n);
    c.R = new_normal(n, 1.0f, &rng);
    c.cos = new_zeros((size_t)c.T * c.rot / 2);
    c.sin = new_zeros((size_t)c.T * c.rot / 2);
    rope_tables(c.cos, c.sin, c.T, c.rot);
    float *dx = new_zeros(n);
    memcpy(dx, c.R, sizeof(float) * n);
    c.be->rope_backward(dx, c.B, c.T, c.H, c.D, c.stride, c.offset, c.rot, c.cos, c.sin, 0);
    double e = gradcheck(rope_loss, &c, c.x, dx, n, 400, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "rope relative error %.2e", e);
    /* channels outside the rotated range and outside the heads are untouched */
    rope_loss(&c);
    for (int r = 0; r < c.B * c.T; r++) {
        for (int j = 0; j < c.stride; j++) {
            int h = j / c.D, in_head = j % c.D;
            bool rotated = h < c.H && in_head >= c.offset && in_head < c.offset + c.rot;
            if (!rotated) CHECK(c.y[r * c.stride + j] == c.x[r * c.stride + j], "channel %d changed", j);
        }
    }
    /* the dot product of a rotated query at m and key at n depends only on m - n */
    float q[8], k[8], cq[4 * 8], ck[4 * 8];
    for (int i = 0; i < 8; i++) {
        q[i] = (float)rng_normal(&rng);
        k[i] = (float)rng_normal(&rng);
    }
    for (int t = 0; t < 4; t++) {
        memcpy(cq + 8 * t, q, sizeof q);
        memcpy(ck + 8 * t, k, sizeof k);
    }
    c.be->rope_forward(cq, 1, 4, 1, 8, 8, 0, 8, c.cos, c.sin, 0);
    c.be->rope_forward(ck, 1, 4, 1, 8, 8, 0, 8, c.cos, c.sin, 0);
    double d31 = 0, d20 = 0;
    for (int i = 0; i < 8; i++) {
        d31 += cq[24 + i] * ck[8 + i];
        d20 += cq[16 + i] * ck[i];
    }
    CHECK_NEAR(d31, d20, 1e-5, "q(3).k(1) vs q(2).k(0)");
}

/* ---- causal softmax attention ---- */

typedef struct {
    const Backend *be;
    AttnShape s;
    float *qkv, *o, *lse, *R, *work;
    void *saved;
} AttnCase;

/* A row of qkv: q's H heads, then the keys and values. Heads side by side (all of k, then all of
 * v) or, with shared key columns, MLA's layout: kv head g's own key columns and its values
 * together at g (own + Dv), then the shared columns. */
static float *q_of(AttnCase *c) { return c->qkv; }
static float *k_of(AttnCase *c) { return c->qkv + (size_t)c->s.H * c->s.Dk; }
static float *v_of(AttnCase *c) {
    return k_of(c) + (c->s.k_shared ? (size_t)(c->s.Dk - c->s.k_shared) : (size_t)c->s.Hkv * c->s.Dk);
}
static float *k_shared_of(AttnCase *c) {
    return c->s.k_shared ? k_of(c) + (size_t)c->s.Hkv * attn_key_head(&c->s) : NULL;
}

/* key channel i of kv head g at row (b, t), wherever the layout keeps it */
static float key_at(AttnCase *c, int b, int t, int g, int i) {
    const AttnShape *s = &c->s;
    size_t row = (size_t)b * s->T + t;
    int own = s->Dk - s->k_shared;
    if (i < own) return k_of(c)[row * s->k_stride + (size_t)g * attn_key_head(s) + i];
    return k_shared_of(c)[row * s->k_shared_stride + i - own];
}

static double attn_loss(void *p) {
    AttnCase *c = p;
    c->be->attention_forward(&c->s, c->o, c->lse, c->saved, q_of(c), k_of(c), k_shared_of(c), v_of(c), c->work);
    return dot_loss(c->o, c->R, (size_t)c->s.B * c->s.T * c->s.o_stride);
}

static AttnCase attn_case(int B, int T, int H, int Hkv, int Dk, int Dv, int shared, Rng *rng) {
    AttnCase c;
    c.be = backend_cpu();
    long w = (long)(H + Hkv) * Dk + (long)Hkv * Dv - (long)(Hkv - 1) * shared;
    c.s = (AttnShape){.B = B, .T = T, .H = H, .Hkv = Hkv, .Dk = Dk, .Dv = Dv,
                      .q_stride = w, .k_stride = w, .v_stride = w, .o_stride = (long)H * Dv,
                      .scale = 1.0f / sqrtf((float)Dk)};
    if (shared) {
        c.s.k_head = c.s.v_head = Dk - shared + Dv;
        c.s.k_shared = shared;
        c.s.k_shared_stride = w;
    }
    c.qkv = new_normal((size_t)B * T * w, 1.0f, rng);
    c.o = new_zeros((size_t)B * T * H * Dv);
    c.lse = new_zeros((size_t)B * H * T);
    c.R = new_normal((size_t)B * T * H * Dv, 1.0f, rng);
    c.work = xalloc_aligned(c.be->attention_workspace(&c.s));
    c.saved = xalloc_aligned(c.be->attention_saved(&c.s));
    return c;
}

/* o from the definition, in double, for one (b, h, t). */
static double attn_reference(AttnCase *c, int b, int h, int t, int d) {
    const AttnShape *s = &c->s;
    int g = h / (s->H / s->Hkv);
    const float *q = q_of(c) + ((size_t)b * s->T + t) * s->q_stride + (size_t)h * s->Dk;
    double mx = -INFINITY, *score = xmalloc(sizeof(double) * (t + 1));
    for (int j = 0; j <= t; j++) {
        double dot = 0;
        for (int i = 0; i < s->Dk; i++) dot += (double)q[i] * key_at(c, b, j, g, i);
        score[j] = dot * s->scale;
        mx = fmax(mx, score[j]);
    }
    double num = 0, den = 0;
    for (int j = 0; j <= t; j++) {
        double e = exp(score[j] - mx);
        den += e;
        num += e * v_of(c)[((size_t)b * s->T + j) * s->v_stride + (size_t)g * attn_value_head(s) + d];
    }
    free(score);
    return num / den;
}

/* The forward against the definition, and a finite-difference check of the backward over every
 * input column (with shared key columns: its gradient sums the heads'). */
static void check_attention_layout(int B, int T, int H, int Hkv, int Dk, int Dv, int shared, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    AttnCase c = attn_case(B, T, H, Hkv, Dk, Dv, shared, &rng);
    attn_loss(&c);
    for (int probe = 0; probe < 40; probe++) {
        int b = (int)rng_below(&rng, B), h = (int)rng_below(&rng, H), t = (int)rng_below(&rng, T),
            d = (int)rng_below(&rng, Dv);
        double ref = attn_reference(&c, b, h, t, d);
        CHECK_NEAR(c.o[((size_t)b * T + t) * c.s.o_stride + (size_t)h * Dv + d], ref, 2e-5, "attention output");
    }
    size_t n = (size_t)B * T * c.s.q_stride;
    float *dqkv = new_normal(n, 1.0f, &rng); /* garbage: the backward must overwrite, not add */
    float *base = c.qkv;
    c.qkv = dqkv; /* the gradients in the inputs' layout */
    float *dq = q_of(&c), *dk = k_of(&c), *dks = k_shared_of(&c), *dv = v_of(&c);
    c.qkv = base;
    c.be->attention_backward(&c.s, dq, dk, dks, dv, c.R, q_of(&c), k_of(&c), k_shared_of(&c), v_of(&c), c.o, c.lse,
                             c.saved, c.work);
    double e = gradcheck(attn_loss, &c, c.qkv, dqkv, n, 600, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "attention (B%d T%d H%d Hkv%d Dk%d Dv%d shared %d) relative error %.2e", B, T, H, Hkv, Dk, Dv,
          shared, e);
}

static void check_attention(int B, int T, int H, int Hkv, int Dk, int Dv, unsigned seed) {
    check_attention_layout(B, T, H, Hkv, Dk, Dv, 0, seed);
}

TEST(test_attention_mha_gradient) { check_attention(2, 9, 2, 2, 8, 8, 7); }
TEST(test_attention_gqa_gradient) { check_attention(1, 7, 4, 2, 6, 6, 8); }
TEST(test_attention_mqa_unequal_dims_gradient) { check_attention(1, 6, 3, 1, 10, 4, 9); }
/* 70 rows cross the 64-row query tile boundary */
TEST(test_attention_across_tiles_gradient) { check_attention(1, 70, 1, 1, 4, 4, 10); }
/* MLA's layout: each head's own key columns beside its values, the last 3 key columns shared by
 * every head (the GQA case shares them across kv heads, each read by two query heads) */
TEST(test_attention_shared_key_columns_gradient) {
    check_attention_layout(2, 9, 3, 3, 8, 6, 3, 11);
    check_attention_layout(1, 70, 4, 2, 6, 5, 2, 12);
}

/* RoPE's place in an attention shape: the rotated columns are the shared key columns where there
 * are any (MLA's decoupled key), else all Dk; the tables go into the shape only where the backend
 * says its attention rotates (the CPU's does not: its layers rotate around it) */
static bool rotates_any_shape(const AttnShape *s) {
    (void)s;
    return true;
}
TEST(test_attention_rotating_shape) {
    AttnShape mla = {.B = 1, .T = 4, .H = 2, .Hkv = 2, .Dk = 96, .Dv = 64, .k_shared = 32}, plain = mla;
    plain.k_shared = 0;
    CHECK(attn_rotated(&mla) == 32 && attn_rotated(&plain) == 96, "rotated columns %d and %d, want 32 and 96",
          attn_rotated(&mla), attn_rotated(&plain));
    float cos_t[16] = {0}, sin_t[16] = {0};
    const RopeTable rope = {.cos = cos_t, .sin = sin_t};
    AttnShape on_cpu = attn_rotating_shape(backend_cpu(), mla, &rope);
    CHECK(!on_cpu.rope_cos && !on_cpu.rope_sin, "the CPU's attention was handed RoPE's tables");
    CHECK(attn_layer_rotates(&on_cpu, &rope), "the layer does not rotate where the CPU's attention does not");
    Backend rotating = *backend_cpu();
    rotating.attention_rotates = rotates_any_shape;
    AttnShape in_op = attn_rotating_shape(&rotating, mla, &rope);
    CHECK(in_op.rope_cos == cos_t && in_op.rope_sin == sin_t, "a rotating backend's shape lacks the tables");
    CHECK(in_op.Dk == 96 && in_op.k_shared == 32 && in_op.Dv == 64, "the shape changed beyond its tables");
    CHECK(!attn_layer_rotates(&in_op, &rope), "the layer rotates too where the attention does");
    AttnShape nope = attn_rotating_shape(&rotating, mla, NULL);
    CHECK(!nope.rope_cos && !attn_layer_rotates(&nope, NULL), "NoPE was rotated");
}

/* ---- LM head + cross-entropy ---- */

typedef struct {
    const Backend *be;
    int N, C, V;
    float *x, *W, *work, *dx, *dW;
    int *targets;
} XentCase;

static double xent_loss(void *p) {
    XentCase *c = p;
    return c->be->lm_head_xent(NULL, NULL, c->x, c->W, c->targets, c->N, c->C, c->V, 0.0f, c->work).loss_sum;
}

TEST(test_lm_head_xent_gradient_and_value) {
    Rng rng;
    rng_seed(&rng, 11);
    XentCase c = {backend_cpu(), 9, 6, 13, NULL, NULL, NULL, NULL, NULL, NULL};
    c.x = new_normal((size_t)c.N * c.C, 1.0f, &rng);
    c.W = new_normal((size_t)c.V * c.C, 1.0f, &rng);
    c.work = xalloc_aligned(c.be->lm_head_xent_workspace(c.N, c.C, c.V));
    c.targets = xmalloc(sizeof(int) * c.N);
    for (int i = 0; i < c.N; i++) c.targets[i] = i % 3 == 1 ? -1 : (int)rng_below(&rng, c.V);
    c.dx = new_zeros((size_t)c.N * c.C);
    c.dW = new_zeros((size_t)c.V * c.C);
    XentStats st = c.be->lm_head_xent(c.dx, c.dW, c.x, c.W, c.targets, c.N, c.C, c.V, 1.0f, c.work);
    /* reference in double */
    double ref = 0;
    long n_targets = 0, n_correct = 0;
    for (int i = 0; i < c.N; i++) {
        if (c.targets[i] < 0) continue;
        double logit[13], mx = -INFINITY, s = 0;
        int arg = 0;
        for (int v = 0; v < c.V; v++) {
            logit[v] = 0;
            for (int j = 0; j < c.C; j++) logit[v] += (double)c.x[i * c.C + j] * c.W[v * c.C + j];
            if (logit[v] > mx) {
                mx = logit[v];
                arg = v;
            }
        }
        for (int v = 0; v < c.V; v++) s += exp(logit[v] - mx);
        ref += mx + log(s) - logit[c.targets[i]];
        n_targets++;
        n_correct += arg == c.targets[i];
    }
    CHECK_NEAR(st.loss_sum, ref, 1e-4 * fabs(ref), "summed cross-entropy");
    CHECK(st.n_targets == n_targets && st.n_correct == n_correct, "counts %ld/%ld vs %ld/%ld", st.n_targets,
          st.n_correct, n_targets, n_correct);
    double ex = gradcheck(xent_loss, &c, c.x, c.dx, (size_t)c.N * c.C, 500, 1e-2f, &rng);
    double ew = gradcheck(xent_loss, &c, c.W, c.dW, (size_t)c.V * c.C, 500, 1e-2f, &rng);
    CHECK(ex < GRAD_TOL, "xent dx relative error %.2e", ex);
    CHECK(ew < GRAD_TOL, "xent dW relative error %.2e", ew);
    for (int i = 0; i < c.N; i++)
        if (c.targets[i] < 0)
            for (int j = 0; j < c.C; j++) CHECK(c.dx[i * c.C + j] == 0.0f, "masked row %d has a gradient", i);
}

/* ---- optimizer pieces ---- */

TEST(test_adamw_matches_the_formula) {
    const Backend *be = backend_cpu();
    float w[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, 0.2f, -0.3f}, m[3] = {0}, v[3] = {0};
    float lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    for (int step = 1; step <= 3; step++) {
        double W[3], M[3], V[3];
        for (int i = 0; i < 3; i++) {
            double gi = g[i] * gs;
            M[i] = b1 * m[i] + (1 - b1) * gi;
            V[i] = b2 * v[i] + (1 - b2) * gi * gi;
            double mh = M[i] / (1 - pow(b1, step)), vh = V[i] / (1 - pow(b2, step));
            W[i] = w[i] - lr * (mh / (sqrt(vh) + eps) + wd * w[i]);
        }
        be->adamw(w, g, m, v, 3, lr, b1, b2, eps, wd, gs, step);
        for (int i = 0; i < 3; i++) {
            CHECK_NEAR(w[i], W[i], 1e-6, "adamw weight");
            CHECK_NEAR(m[i], M[i], 1e-7, "adamw first moment");
            CHECK_NEAR(v[i], V[i], 1e-8, "adamw second moment");
        }
    }
}

TEST(test_sum_squares_in_double) {
    const Backend *be = backend_cpu();
    size_t n = 100003;
    float *x = new_zeros(n);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((i % 17) - 8) * 0.001f;
        ref += (double)x[i] * x[i];
    }
    CHECK_NEAR(be->sum_squares(x, n), ref, 1e-9 * ref, "sum of squares");
}
