/* The diagonal-plus-low-rank rule (dplr; fla's generalized delta rule, fla/ops/
 * generalized_delta_rule/dplr) on the CPU: the chunkwise-parallel form used for training and its
 * backward; the recurrent reference form and the decode step are beside it in dplr_recurrent.c.
 * One (batch, head) pair is one task owned by one thread; matmuls inside a task are
 * single-threaded OpenBLAS calls, as in the delta rule (delta_rule.c), whose helpers it shares.
 *
 * Per head, S [K, V]: w_t = S_{t-1}^T a_t,  S_t = D_t S_{t-1} + b_t w_t^T + k_t v_t^T,
 * o_t = scale S_t^T q_t, D_t = diag(exp(gk_t)). For a chunk of n rows starting from S0, with
 * c_r = gk_1 + ... + gk_r (per channel, c_0 = 0) and the rows w_r of W, unrolling gives
 *   W = Ag S0 + P_ak V + P_ab W        O = scale (Qg S0 + P_qk V + P_qb W)
 *   S_end = diag(exp(c_n)) S0 + Kc^T V + Bc^T W
 * where Qg = Q exp(c), Ag = A exp(c_{r-1}) (a reads the state before its step's decay), Kc =
 * K exp(c_n - c), Bc = B exp(c_n - c), and the pair products
 *   P_ak[r,j] = sum_d a_rd k_jd exp(c_{r-1,d} - c_jd),  P_ab likewise with b   (j < r)
 *   P_qk[r,j] = sum_d q_rd k_jd exp(c_rd - c_jd),       P_qb likewise with b   (j <= r).
 * P_ab is strictly lower triangular, so W = T (Ag S0 + P_ak V) with T = (I - P_ab)^-1, the same
 * unit-triangular inverse as the delta rule's (which is this with a = exp(gk) k, b = -beta k).
 * Every exponent is <= 0; the products factor through the chunk start (one matmul each) when the
 * chunk's decays span at most FACTOR_LIMIT nats, else go through cpu_decayed_products. */
#include <math.h>
#include <string.h>

#include "core/util.h"
#include "dplr.h"
#include "fastmath.h"

/* The per-thread buffers of one chunk, X(name, floats) with C the chunk size. cz and ez hold a
 * row before the chunk's rows: cz = [0; c], ez = [1; exp(c)], so that the decays of the rows
 * before each row (c_{r-1}, exp(c_{r-1})) are the same buffers one row up. pa and pb stack
 * [P_ak; P_qk] and [P_ab; P_qb] (in the forward's slot), dpa and dpb their gradients. */
#define DPLR_BUFFERS(X)                                                                                               \
    X(cz, CK + K) X(ez, CK + K) X(dcz, CK + K) X(ec, CK) X(ei, CK) X(q, CK) X(k, CK) X(a, CK) X(b, CK) X(qg, CK)       \
    X(ag, CK) X(kc, CK) X(bc, CK) X(ki, CK) X(bi, CK) X(kiT, CK) X(biT, CK) X(dqg, CK) X(dag, CK) X(dkc, CK)         \
    X(dbc, CK) X(dki, CK) X(dbi, CK) X(dq, CK) X(dk, CK) X(da, CK) X(db, CK) X(sub, 6 * CK) X(dpa, 2 * CC)           \
    X(dpb, 2 * CC) X(tmp, CC) X(vT, CV) X(wT, CV) X(dW, CV) X(dR, CV) X(S, KV) X(dtail, K) X(own_slot, SLOT)

typedef struct {
#define DECLARE(name, count) float *name;
    DPLR_BUFFERS(DECLARE)
#undef DECLARE
    /* per chunk: the slot (of `saved`, or the thread's own) and the rows of the inputs */
    float *S0, *pak, *pqk, *pab, *pqb, *T, *W, *dpak, *dpqk, *dpab, *dpqb;
    const float *c, *e, *en; /* c = cz + K, e = ez + K: exp(c_r); en = exp(c_n) */
    const float *v_rows;
    size_t ldk, ldv;
    bool factored; /* the pair products through exp(-c) (decays within FACTOR_LIMIT) */
} DplrBuf;

/* Floats kept per chunk: its start state S0, [P_ak; P_qk], [P_ab; P_qb], T and W. */
static size_t slot_floats(const ScanShape *s) {
    size_t C = (size_t)s->chunk;
    return (size_t)s->K * s->V + 5 * C * C + C * s->V;
}

size_t cpu_dplr_saved(const ScanShape *s) { return chunked_saved_floats(s, slot_floats(s)); }

CHUNK_BUFFER_FUNCTIONS(DplrBuf, DPLR_BUFFERS, slot_floats, thread_floats, buffers)

size_t cpu_dplr_workspace(const ScanShape *s) { return per_thread_bytes(s->chunk ? thread_floats(s) : dplr_recurrent_thread_floats(s)); }

/* Points S0, the pair products, T and W (and the gradients of the pair products) at a chunk's
 * slot; the n x n products of a short last chunk are packed at row stride n. */
static void use_slot(const ScanShape *s, DplrBuf *c, float *slot, int n) {
    size_t C = (size_t)s->chunk, nn = (size_t)n * n;
    c->S0 = slot;
    c->pak = slot + (size_t)s->K * s->V;
    c->pqk = c->pak + nn;
    c->pab = c->pak + 2 * C * C;
    c->pqb = c->pab + nn;
    c->T = c->pak + 4 * C * C;
    c->W = c->T + C * C;
    c->dpak = c->dpa;
    c->dpqk = c->dpa + nn;
    c->dpab = c->dpb;
    c->dpqb = c->dpb + nn;
}

/* The chunk rows [t0, t0 + n) of (bi, h): contiguous copies of q, k, a, b, the decays c and
 * exp(c) (and exp(-c) when they factor), and the decayed rows Qg, Ag, Kc, Bc (Ki, Bi and, for
 * the forward, their transposes when they factor). */
static void prepare(const ScanShape *s, DplrBuf *c, int bi, int h, int t0, int n, const float *q, const float *k,
                    const float *v, const float *a, const float *b, const float *gk, bool forward) {
    const int K = s->K;
    c->ldk = (size_t)s->H * K;
    c->ldv = (size_t)s->H * s->V;
    size_t r0 = row_index(s, bi, t0, h, K);
    c->v_rows = v + row_index(s, bi, t0, h, s->V);
    for (int d = 0; d < K; d++) {
        c->cz[d] = 0.0f;
        c->ez[d] = 1.0f;
    }
    c->factored = chunk_decays(c->cz + K, K, gk + r0, c->ldk, n);
    c->c = c->cz + K;
    c->e = c->ez + K;
    for (int r = 0; r < n; r++) {
        const float *restrict cr = c->c + (size_t)r * K;
        float *restrict er = c->ez + (size_t)(r + 1) * K;
#pragma omp simd
        for (int d = 0; d < K; d++) er[d] = fast_expf(cr[d]);
    }
    c->en = c->e + (size_t)(n - 1) * K;
    const float *cn = c->c + (size_t)(n - 1) * K;
    for (int r = 0; r < n; r++) {
        size_t o = (size_t)r * K, src = r0 + (size_t)r * c->ldk;
        memcpy(c->q + o, q + src, sizeof(float) * K);
        memcpy(c->k + o, k + src, sizeof(float) * K);
        memcpy(c->a + o, a + src, sizeof(float) * K);
        memcpy(c->b + o, b + src, sizeof(float) * K);
        const float *restrict cr = c->c + o, *restrict er = c->e + o, *restrict ep = c->ez + o;
        const float *restrict qr = c->q + o, *restrict kr = c->k + o, *restrict ar = c->a + o, *restrict br = c->b + o;
        float *restrict ec = c->ec + o, *restrict ei = c->ei + o, *restrict qg = c->qg + o, *restrict ag = c->ag + o;
        float *restrict kc = c->kc + o, *restrict bc = c->bc + o, *restrict ki = c->ki + o, *restrict bi_ = c->bi + o;
        if (c->factored) {
#pragma omp simd
            for (int d = 0; d < K; d++) {
                ei[d] = fast_expf(-cr[d]);
                ec[d] = c->en[d] * ei[d];
                ki[d] = kr[d] * ei[d];
                bi_[d] = br[d] * ei[d];
            }
        } else {
#pragma omp simd
            for (int d = 0; d < K; d++) ec[d] = fast_expf(cn[d] - cr[d]);
        }
#pragma omp simd
        for (int d = 0; d < K; d++) {
            qg[d] = qr[d] * er[d];
            ag[d] = ar[d] * ep[d];
            kc[d] = kr[d] * ec[d];
            bc[d] = br[d] * ec[d];
        }
    }
    if (c->factored && forward) {
        cpu_transpose(c->kiT, n, c->ki, K, n, K);
        cpu_transpose(c->biT, n, c->bi, K, n, K);
    }
}

/* Zeroes row r of an n x n product from column `from` to `end` (strict products from r, the
 * inclusive ones from r + 1). */
static void zero_right(float *P, int n, int r, int from, int end) {
    for (int j = from; j < end; j++) P[(size_t)r * n + j] = 0.0f;
}

/* The four pair products of a prepared chunk, then T = (I - P_ab)^-1. Factored, each is one
 * product of decayed rows with exp(-c) columns, computed on the diagonal blocks and left of them
 * (the rest is never read); otherwise every factor is the exp of a difference. */
static void pair_products(const ScanShape *s, DplrBuf *c, int n) {
    const int K = s->K;
    if (c->factored) {
        cpu_gemm_lower_result(n, K, 1.0f, c->ag, K, c->kiT, n, 0.0f, c->pak, n, NULL);
        cpu_gemm_lower_result(n, K, 1.0f, c->ag, K, c->biT, n, 0.0f, c->pab, n, NULL);
        cpu_gemm_lower_result(n, K, 1.0f, c->qg, K, c->kiT, n, 0.0f, c->pqk, n, NULL);
        cpu_gemm_lower_result(n, K, 1.0f, c->qg, K, c->biT, n, 0.0f, c->pqb, n, NULL);
        for (int r = 0; r < n; r++) {
            int end = triangle_block_end(r, n);
            zero_right(c->pak, n, r, r, end);
            zero_right(c->pab, n, r, r, end);
            zero_right(c->pqk, n, r, r + 1, end);
            zero_right(c->pqb, n, r, r + 1, end);
        }
    } else { /* the strict products' rows decay from c_{r-1}: cz, one row up */
        cpu_decayed_products(c->pak, c->a, c->k, c->cz, c->c, n, K, true, false, c->sub);
        cpu_decayed_products(c->pab, c->a, c->b, c->cz, c->c, n, K, true, false, c->sub);
        cpu_decayed_products(c->pqk, c->q, c->k, c->c, c->c, n, K, true, true, c->sub);
        cpu_decayed_products(c->pqb, c->q, c->b, c->c, c->c, n, K, true, true, c->sub);
    }
    for (int r = 0; r < n; r++) {
        float *restrict tr = c->T + (size_t)r * n;
        const float *restrict pr = c->pab + (size_t)r * n;
        for (int j = 0; j < r; j++) tr[j] = -pr[j];
    }
    cpu_unit_lower_inverse(c->T, n, n, c->tmp);
}

/* Rows of S [K, V] scaled by exp(c_n), per key channel. */
static void decay_state(const ScanShape *s, const DplrBuf *c, float *S) {
    for (int i = 0; i < s->K; i++) {
        float d = c->en[i], *restrict row = S + (size_t)i * s->V;
#pragma omp simd
        for (int j = 0; j < s->V; j++) row[j] *= d;
    }
}

/* One chunk: c->S holds its start state on entry and its end state on return. */
static void step_forward(const ScanShape *s, DplrBuf *c, int n, float *o_rows) {
    const int K = s->K, V = s->V, ldv = (int)c->ldv;
    const float *Vr = c->v_rows;
    float *R = c->dR; /* free until the backward */
    memcpy(c->S0, c->S, sizeof(float) * K * V);
    pair_products(s, c, n);
    /* W = T (Ag S0 + P_ak V) */
    cpu_gemm(false, false, n, V, K, 1.0f, c->ag, K, c->S0, V, 0.0f, R, V);
    cpu_gemm_lower_left(false, n, V, 1.0f, c->pak, n, Vr, ldv, 1.0f, R, V, NULL);
    cpu_gemm_lower_left(false, n, V, 1.0f, c->T, n, R, V, 0.0f, c->W, V, NULL);
    /* O = scale (Qg S0 + P_qk V + P_qb W) */
    cpu_gemm(false, false, n, V, K, s->scale, c->qg, K, c->S0, V, 0.0f, o_rows, ldv);
    cpu_gemm_lower_left(false, n, V, s->scale, c->pqk, n, Vr, ldv, 1.0f, o_rows, ldv, NULL);
    cpu_gemm_lower_left(false, n, V, s->scale, c->pqb, n, c->W, V, 1.0f, o_rows, ldv, NULL);
    /* S_end = diag(exp(c_n)) S0 + Kc^T V + Bc^T W */
    decay_state(s, c, c->S);
    cpu_gemm(true, false, K, V, n, 1.0f, c->kc, K, Vr, ldv, 1.0f, c->S, V);
    cpu_gemm(true, false, K, V, n, 1.0f, c->bc, K, c->W, V, 1.0f, c->S, V);
}

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *a, const float *b, const float *gk,
                          const float *initial_state, float *work) {
    const int nc = n_chunks(s);
    const size_t KV = (size_t)s->K * s->V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        DplrBuf c = buffers(s, work + thread_floats(s) * (size_t)omp_get_thread_num());
        state_or_zeros(c.S, initial_state, bh, KV);
        for (int ci = 0; ci < nc; ci++) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            use_slot(s, &c, saved ? saved + ((size_t)bh * nc + ci) * slot_floats(s) : c.own_slot, n);
            prepare(s, &c, bi, h, t0, n, q, k, v, a, b, gk, true);
            step_forward(s, &c, n, o + row_index(s, bi, t0, h, s->V));
        }
        if (final_state) memcpy(final_state + bh * KV, c.S, sizeof(float) * KV);
    }
}

/* The chunk's first output row of each gradient, and its dO. */
typedef struct {
    float *dq, *dk, *dv, *da, *db, *dgk;
    const float *dO;
} DplrGrads;

/* dP of the masked products: zero right of the diagonal (strict: from it) to the end of the
 * diagonal blocks for the block products of the factored path, to the row's end otherwise. */
static void mask_gradient(const DplrBuf *c, float *dP, int n, bool strict) {
    for (int r = 0; r < n; r++) zero_right(dP, n, r, strict ? r : r + 1, c->factored ? triangle_block_end(r, n) : n);
}

/* The gradient of the factored pair products, P_xy = Xg Yi^T with Xg in (Ag, Qg) and Yi in
 * (Ki, Bi): dXg += dP_xy Yi, dYi += dP_xy^T Xg. */
static void factored_products_backward(const ScanShape *s, DplrBuf *c, int n) {
    const int K = s->K;
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dpak, n, c->ki, K, 1.0f, c->dag, K, NULL);
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dpab, n, c->bi, K, 1.0f, c->dag, K, NULL);
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dpqk, n, c->ki, K, 1.0f, c->dqg, K, NULL);
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dpqb, n, c->bi, K, 1.0f, c->dqg, K, NULL);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dpak, n, c->ag, K, 0.0f, c->dki, K, NULL);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dpqk, n, c->qg, K, 1.0f, c->dki, K, NULL);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dpab, n, c->ag, K, 0.0f, c->dbi, K, NULL);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dpqb, n, c->qg, K, 1.0f, c->dbi, K, NULL);
}

/* From the gradients of the decayed rows (and, outside the factored path, the direct ones that
 * cpu_decayed_products_backward left in dq, dk, da, db and dcz) to dq, dk, da, db and dgk of the
 * chunk's rows. A decayed row X exp(E) sends dX exp(E) to X and dX X exp(E) to its exponent E:
 * +c_r for Qg, +c_{r-1} for Ag (row r of cz), c_n - c_r for Kc and Bc, -c_r for Ki and Bi. Then,
 * as c_r = gk_1 + ... + gk_r, dgk_r = dc_r + ... + dc_n. dcz holds dc one row down. */
static void input_gradients(const ScanShape *s, DplrBuf *c, int n, const DplrGrads *out) {
    const int K = s->K;
    float *restrict dcn = c->dtail; /* added to d c_n after the pass: row n - 1 writes d c_n too */
    for (int d = 0; d < K; d++) dcn[d] = 0.0f;
    for (int r = 0; r < n; r++) {
        size_t o = (size_t)r * K, ro = r * c->ldk;
        const float *restrict q = c->q + o, *restrict k = c->k + o, *restrict a = c->a + o, *restrict b = c->b + o;
        const float *restrict e = c->e + o, *restrict ep = c->ez + o, *restrict ec = c->ec + o, *restrict ei = c->ei + o;
        const float *restrict dqg = c->dqg + o, *restrict dag = c->dag + o, *restrict dkc = c->dkc + o;
        const float *restrict dbc = c->dbc + o, *restrict dki = c->dki + o, *restrict dbi = c->dbi + o;
        float *restrict dcr = c->dcz + o + K, *restrict dcp = c->dcz + o;
        float *restrict dq = out->dq + ro, *restrict dk = out->dk + ro, *restrict da = out->da + ro;
        float *restrict db = out->db + ro;
        if (c->factored) {
#pragma omp simd
            for (int d = 0; d < K; d++) {
                float gq = dqg[d] * e[d], ga = dag[d] * ep[d], gkc = dkc[d] * ec[d], gbc = dbc[d] * ec[d];
                float gki = dki[d] * ei[d], gbi = dbi[d] * ei[d], tail = gkc * k[d] + gbc * b[d];
                dq[d] = gq;
                da[d] = ga;
                dk[d] = gkc + gki;
                db[d] = gbc + gbi;
                dcr[d] += gq * q[d] - tail - gki * k[d] - gbi * b[d];
                dcp[d] += ga * a[d];
                dcn[d] += tail;
            }
        } else {
            const float *restrict dqd = c->dq + o, *restrict dkd = c->dk + o, *restrict dad = c->da + o;
            const float *restrict dbd = c->db + o;
#pragma omp simd
            for (int d = 0; d < K; d++) {
                float gq = dqg[d] * e[d], ga = dag[d] * ep[d], gkc = dkc[d] * ec[d], gbc = dbc[d] * ec[d];
                float tail = gkc * k[d] + gbc * b[d];
                dq[d] = dqd[d] + gq;
                da[d] = dad[d] + ga;
                dk[d] = dkd[d] + gkc;
                db[d] = dbd[d] + gbc;
                dcr[d] += gq * q[d] - tail;
                dcp[d] += ga * a[d];
                dcn[d] += tail;
            }
        }
    }
    for (int d = 0; d < K; d++) c->dcz[(size_t)n * K + d] += dcn[d];
    float *restrict run = c->dcz; /* row 0 (the gradient of c_0 = 0) is spent: the running sum */
    for (int d = 0; d < K; d++) run[d] = 0.0f;
    for (int r = n - 1; r >= 0; r--) {
        const float *restrict dcr = c->dcz + (size_t)(r + 1) * K;
        float *restrict dg = out->dgk + r * c->ldk;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            run[d] += dcr[d];
            dg[d] = run[d];
        }
    }
}

/* The chunk backward, given dO and G = dS_end (in c->S; it holds dS0 on return):
 *   dW = scale P_qb^T dO + Bc G;  dV = scale P_qk^T dO + Kc G + P_ak^T dR;  dKc = V G^T;  dBc = W G^T;
 *   dS0 = diag(exp(c_n)) G + scale Qg^T dO + Ag^T dR;  dQg = scale dO S0^T;
 *   dP_qk = scale dO V^T, dP_qb = scale dO W^T (j <= r);
 *   dR = T^T dW (W = T R, R = Ag S0 + P_ak V);  dP_ab = dR W^T, dP_ak = dR V^T (j < r);  dAg = dR S0^T;
 * then through the pair products and the decayed rows to the inputs. */
static void step_backward(const ScanShape *s, DplrBuf *c, int n, const DplrGrads *out) {
    const int K = s->K, V = s->V, ldv = (int)c->ldv;
    const float *Vr = c->v_rows;
    float *G = c->S, *dv = out->dv;
    memset(c->dcz, 0, sizeof(float) * (size_t)(n + 1) * K);
    if (!c->factored) { /* cpu_decayed_products_backward adds to them */
        memset(c->dq, 0, sizeof(float) * (size_t)n * K);
        memset(c->dk, 0, sizeof(float) * (size_t)n * K);
        memset(c->da, 0, sizeof(float) * (size_t)n * K);
        memset(c->db, 0, sizeof(float) * (size_t)n * K);
    }
    cpu_transpose(c->vT, n, Vr, ldv, n, V);
    cpu_transpose(c->wT, n, c->W, V, n, V);
    /* what needs G = dS_end */
    cpu_gemm_lower_left(true, n, V, s->scale, c->pqb, n, out->dO, ldv, 0.0f, c->dW, V, NULL);
    cpu_gemm(false, false, n, V, K, 1.0f, c->bc, K, G, V, 1.0f, c->dW, V);
    cpu_gemm_lower_left(true, n, V, s->scale, c->pqk, n, out->dO, ldv, 0.0f, dv, ldv, NULL);
    cpu_gemm(false, false, n, V, K, 1.0f, c->kc, K, G, V, 1.0f, dv, ldv);
    cpu_gemm(false, true, n, K, V, 1.0f, Vr, ldv, G, V, 0.0f, c->dkc, K);
    cpu_gemm(false, true, n, K, V, 1.0f, c->W, V, G, V, 0.0f, c->dbc, K);
    float *restrict dcn = c->dcz + (size_t)n * K;
    for (int i = 0; i < K; i++) { /* S_end = diag(exp(c_n)) S0 + ...: d c_n, and G becomes dS0 */
        float e = c->en[i], acc = 0.0f, *restrict grow = G + (size_t)i * V;
        const float *restrict srow = c->S0 + (size_t)i * V;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < V; j++) {
            acc += grow[j] * srow[j];
            grow[j] *= e;
        }
        dcn[i] += acc * e;
    }
    cpu_gemm(true, false, K, V, n, s->scale, c->qg, K, out->dO, ldv, 1.0f, G, V);
    cpu_gemm(false, true, n, K, V, s->scale, out->dO, ldv, c->S0, V, 0.0f, c->dqg, K);
    cpu_gemm_lower_result(n, V, s->scale, out->dO, ldv, c->vT, n, 0.0f, c->dpqk, n, NULL);
    cpu_gemm_lower_result(n, V, s->scale, out->dO, ldv, c->wT, n, 0.0f, c->dpqb, n, NULL);
    mask_gradient(c, c->dpqk, n, false);
    mask_gradient(c, c->dpqb, n, false);
    /* through W = T R */
    cpu_gemm_lower_left(true, n, V, 1.0f, c->T, n, c->dW, V, 0.0f, c->dR, V, NULL);
    cpu_gemm_lower_result(n, V, 1.0f, c->dR, V, c->wT, n, 0.0f, c->dpab, n, NULL);
    cpu_gemm_lower_result(n, V, 1.0f, c->dR, V, c->vT, n, 0.0f, c->dpak, n, NULL);
    mask_gradient(c, c->dpab, n, true);
    mask_gradient(c, c->dpak, n, true);
    cpu_gemm(false, true, n, K, V, 1.0f, c->dR, V, c->S0, V, 0.0f, c->dag, K);
    cpu_gemm(true, false, K, V, n, 1.0f, c->ag, K, c->dR, V, 1.0f, G, V);
    cpu_gemm_lower_left(true, n, V, 1.0f, c->pak, n, c->dR, V, 1.0f, dv, ldv, NULL);
    /* through the pair products */
    if (c->factored) {
        factored_products_backward(s, c, n);
    } else {
        float *dc = c->dcz + K;
        cpu_decayed_products_backward(c->dpak, c->pak, c->a, c->k, c->cz, c->c, c->da, c->dk, c->dcz, dc, c->tmp,
                                      c->sub, n, K, true);
        cpu_decayed_products_backward(c->dpab, c->pab, c->a, c->b, c->cz, c->c, c->da, c->db, c->dcz, dc, c->tmp,
                                      c->sub, n, K, true);
        cpu_decayed_products_backward(c->dpqk, c->pqk, c->q, c->k, c->c, c->c, c->dq, c->dk, dc, dc, c->tmp, c->sub,
                                      n, K, true);
        cpu_decayed_products_backward(c->dpqb, c->pqb, c->q, c->b, c->c, c->c, c->dq, c->db, dc, dc, c->tmp, c->sub,
                                      n, K, true);
    }
    input_gradients(s, c, n, out);
}

static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                           float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                           const float *k, const float *v, const float *a, const float *b, const float *gk,
                           const float *saved, float *work) {
    const int K = s->K, V = s->V, nc = n_chunks(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        DplrBuf c = buffers(s, work + thread_floats(s) * (size_t)omp_get_thread_num());
        state_or_zeros(c.S, dfinal_state, bh, KV);
        for (int ci = nc - 1; ci >= 0; ci--) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            use_slot(s, &c, (float *)saved + ((size_t)bh * nc + ci) * slot_floats(s), n);
            prepare(s, &c, bi, h, t0, n, q, k, v, a, b, gk, false);
            size_t rk = row_index(s, bi, t0, h, K), rv = row_index(s, bi, t0, h, V);
            DplrGrads out = {dq + rk, dk + rk, dv + rv, da + rk, db + rk, dgk + rk, dout + rv};
            step_backward(s, &c, n, &out);
        }
        if (dinitial_state) memcpy(dinitial_state + bh * KV, c.S, sizeof(float) * KV);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points */

void cpu_dplr_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q, const float *k,
                      const float *v, const float *a, const float *b, const float *gk, const float *initial_state,
                      float *work) {
    if (s->chunk) chunk_forward(s, o, final_state, saved, q, k, v, a, b, gk, initial_state, work);
    else dplr_recurrent_forward(s, o, final_state, saved, q, k, v, a, b, gk, initial_state, work);
}

void cpu_dplr_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                       float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                       const float *k, const float *v, const float *a, const float *b, const float *gk,
                       const float *saved, float *work) {
    if (s->chunk)
        chunk_backward(s, dq, dk, dv, da, db, dgk, dinitial_state, dfinal_state, dout, q, k, v, a, b, gk, saved,
                       work);
    else
        dplr_recurrent_backward(s, dq, dk, dv, da, db, dgk, dinitial_state, dfinal_state, dout, q, k, v, a, b, gk,
                                saved, work);
}
