/* The gated delta rule (the core of gdn and kda) on the CPU: the chunkwise-parallel form used
 * for training and its backward; the recurrent reference form (also the decode step) is beside
 * it in delta_rule_recurrent.c, as fla keeps naive.py beside each op.
 * Math and notation: shared/spec/attention.md, "The delta-rule family". One (batch, head) pair is
 * one task owned by one thread; matmuls inside a task are single-threaded OpenBLAS calls.
 *
 * Gates: with channel_gate (kda) the log decay g has one value per key channel; otherwise (gdn)
 * one per head and step, and every formula below uses it for all channels. Within a chunk,
 * b_r = g_1 + ... + g_r. A decay factor exp(b_r - b_j) is split into exp(b_r) exp(-b_j) only
 * when the chunk's decays span at most FACTOR_LIMIT nats, where neither factor overflows;
 * otherwise every factor is the exp of a difference with j <= r (cpu_decayed_products). */
#include <math.h>
#include <string.h>

#include "core/util.h"
#include "cpu_ops.h"
#include "delta_rule.h"
#include "fastmath.h"

/* ---------------------------------------------------------------------------------------------
 * Chunkwise form. For a chunk of n rows with start state S0 (spec, "Chunkwise form"), with
 * b_r = g_1 + ... + g_r the cumulative log decay inside the chunk:
 *   A'[r,j] = sum_d k_rd k_jd exp(b_rd - b_jd) (j < r),   M[r,j] = sum_d q_rd k_jd exp(b_rd - b_jd) (j <= r)
 *   T = (I + diag(beta) A')^-1,   R = V - Kb S0,   U = T diag(beta) R,   Kb = K * exp(b),  Qb = Q * exp(b)
 *   O = scale (Qb S0 + M U),   S_end = diag(exp(b_n)) S0 + Kc^T U,   Kc = K * exp(b_n - b)
 * (U = T diag(beta) R folds the spec's W and U~ into one product with the inverse).
 *
 * A' and M: when no channel's decay over the chunk exceeds FACTOR_LIMIT nats, exp(b_r - b_j) =
 * exp(b_r) exp(-b_j) with both factors within e^+-FACTOR_LIMIT, so [A'; M] = [Kb; Qb] Ki^T with
 * Ki = K * exp(-b): one matmul, and two in the backward. Stronger decays (which would overflow
 * the factors) go through cpu_decayed_products, whose factors are all <= 1. */

/* The per-thread buffers of one chunk, X(name, floats) with C the chunk size: n x K matrices
 * (rows contiguous), then n x V, n x n and the rest. kbqb holds Kb (n rows) and Qb (the next n
 * rows), dkbqb their gradients, dam dA' and dM likewise, so each stacked pair is one matmul.
 * The ...T buffers are transposes: OpenBLAS multiplies A B^T at ~60% of the speed of A B at
 * these sizes (5.8 against 3.6 us at 64 x 64 x 64), and a 64 x 64 transpose costs 0.3 us. */
#define CHUNK_BUFFERS(X)                                                                                              \
    X(b, CK) X(eb, CK) X(ec, CK) X(ei, CK) X(kc, CK) X(ki, CK) X(kiT, CK) X(kbqb, 2 * CK) X(q, CK)            \
    X(k, CK) X(dkbqb, 2 * CK) X(dkc, CK) X(dki, CK) X(dq, CK) X(dk, CK) X(db, CK) X(sub, 6 * CK)           \
    X(Y, CV) X(uT, CV) X(dU, CV) X(dY, CV) X(dam, 2 * CC) X(tmp, CC) X(S, KV) X(s0T, KV) X(dsT, KV)                   \
    X(own_slot, SLOT) X(beta, C) X(dbeta, C) X(en, K) X(blast_d, K) X(dbk, K)

typedef struct {
#define DECLARE(name, count) float *name;
    CHUNK_BUFFERS(DECLARE)
#undef DECLARE
    /* per chunk: Qb, dQb and dM inside the stacked buffers, and the chunk's slot of `saved` */
    float *qb, *dqb, *dm;
    float *S0, *A, *M, *T, *U, *R;
    const float *q_rows, *k_rows; /* the chunk's first row of q and k in the [B, T, H, K] tensors */
    size_t ldqk;
    bool factored; /* A' and M through Ki (decays within FACTOR_LIMIT) */
    Prefetch pf;   /* rows this step writes and the next one reads */
} ChunkBuf;

/* A matrix product of a chunk step, then a few of the step's queued prefetches (prefetch.h). */
static void chunk_gemm(ChunkBuf *c, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    cpu_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    prefetch_lines(&c->pf, PREFETCH_GAP_LINES);
}

/* Floats kept per chunk: its start state S0, and from the forward [A'; M], T, U and R, which
 * the backward would otherwise recompute. */
static size_t chunk_saved_floats(const ScanShape *s) {
    size_t C = (size_t)s->chunk;
    return (size_t)s->K * s->V + 3 * C * C + 2 * C * s->V;
}

size_t cpu_delta_rule_saved(const ScanShape *s) { return chunked_saved_floats(s, chunk_saved_floats(s)); }

CHUNK_BUFFER_FUNCTIONS(ChunkBuf, CHUNK_BUFFERS, chunk_saved_floats, chunk_thread_floats, chunk_buffers)

size_t cpu_delta_rule_workspace(const ScanShape *s) { return per_thread_bytes(s->chunk ? chunk_thread_floats(s) : delta_rule_recurrent_thread_floats(s)); }

/* Points S0, [A'; M], T, U and R at a chunk's slot (of `saved`, or the thread's own). */
static void use_slot(const ScanShape *s, ChunkBuf *c, float *slot, int n) {
    size_t C = (size_t)s->chunk;
    c->S0 = slot;
    c->A = slot + (size_t)s->K * s->V;
    c->M = c->A + (size_t)n * n;
    c->T = c->A + 2 * C * C;
    c->U = c->T + C * C;
    c->R = c->U + C * s->V;
}

/* Prepares the chunk rows [t0, t0 + n) of (b, h): beta, the cumulative decays b, the factors
 * eb = exp(b), ec = exp(b_n - b) and, when the decays factor, ei = exp(-b) (per channel, a
 * per-head gate repeated over them), and the decayed Qb, Kb, Kc, Ki (Ki^T too for the forward);
 * outside the factored path, contiguous copies of q and k for cpu_decayed_products. */
static void chunk_prepare(const ScanShape *s, ChunkBuf *c, int bi, int h, int t0, int n, const float *q,
                          const float *k, const float *g, const float *beta, bool forward) {
    const int K = s->K, gw = gate_width(s);
    const size_t ldg = (size_t)s->H * gw;
    const float *g0 = g + row_index(s, bi, t0, h, gw), *beta0 = beta + row_index(s, bi, t0, h, 1);
    c->ldqk = (size_t)s->H * K;
    c->q_rows = q + row_index(s, bi, t0, h, K);
    c->k_rows = k + row_index(s, bi, t0, h, K);
    for (int r = 0; r < n; r++) c->beta[r] = beta0[(size_t)r * s->H];
    c->factored = chunk_decays(c->b, gw, g0, ldg, n);
    c->qb = c->kbqb + (size_t)n * K;
    c->dqb = c->dkbqb + (size_t)n * K;
    c->dm = c->dam + (size_t)n * n;
    const float *bn = c->b + (size_t)(n - 1) * gw;
    float *restrict en = c->en; /* exp(b_n): with ei, ec = en ei within the factored range */
    for (int d = 0; d < gw; d++) en[d] = fast_expf(bn[d]);
    for (int r = 0; r < n; r++) {
        size_t o = (size_t)r * K;
        const float *restrict br = c->b + (size_t)r * gw;
        const float *restrict qr = c->q_rows + r * c->ldqk, *restrict kr = c->k_rows + r * c->ldqk;
        float *restrict eb = c->eb + o, *restrict ec = c->ec + o, *restrict ei = c->ei + o;
        float *restrict qb = c->qb + o, *restrict kb = c->kbqb + o, *restrict kc = c->kc + o, *restrict ki = c->ki + o;
        /* the factors of entry d (e = eb, f = ec, x = ei; Ki and ei are 0 outside the factored
         * path) and the rows they decay */
#define STORE_ENTRY(d, e, f, x)                                                                                       \
    do {                                                                                                              \
        eb[d] = (e);                                                                                                  \
        ec[d] = (f);                                                                                                  \
        ei[d] = (x);                                                                                                  \
        qb[d] = qr[d] * eb[d];                                                                                        \
        kb[d] = kr[d] * eb[d];                                                                                        \
        kc[d] = kr[d] * ec[d];                                                                                        \
        ki[d] = kr[d] * ei[d];                                                                                        \
    } while (0)
        if (gw == 1) {
            float e = fast_expf(br[0]), f = fast_expf(bn[0] - br[0]), x = c->factored ? fast_expf(-br[0]) : 0.0f;
#pragma omp simd
            for (int d = 0; d < K; d++) STORE_ENTRY(d, e, f, x);
        } else if (c->factored) {
            /* simdlen(16): the exp polynomials are bound by arithmetic, and 16-lane vectors, where
             * the machine has them, halve their instructions (3% of a chunk step at K = 64) */
#pragma omp simd simdlen(16)
            for (int d = 0; d < K; d++) {
                float x = fast_expf(-br[d]);
                STORE_ENTRY(d, fast_expf(br[d]), en[d] * x, x);
            }
        } else {
#pragma omp simd simdlen(16)
            for (int d = 0; d < K; d++) STORE_ENTRY(d, fast_expf(br[d]), fast_expf(bn[d] - br[d]), 0.0f);
        }
#undef STORE_ENTRY
        if (!c->factored) {
            memcpy(c->q + o, qr, sizeof(float) * K);
            memcpy(c->k + o, kr, sizeof(float) * K);
        }
    }
    if (c->factored && forward) cpu_transpose(c->kiT, n, c->ki, K, n, K);
}

/* [A'; M] of a prepared chunk, masked to j < r and j <= r; and T = (I + diag(beta) A')^-1. */
static void chunk_pair_products(const ScanShape *s, ChunkBuf *c, int n) {
    const int K = s->K;
    if (c->factored) {
        cpu_gemm_lower_result(n, K, 1.0f, c->kbqb, K, c->kiT, n, 0.0f, c->A, n, &c->pf);
        cpu_gemm_lower_result(n, K, 1.0f, c->qb, K, c->kiT, n, 0.0f, c->M, n, &c->pf);
        for (int r = 0; r < n; r++) { /* right of the diagonal blocks: never written nor read */
            int end = triangle_block_end(r, n);
            for (int j = r; j < end; j++) c->A[(size_t)r * n + j] = 0.0f;
            for (int j = r + 1; j < end; j++) c->M[(size_t)r * n + j] = 0.0f;
        }
    } else {
        cpu_decayed_products(c->A, c->k, c->k, c->b, c->b, n, K, s->channel_gate, false, c->sub);
        cpu_decayed_products(c->M, c->q, c->k, c->b, c->b, n, K, s->channel_gate, true, c->sub);
    }
    /* N = diag(beta) A' in T's strict lower triangle, then inverted in place */
    for (int r = 0; r < n; r++) {
        float *restrict tr = c->T + (size_t)r * n, br = c->beta[r];
        const float *restrict ar = c->A + (size_t)r * n;
#pragma omp simd
        for (int j = 0; j < r; j++) tr[j] = br * ar[j];
    }
    cpu_unit_lower_inverse(c->T, n, n, c->tmp);
}

/* Scales row i of S [K, V] by exp(b_n[i]) (c->en; one factor when the gate is per head). */
static void decay_state(const ScanShape *s, const ChunkBuf *c, float *S) {
    for (int i = 0; i < s->K; i++) {
        float d = c->en[s->channel_gate ? i : 0];
        float *restrict row = S + (size_t)i * s->V;
#pragma omp simd
        for (int j = 0; j < s->V; j++) row[j] *= d;
    }
}

/* One chunk of the forward: [A'; M], T, R, U from the prepared chunk and its start state c->S
 * (copied to S0), O into the output rows, and c->S advanced to the chunk's end state. */
static void chunk_step_forward(const ScanShape *s, ChunkBuf *c, int n, float *o_rows, const float *v_rows) {
    const int K = s->K, V = s->V;
    const int ld = s->H * V; /* rows of one head in the [B, T, H, V] layout */
    memcpy(c->S0, c->S, sizeof(float) * K * V);
    chunk_pair_products(s, c, n);
    /* R = V - Kb S0, U = T diag(beta) R */
    chunk_gemm(c, false, false, n, V, K, -1.0f, c->kbqb, K, c->S0, V, 0.0f, c->R, V);
    for (int r = 0; r < n; r++) {
        float *restrict rr = c->R + (size_t)r * V, *restrict yr = c->Y + (size_t)r * V, br = c->beta[r];
        const float *restrict vr = v_rows + (size_t)r * ld;
#pragma omp simd
        for (int x = 0; x < V; x++) {
            rr[x] += vr[x];
            yr[x] = br * rr[x];
        }
    }
    cpu_gemm_lower_left(false, n, V, 1.0f, c->T, n, c->Y, V, 0.0f, c->U, V, &c->pf);
    /* O = scale (Qb S0 + M U) */
    chunk_gemm(c, false, false, n, V, K, s->scale, c->qb, K, c->S0, V, 0.0f, o_rows, ld);
    cpu_gemm_lower_left(false, n, V, s->scale, c->M, n, c->U, V, 1.0f, o_rows, ld, &c->pf);
    /* S = diag(exp(b_n)) S0 + Kc^T U */
    decay_state(s, c, c->S);
    chunk_gemm(c, true, false, K, V, n, 1.0f, c->kc, K, c->U, V, 1.0f, c->S, V);
}

/* Queues the rows of q, k, g (per channel) and v (or dO) that the chunk starting at t0 reads. */
static void queue_chunk_inputs(const ScanShape *s, Prefetch *pf, int bi, int h, int t0, const float *q,
                               const float *k, const float *g, const float *v) {
    const int K = s->K, V = s->V, n = min_int(s->chunk, s->T - t0);
    const size_t ldk = (size_t)s->H * K;
    prefetch_add(pf, q + row_index(s, bi, t0, h, K), ldk, n, K);
    prefetch_add(pf, k + row_index(s, bi, t0, h, K), ldk, n, K);
    if (s->channel_gate) prefetch_add(pf, g + row_index(s, bi, t0, h, K), ldk, n, K);
    prefetch_add(pf, v + row_index(s, bi, t0, h, V), (size_t)s->H * V, n, V);
}

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *g, const float *beta,
                          const float *initial_state, float *work) {
    const int K = s->K, V = s->V, nc = n_chunks(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        ChunkBuf c = chunk_buffers(s, work + chunk_thread_floats(s) * (size_t)omp_get_thread_num());
        state_or_zeros(c.S, initial_state, bh, KV);
        for (int ci = 0; ci < nc; ci++) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            use_slot(s, &c, saved ? saved + ((size_t)bh * nc + ci) * chunk_saved_floats(s) : c.own_slot, n);
            chunk_prepare(s, &c, bi, h, t0, n, q, k, g, beta, true);
            prefetch_start(&c.pf);
            prefetch_add(&c.pf, o + row_index(s, bi, t0, h, V), (size_t)s->H * V, n, V);
            if (ci + 1 < nc) queue_chunk_inputs(s, &c.pf, bi, h, t0 + n, q, k, g, v);
            chunk_step_forward(s, &c, n, o + row_index(s, bi, t0, h, V), v + row_index(s, bi, t0, h, V));
        }
        if (final_state) memcpy(final_state + bh * KV, c.S, sizeof(float) * KV);
    }
}

/* The chunk backward, given dO and dS_end (the gradient of the chunk's end state):
 *   dU = scale M^T dO + Kc dS_end;  dM = scale dO U^T (j <= r);  dQb = scale dO S0^T;
 *   dS0 = scale Qb^T dO + diag(exp(b_n)) dS_end;  dKc = U dS_end^T;
 *   dY = T^T dU;  dL = -dY U^T (j < r): dA' = diag(beta) dL, dbeta += rowsum(dL . A');
 *   dbeta += rowsum(dY . R);  dR = diag(beta) dY:  dV = dR,  dKb = -dR S0^T,  dS0 -= Kb^T dR;
 *   then through A', M, Qb, Kb, Kc to dQ, dK and db, and dg = reverse cumulative sum of db.
 * c->S holds dS_end on entry and dS0 (the previous chunk's dS_end) on return. */
typedef struct {
    float *dq, *dk, *dv, *dg, *dbeta; /* the chunk's first output row of (b, h) */
    const float *dO;
} ChunkGrads;

/* The gradient of [A'; M] = [Kb; Qb] Ki^T into dKb, dQb and dKi. */
static void factored_products_backward(const ScanShape *s, ChunkBuf *c, int n) {
    const int K = s->K;
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dam, n, c->ki, K, 1.0f, c->dkbqb, K, &c->pf);
    cpu_gemm_lower_left(false, n, K, 1.0f, c->dm, n, c->ki, K, 1.0f, c->dqb, K, &c->pf);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dam, n, c->kbqb, K, 0.0f, c->dki, K, &c->pf);
    cpu_gemm_lower_left(true, n, K, 1.0f, c->dm, n, c->qb, K, 1.0f, c->dki, K, &c->pf);
}

/* From the gradients of Qb, Kb, Kc and Ki (outside the factored path: of Qb, Kb, Kc, plus the
 * direct ones that cpu_decayed_products_backward left in c->dq, c->dk, c->db) to dq, dk and dg of
 * the chunk's rows. With qb = q eb, kb = k eb, kc = k ec and ki = k ei:
 *   dq = dqb eb,   dk = dkb eb + dkc ec + dki ei,   db = dq q + k (dkb eb - dkc ec - dki ei),
 * and d b_n (c->blast_d) gains sum_r dkc ec k. As b_r = g_1 + ... + g_r, dg_r = db_r + ... + db_n:
 * one pass from the last row up, once d b_n is complete. */
static void chunk_input_gradients(const ScanShape *s, ChunkBuf *c, int n, const ChunkGrads *out) {
    const int K = s->K, gw = gate_width(s);
    const size_t ldk = (size_t)s->H * K, ldg = (size_t)s->H * gw;
    float *restrict run = c->blast_d, *restrict dbk = c->dbk;
    for (int d = 0; d < K; d++) dbk[d] = 0.0f;
    for (int r = 0; r < n; r++) {
        const float *restrict dkc = c->dkc + (size_t)r * K, *restrict ec = c->ec + (size_t)r * K;
        const float *restrict kr = c->k_rows + r * c->ldqk;
#pragma omp simd
        for (int d = 0; d < K; d++) dbk[d] += dkc[d] * ec[d] * kr[d];
    }
    for (int d = 0; d < K; d++) run[s->channel_gate ? d : 0] += dbk[d];
    for (int r = n - 1; r >= 0; r--) {
        size_t o = (size_t)r * K;
        const float *restrict dqb = c->dqb + o, *restrict dkb = c->dkbqb + o, *restrict dkc = c->dkc + o;
        const float *restrict dki = c->dki + o, *restrict eb = c->eb + o, *restrict ec = c->ec + o;
        const float *restrict ei = c->ei + o, *restrict dqd = c->dq + o, *restrict dkd = c->dk + o;
        const float *restrict qr = c->q_rows + r * c->ldqk, *restrict kr = c->k_rows + r * c->ldqk;
        float *restrict dqr = out->dq + r * ldk, *restrict dkr = out->dk + r * ldk;
        if (c->factored)
#pragma omp simd
            for (int d = 0; d < K; d++) {
                float gq = dqb[d] * eb[d], gb = dkb[d] * eb[d], gc = dkc[d] * ec[d], gi = dki[d] * ei[d];
                dqr[d] = gq;
                dkr[d] = gb + gc + gi;
                dbk[d] = gq * qr[d] + kr[d] * (gb - gc - gi);
            }
        else
#pragma omp simd
            for (int d = 0; d < K; d++) {
                float gq = dqb[d] * eb[d], gb = dkb[d] * eb[d], gc = dkc[d] * ec[d];
                dqr[d] = dqd[d] + gq;
                dkr[d] = dkd[d] + gb + gc;
                dbk[d] = gq * qr[d] + kr[d] * (gb - gc);
            }
        const float *restrict direct = c->db + (size_t)r * gw; /* not set, nor read, in the factored path */
        float *restrict dgr = out->dg + r * ldg;
        if (s->channel_gate) {
            if (!c->factored)
                for (int d = 0; d < K; d++) dbk[d] += direct[d];
#pragma omp simd
            for (int d = 0; d < K; d++) {
                run[d] += dbk[d];
                dgr[d] = run[d];
            }
        } else {
            float acc = c->factored ? 0.0f : direct[0];
            for (int d = 0; d < K; d++) acc += dbk[d];
            run[0] += acc;
            dgr[0] = run[0];
        }
    }
}

static int mask_end(const ChunkBuf *c, int r, int n) { return c->factored ? triangle_block_end(r, n) : n; }

static void chunk_step_backward(const ScanShape *s, ChunkBuf *c, int n, const ChunkGrads *out) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    const int ldv = s->H * V;
    float *dS = c->S;
    if (!c->factored) { /* cpu_decayed_products_backward adds to them */
        memset(c->dq, 0, sizeof(float) * (size_t)n * K);
        memset(c->dk, 0, sizeof(float) * (size_t)n * K);
        memset(c->db, 0, sizeof(float) * (size_t)n * gw);
    }
    cpu_transpose(c->s0T, K, c->S0, V, K, V);
    cpu_transpose(c->uT, n, c->U, V, n, V);
    cpu_transpose(c->dsT, K, dS, V, K, V);
    /* terms that need dS_end (= dS): dU, dKc, d b_n; dS0 starts as diag(exp(b_n)) dS_end */
    chunk_gemm(c, false, false, n, V, K, 1.0f, c->kc, K, dS, V, 0.0f, c->dU, V);
    chunk_gemm(c, false, false, n, K, V, 1.0f, c->U, V, c->dsT, K, 0.0f, c->dkc, K);
    for (int d = 0; d < gw; d++) c->blast_d[d] = 0.0f;
    for (int i = 0; i < K; i++) {
        float e = c->en[s->channel_gate ? i : 0], acc = 0.0f;
        float *restrict drow = dS + (size_t)i * V;
        const float *restrict srow = c->S0 + (size_t)i * V;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < V; j++) {
            acc += drow[j] * srow[j];
            drow[j] *= e;
        }
        c->blast_d[s->channel_gate ? i : 0] += acc * e;
    }
    /* dS now holds diag(exp(b_n)) dS_end and accumulates the rest of dS0 */
    cpu_gemm_lower_left(true, n, V, s->scale, c->M, n, out->dO, ldv, 1.0f, c->dU, V, &c->pf);
    cpu_gemm_lower_result(n, V, s->scale, out->dO, ldv, c->uT, n, 0.0f, c->dm, n, &c->pf);
    /* dM and dA' zero above the diagonal: up to the end of the diagonal blocks for the block
     * products of the factored path, everywhere for cpu_decayed_products_backward */
    for (int r = 0; r < n; r++)
        for (int j = r + 1, end = mask_end(c, r, n); j < end; j++) c->dm[(size_t)r * n + j] = 0.0f;
    chunk_gemm(c, false, false, n, K, V, s->scale, out->dO, ldv, c->s0T, K, 0.0f, c->dqb, K);
    chunk_gemm(c, true, false, K, V, n, s->scale, c->qb, K, out->dO, ldv, 1.0f, dS, V);
    /* dY = T^T dU; dL = -dY U^T on the strict lower triangle -> dA' = diag(beta) dL and dbeta */
    cpu_gemm_lower_left(true, n, V, 1.0f, c->T, n, c->dU, V, 0.0f, c->dY, V, &c->pf);
    cpu_gemm_lower_result(n, V, -1.0f, c->dY, V, c->uT, n, 0.0f, c->dam, n, &c->pf);
    for (int r = 0; r < n; r++) {
        float acc = 0.0f, *restrict dar = c->dam + (size_t)r * n, br = c->beta[r];
        const float *restrict ar = c->A + (size_t)r * n;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < r; j++) {
            acc += dar[j] * ar[j];
            dar[j] *= br;
        }
        for (int j = r, end = mask_end(c, r, n); j < end; j++) dar[j] = 0.0f;
        c->dbeta[r] = acc;
    }
    /* Y = diag(beta) R: dbeta += dY . R; dR = beta dY -> dV, dKb, dS0 */
    for (int r = 0; r < n; r++) {
        float acc = 0.0f, *restrict dyr = c->dY + (size_t)r * V, *restrict dvr = out->dv + (size_t)r * ldv;
        const float *restrict rr = c->R + (size_t)r * V;
        float br = c->beta[r];
#pragma omp simd reduction(+ : acc)
        for (int x = 0; x < V; x++) {
            acc += dyr[x] * rr[x];
            dyr[x] *= br; /* dY becomes dR */
            dvr[x] = dyr[x];
        }
        out->dbeta[(size_t)r * s->H] = c->dbeta[r] + acc;
    }
    chunk_gemm(c, false, false, n, K, V, -1.0f, c->dY, V, c->s0T, K, 0.0f, c->dkbqb, K);
    chunk_gemm(c, true, false, K, V, n, -1.0f, c->kbqb, K, c->dY, V, 1.0f, dS, V);
    if (c->factored) {
        factored_products_backward(s, c, n);
    } else {
        cpu_decayed_products_backward(c->dam, c->A, c->k, c->k, c->b, c->b, c->dk, c->dk, c->db, c->db, c->tmp,
                                      c->sub, n, K, s->channel_gate);
        cpu_decayed_products_backward(c->dm, c->M, c->q, c->k, c->b, c->b, c->dq, c->dk, c->db, c->db, c->tmp,
                                      c->sub, n, K, s->channel_gate);
    }
    chunk_input_gradients(s, c, n, out);
}

static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                           float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                           const float *k, const float *g, const float *beta, const float *saved, float *work) {
    const int K = s->K, V = s->V, nc = n_chunks(s), gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        ChunkBuf c = chunk_buffers(s, work + chunk_thread_floats(s) * (size_t)omp_get_thread_num());
        state_or_zeros(c.S, dfinal_state, bh, KV);
        for (int ci = nc - 1; ci >= 0; ci--) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            use_slot(s, &c, (float *)saved + ((size_t)bh * nc + ci) * chunk_saved_floats(s), n);
            chunk_prepare(s, &c, bi, h, t0, n, q, k, g, beta, false);
            ChunkGrads out = {dq + row_index(s, bi, t0, h, K), dk + row_index(s, bi, t0, h, K),
                              dv + row_index(s, bi, t0, h, V), dg + row_index(s, bi, t0, h, gw),
                              dbeta + row_index(s, bi, t0, h, 1), dout + row_index(s, bi, t0, h, V)};
            prefetch_start(&c.pf);
            prefetch_add(&c.pf, out.dq, (size_t)s->H * K, n, K);
            prefetch_add(&c.pf, out.dk, (size_t)s->H * K, n, K);
            prefetch_add(&c.pf, out.dv, (size_t)s->H * V, n, V);
            if (s->channel_gate) prefetch_add(&c.pf, out.dg, (size_t)s->H * K, n, K);
            if (ci > 0) queue_chunk_inputs(s, &c.pf, bi, h, t0 - s->chunk, q, k, g, dout);
            chunk_step_backward(s, &c, n, &out);
        }
        if (dinitial_state) memcpy(dinitial_state + bh * KV, c.S, sizeof(float) * KV);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points */

void cpu_delta_rule_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *g, const float *beta,
                            const float *initial_state, float *work) {
    if (s->chunk) chunk_forward(s, o, final_state, saved, q, k, v, g, beta, initial_state, work);
    else delta_rule_recurrent_forward(s, o, final_state, saved, q, k, v, g, beta, initial_state, work);
}

void cpu_delta_rule_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *g, const float *beta, const float *saved,
                             float *work) {
    if (s->chunk)
        chunk_backward(s, dq, dk, dv, dg, dbeta, dinitial_state, dfinal_state, dout, q, k, g, beta, saved, work);
    else
        delta_rule_recurrent_backward(s, dq, dk, dv, dg, dbeta, dinitial_state, dfinal_state, dout, q, k, v, g, beta,
                                      saved, work);
}

