/* The gated delta rule (the core of gdn and kda) on the CPU: the recurrent reference, the
 * chunkwise-parallel form used for training, their backwards, and the one-token decode step.
 * Math and notation: shared/spec/attention.md, "The delta-rule family". One (batch, head) pair is
 * one task owned by one thread; matmuls inside a task are single-threaded OpenBLAS calls.
 *
 * Gates: with channel_gate (kda) the log decay g has one value per key channel; otherwise (gdn)
 * one per head and step, and every formula below uses it for all channels. Within a chunk,
 * b_r = g_1 + ... + g_r; every decay factor is computed as exp of a difference b_r - b_j with
 * j <= r (never as exp(b_r) * exp(-b_j), which overflows for channel-wise decays). */
#include <math.h>
#include <string.h>

#include "../util.h"
#include "cpu_ops.h"
#include "fastmath.h"

enum { MAX_STEP_V = 4096 };

static int gate_width(const ScanShape *s) { return s->channel_gate ? s->K : 1; }
static int n_chunks(const ScanShape *s) { return (s->T + s->chunk - 1) / s->chunk; }

/* Offsets of token t of sequence b, head h, in the [B, T, H, X] layouts. */
static size_t row_index(const ScanShape *s, int b, int t, int h, int width) {
    return (((size_t)b * s->T + t) * s->H + h) * (size_t)width;
}

/* Floats kept per chunk: its start state S0, and from the forward A', M, U and R, which the
 * backward would otherwise recompute. */
static size_t chunk_saved_floats(const ScanShape *s) {
    size_t C = (size_t)s->chunk;
    return (size_t)s->K * s->V + 2 * C * C + 2 * C * s->V;
}

size_t cpu_delta_rule_saved(const ScanShape *s) {
    if (s->chunk) return (size_t)s->B * s->H * n_chunks(s) * chunk_saved_floats(s);
    return (size_t)s->B * s->H * s->T * s->K * s->V; /* every token's start state */
}


/* ---------------------------------------------------------------------------------------------
 * Recurrent form */

/* One step on one head's state S [K, V]: decay, predict, correct, read out. p is V scratch. */
static void delta_step(int K, int V, float scale, bool channel, float *S, float *p, const float *q, const float *k,
                       const float *v, const float *g, float beta, float *o) {
    for (int j = 0; j < V; j++) p[j] = 0.0f;
    float decay = channel ? 0.0f : expf(g[0]);
    for (int i = 0; i < K; i++) {
        float d = channel ? expf(g[i]) : decay, ki = k[i];
        float *row = S + (size_t)i * V;
#pragma omp simd
        for (int j = 0; j < V; j++) {
            row[j] *= d;
            p[j] += row[j] * ki;
        }
    }
    for (int j = 0; j < V; j++) {
        p[j] = beta * (v[j] - p[j]); /* p now holds u */
        o[j] = 0.0f;
    }
    for (int i = 0; i < K; i++) {
        float *row = S + (size_t)i * V;
        float ki = k[i], qi = q[i];
#pragma omp simd
        for (int j = 0; j < V; j++) {
            row[j] += ki * p[j];
            o[j] += row[j] * qi;
        }
    }
    for (int j = 0; j < V; j++) o[j] *= scale;
}

static size_t recurrent_thread_floats(const ScanShape *s) { return 3 * (size_t)s->K * s->V + 4 * (size_t)s->V + s->K; }

static void recurrent_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                              const float *k, const float *v, const float *g, const float *beta,
                              const float *initial_state, float *work) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int b = bh / s->H, h = bh % s->H;
        float *S = work + recurrent_thread_floats(s) * (size_t)omp_get_thread_num(), *p = S + KV;
        if (initial_state) memcpy(S, initial_state + bh * KV, sizeof(float) * KV);
        else memset(S, 0, sizeof(float) * KV);
        for (int t = 0; t < s->T; t++) {
            if (saved) memcpy(saved + ((size_t)bh * s->T + t) * KV, S, sizeof(float) * KV);
            delta_step(K, V, s->scale, s->channel_gate, S, p, q + row_index(s, b, t, h, K), k + row_index(s, b, t, h, K),
                       v + row_index(s, b, t, h, V), g + row_index(s, b, t, h, gw), beta[row_index(s, b, t, h, 1)],
                       o + row_index(s, b, t, h, V));
        }
        if (final_state) memcpy(final_state + bh * KV, S, sizeof(float) * KV);
    }
}

/* Reverse-time pass with dS = d(loss)/dS_t:
 *   dS += scale q do^T;  dq = scale S_t do;  du = dS^T k;  dk = dS u;
 *   dv = beta du;  dbeta = du . (v - p);  dp = -beta du;
 *   dS' = dS + k dp^T;  dk += S' dp;  dg_i = sum_j dS'_ij S'_ij;  dS_{t-1} = D dS'. */
static void recurrent_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                               float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                               const float *k, const float *v, const float *g, const float *beta, const float *saved,
                               float *work) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int b = bh / s->H, h = bh % s->H;
        float *dS = work + recurrent_thread_floats(s) * (size_t)omp_get_thread_num();
        float *Sp = dS + KV, *p = Sp + KV, *u = p + V, *du = u + V, *dp = du + V, *decay = dp + V;
        if (dfinal_state) memcpy(dS, dfinal_state + bh * KV, sizeof(float) * KV);
        else memset(dS, 0, sizeof(float) * KV);
        for (int t = s->T - 1; t >= 0; t--) {
            const float *qt = q + row_index(s, b, t, h, K), *kt = k + row_index(s, b, t, h, K);
            const float *vt = v + row_index(s, b, t, h, V), *dot = dout + row_index(s, b, t, h, V);
            const float *gt = g + row_index(s, b, t, h, gw);
            float bt = beta[row_index(s, b, t, h, 1)];
            const float *Sprev = saved + ((size_t)bh * s->T + t) * KV;
            /* recompute S' = D S_{t-1}, p = S'^T k, u = beta (v - p) */
            for (int j = 0; j < V; j++) p[j] = 0.0f;
            for (int i = 0; i < K; i++) {
                decay[i] = expf(gt[s->channel_gate ? i : 0]);
                const float *src = Sprev + (size_t)i * V;
                float *row = Sp + (size_t)i * V, ki = kt[i], d = decay[i];
#pragma omp simd
                for (int j = 0; j < V; j++) {
                    row[j] = src[j] * d;
                    p[j] += row[j] * ki;
                }
            }
            float udo = 0.0f;
            for (int j = 0; j < V; j++) {
                u[j] = bt * (vt[j] - p[j]);
                udo += u[j] * dot[j];
            }
            float *dqt = dq + row_index(s, b, t, h, K), *dkt = dk + row_index(s, b, t, h, K);
            /* dq = scale S_t do with S_t = S' + k u^T; dS += scale q do^T; du = dS^T k; dk = dS u */
            for (int j = 0; j < V; j++) du[j] = 0.0f;
            for (int i = 0; i < K; i++) {
                float *row = Sp + (size_t)i * V, *drow = dS + (size_t)i * V;
                float sdo = 0.0f, su = 0.0f, sq = s->scale * qt[i], ki = kt[i];
#pragma omp simd reduction(+ : sdo, su)
                for (int j = 0; j < V; j++) {
                    sdo += row[j] * dot[j];
                    drow[j] += sq * dot[j];
                    su += drow[j] * u[j];
                }
                dqt[i] = s->scale * (sdo + ki * udo);
                dkt[i] = su;
#pragma omp simd
                for (int j = 0; j < V; j++) du[j] += drow[j] * ki;
            }
            float *dvt = dv + row_index(s, b, t, h, V), dbt = 0.0f;
            for (int j = 0; j < V; j++) {
                dvt[j] = bt * du[j];
                dbt += du[j] * (vt[j] - p[j]);
                dp[j] = -bt * du[j];
            }
            dbeta[row_index(s, b, t, h, 1)] = dbt;
            /* dS' = dS + k dp^T; dk += S' dp; dg = rowsum(dS' . S'); dS_{t-1} = D dS' */
            float *dgt = dg + row_index(s, b, t, h, gw);
            if (!s->channel_gate) dgt[0] = 0.0f;
            for (int i = 0; i < K; i++) {
                float *row = Sp + (size_t)i * V, *drow = dS + (size_t)i * V, ki = kt[i];
                float sdp = 0.0f, sg = 0.0f;
#pragma omp simd reduction(+ : sdp, sg)
                for (int j = 0; j < V; j++) {
                    drow[j] += ki * dp[j];
                    sdp += row[j] * dp[j];
                    sg += drow[j] * row[j];
                    drow[j] *= decay[i];
                }
                dkt[i] += sdp;
                if (s->channel_gate) dgt[i] = sg;
                else dgt[0] += sg;
            }
        }
        if (dinitial_state) memcpy(dinitial_state + bh * KV, dS, sizeof(float) * KV);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Chunkwise form. For a chunk of n rows with start state S0 (spec, "Chunkwise form"):
 *   A'[r,j] = sum_d k_rd k_jd exp(b_rd - b_jd) (j < r),   M[r,j] = sum_d q_rd k_jd exp(b_rd - b_jd) (j <= r)
 *   (I + diag(beta) A') U = diag(beta) R,   R = V - Kb S0,   Kb = K * exp(b),  Qb = Q * exp(b)
 *   O = scale (Qb S0 + M U),   S_end = diag(exp(b_n)) S0 + Kc^T U,   Kc = K * exp(b_n - b)
 * (solving with R folds the spec's W and U~ into one triangular solve). */

/* One thread's buffers for one chunk; n <= C rows, each matrix contiguous with n rows. */
typedef struct {
    float *q, *k, *v, *b, *bk, *eb, *ec, *qb, *kb, *kc, *A, *M, *R, *U, *O, *beta;
    float *dO, *dU, *dY, *dA, *dM, *tmp, *sub, *dq, *dk, *dqb, *dkb, *dkc, *db, *dbk, *dbeta, *dS0, *blast_d, *dbk_last;
} ChunkBuf;

static size_t chunk_thread_floats(const ScanShape *s) {
    size_t C = (size_t)s->chunk, K = s->K, V = s->V;
    return 22 * C * K + 7 * C * V + 5 * C * C + K * V + 2 * C + 2 * K + 40 * 32; /* + rounding of each slot */
}

static ChunkBuf chunk_buffers(const ScanShape *s, float *base) {
    size_t C = (size_t)s->chunk, K = s->K, V = s->V;
    ChunkBuf c;
    float *p = base;
#define TAKE(field, count)                                                                                            \
    do {                                                                                                              \
        c.field = p;                                                                                                  \
        p += ((count) + 31) / 32 * 32;                                                                                \
    } while (0)
    TAKE(q, C * K);
    TAKE(k, C * K);
    TAKE(b, C * K);
    TAKE(bk, C * K);
    TAKE(eb, C * K);
    TAKE(ec, C * K);
    TAKE(qb, C * K);
    TAKE(kb, C * K);
    TAKE(kc, C * K);
    TAKE(dq, C * K);
    TAKE(dk, C * K);
    TAKE(dqb, C * K);
    TAKE(dkb, C * K);
    TAKE(dkc, C * K);
    TAKE(db, C * K);
    TAKE(dbk, C * K);
    TAKE(sub, 6 * C * K);
    TAKE(v, C * V);
    TAKE(R, C * V);
    TAKE(U, C * V);
    TAKE(O, C * V);
    TAKE(dO, C * V);
    TAKE(dU, C * V);
    TAKE(dY, C * V);
    TAKE(A, C * C);
    TAKE(M, C * C);
    TAKE(dA, C * C);
    TAKE(dM, C * C);
    TAKE(tmp, C * C);
    TAKE(dS0, K * V);
    TAKE(beta, C);
    TAKE(dbeta, C);
    TAKE(blast_d, K);
    TAKE(dbk_last, K);
#undef TAKE
    return c;
}

/* Points the chunk's A', M, U and R at their slots in `saved` (after the chunk's S0). */
static void use_saved_slots(const ScanShape *s, ChunkBuf *c, float *chunk_saved) {
    size_t C = (size_t)s->chunk;
    c->A = chunk_saved + (size_t)s->K * s->V;
    c->M = c->A + C * C;
    c->U = c->M + C * C;
    c->R = c->U + C * s->V;
}

size_t cpu_delta_rule_workspace(const ScanShape *s) {
    size_t per = s->chunk ? chunk_thread_floats(s) : recurrent_thread_floats(s);
    return sizeof(float) * per * (size_t)cpu_threads();
}

/* Channel-wise decays within a chunk go through sub-chunks of SUB rows. For rows r of a sub-chunk
 * starting at row rho and any earlier row j < rho,
 *   exp(b_r - b_j) = exp(b_r - b_rho) * exp(b_rho - b_j),
 * where both factors are <= 1 (b only decreases), so the pairs of different sub-chunks become one
 * matmul of X * exp(b - b_rho) with Y * exp(b_rho - b) without overflow; only pairs inside a
 * sub-chunk need an exp per channel. */
enum { SUB = 16 };

typedef struct {
    float *xp, *e;  /* X * e, e = exp(b_r - b_rho) for the sub-chunk's rows [nr, K] */
    float *yp, *f;  /* Y * f, f = exp(b_rho - b_j) for the rows before it [rho, K] */
    float *dxp, *dyp;
} SubBlock;

static SubBlock sub_block(float *sub, const float *X, const float *Y, const float *b, int rho, int nr, int K) {
    SubBlock sb;
    sb.xp = sub;
    sb.e = sb.xp + (size_t)SUB * K;
    sb.dxp = sb.e + (size_t)SUB * K;
    sb.yp = sb.dxp + (size_t)SUB * K;
    sb.f = sb.yp + (size_t)rho * K;
    sb.dyp = sb.f + (size_t)rho * K;
    const float *bref = b + (size_t)rho * K;
    for (int r = 0; r < nr; r++) {
        const float *br = b + (size_t)(rho + r) * K, *xr = X + (size_t)(rho + r) * K;
        float *er = sb.e + (size_t)r * K, *xpr = sb.xp + (size_t)r * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            er[d] = fast_expf(br[d] - bref[d]);
            xpr[d] = xr[d] * er[d];
        }
    }
    for (int j = 0; j < rho; j++) {
        const float *bj = b + (size_t)j * K, *yj = Y + (size_t)j * K;
        float *fj = sb.f + (size_t)j * K, *ypj = sb.yp + (size_t)j * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            fj[d] = fast_expf(bref[d] - bj[d]);
            ypj[d] = yj[d] * fj[d];
        }
    }
    return sb;
}

/* P[r,j] = sum_d X_rd Y_jd exp(b_rd - b_jd) for j < r (or j <= r when inclusive), else 0.
 * sub: 3 SUB K + 3 n K floats of scratch (channel gates only). */
static void decayed_products(float *P, const float *X, const float *Y, const float *b, int n, int K, bool channel,
                             bool inclusive, float *sub) {
    if (!channel) {
        cpu_gemm(false, true, n, n, K, 1.0f, X, K, Y, K, 0.0f, P, n);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                bool keep = j < r || (inclusive && j == r);
                P[r * n + j] = keep ? P[r * n + j] * expf(b[r] - b[j]) : 0.0f;
            }
        return;
    }
    for (int r0 = 0; r0 < n; r0 += SUB) {
        int nr = min_int(SUB, n - r0);
        if (r0 > 0) { /* rows of this sub-chunk against every earlier row, as one matmul */
            SubBlock sb = sub_block(sub, X, Y, b, r0, nr, K);
            cpu_gemm(false, true, nr, r0, K, 1.0f, sb.xp, K, sb.yp, K, 0.0f, P + (size_t)r0 * n, n);
        }
        for (int r = r0; r < r0 + nr; r++) { /* within the sub-chunk: pairwise differences */
            const float *xr = X + (size_t)r * K, *br = b + (size_t)r * K;
            int last = inclusive ? r : r - 1;
            for (int j = r0; j <= last; j++) {
                const float *yj = Y + (size_t)j * K, *bj = b + (size_t)j * K;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int d = 0; d < K; d++) acc += xr[d] * yj[d] * fast_expf(br[d] - bj[d]);
                P[r * n + j] = acc;
            }
            for (int j = last + 1; j < n; j++) P[r * n + j] = 0.0f;
        }
    }
}

/* Adds the gradients of decayed_products given dP (zero where P is masked): dX, dY (which may
 * alias dX when X == Y) and db (n x K, or n when the gate is per head). P is the forward value. */
static void decayed_products_backward(const float *dP, const float *P, const float *X, const float *Y,
                                      const float *b, float *dX, float *dY, float *db, float *tmp, float *sub, int n,
                                      int K, bool channel) {
    if (!channel) {
        /* with E_rj = exp(b_r - b_j): dX += (dP . E) Y, dY += (dP . E)^T X, db_r += sum_j dP_rj P_rj,
         * db_j -= sum_r dP_rj P_rj; tmp holds dP . E */
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                float w = dP[r * n + j] * P[r * n + j];
                tmp[r * n + j] = dP[r * n + j] == 0.0f ? 0.0f : dP[r * n + j] * expf(b[r] - b[j]);
                db[r] += w;
                db[j] -= w;
            }
        cpu_gemm(false, false, n, K, n, 1.0f, tmp, n, Y, K, 1.0f, dX, K);
        cpu_gemm(true, false, n, K, n, 1.0f, tmp, n, X, K, 1.0f, dY, K);
        return;
    }
    (void)P;
    (void)tmp;
    for (int r0 = 0; r0 < n; r0 += SUB) {
        int nr = min_int(SUB, n - r0);
        if (r0 > 0) {
            /* P_RJ = Xp Yp^T: dXp = dP_RJ Yp, dYp = dP_RJ^T Xp; then through Xp = X e, Yp = Y f, whose
             * exponents b_r - b_rho and b_rho - b_j send gradient to b_r, b_j and b_rho */
            SubBlock sb = sub_block(sub, X, Y, b, r0, nr, K);
            const float *dPb = dP + (size_t)r0 * n;
            cpu_gemm(false, false, nr, K, r0, 1.0f, dPb, n, sb.yp, K, 0.0f, sb.dxp, K);
            cpu_gemm(true, false, r0, K, nr, 1.0f, dPb, n, sb.xp, K, 0.0f, sb.dyp, K);
            float *dbref = db + (size_t)r0 * K;
            for (int r = 0; r < nr; r++) {
                float *dxr = dX + (size_t)(r0 + r) * K, *dbr = db + (size_t)(r0 + r) * K;
                const float *g1 = sb.dxp + (size_t)r * K, *er = sb.e + (size_t)r * K, *xp = sb.xp + (size_t)r * K;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = g1[d] * xp[d];
                    dxr[d] += g1[d] * er[d];
                    dbr[d] += w;
                    dbref[d] -= w;
                }
            }
            for (int j = 0; j < r0; j++) {
                float *dyj = dY + (size_t)j * K, *dbj = db + (size_t)j * K;
                const float *g2 = sb.dyp + (size_t)j * K, *fj = sb.f + (size_t)j * K, *yp = sb.yp + (size_t)j * K;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = g2[d] * yp[d];
                    dyj[d] += g2[d] * fj[d];
                    dbj[d] -= w;
                    dbref[d] += w;
                }
            }
        }
        for (int r = r0; r < r0 + nr; r++) {
            const float *xr = X + (size_t)r * K, *br = b + (size_t)r * K;
            float *dxr = dX + (size_t)r * K, *dbr = db + (size_t)r * K;
            for (int j = r0; j <= r; j++) {
                float d = dP[r * n + j];
                if (d == 0.0f) continue;
                const float *yj = Y + (size_t)j * K, *bj = b + (size_t)j * K;
                float *dyj = dY + (size_t)j * K, *dbj = db + (size_t)j * K;
#pragma omp simd
                for (int c = 0; c < K; c++) {
                    float t = d * fast_expf(br[c] - bj[c]);
                    float w = t * xr[c] * yj[c];
                    dxr[c] += t * yj[c];
                    dyj[c] += t * xr[c];
                    dbr[c] += w;
                    dbj[c] -= w;
                }
            }
        }
    }
}

/* Loads the chunk rows [t0, t0 + n) of (b, h): q, k, v, beta, the cumulative decays b and the
 * decayed Qb, Kb, Kc. */
static void chunk_load(const ScanShape *s, ChunkBuf *c, int bi, int h, int t0, int n, const float *q, const float *k,
                       const float *v, const float *g, const float *beta) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    for (int r = 0; r < n; r++) {
        memcpy(c->q + (size_t)r * K, q + row_index(s, bi, t0 + r, h, K), sizeof(float) * K);
        memcpy(c->k + (size_t)r * K, k + row_index(s, bi, t0 + r, h, K), sizeof(float) * K);
        memcpy(c->v + (size_t)r * V, v + row_index(s, bi, t0 + r, h, V), sizeof(float) * V);
        const float *gr = g + row_index(s, bi, t0 + r, h, gw);
        for (int d = 0; d < gw; d++) c->b[(size_t)r * gw + d] = gr[d] + (r ? c->b[(size_t)(r - 1) * gw + d] : 0.0f);
        c->beta[r] = beta[row_index(s, bi, t0 + r, h, 1)];
    }
    /* the per-channel view of b (a per-head gate is the same for every channel) */
    if (!s->channel_gate)
        for (int r = 0; r < n; r++)
            for (int d = 0; d < K; d++) c->bk[(size_t)r * K + d] = c->b[r];
    const float *bk = s->channel_gate ? c->b : c->bk, *bklast = bk + (size_t)(n - 1) * K;
    for (int r = 0; r < n; r++) {
        const float *br = bk + (size_t)r * K, *qr = c->q + (size_t)r * K, *kr = c->k + (size_t)r * K;
        float *eb = c->eb + (size_t)r * K, *qb = c->qb + (size_t)r * K, *kb = c->kb + (size_t)r * K,
              *kc = c->kc + (size_t)r * K, *ec = c->ec + (size_t)r * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            eb[d] = fast_expf(br[d]);
            ec[d] = fast_expf(bklast[d] - br[d]);
            qb[d] = qr[d] * eb[d];
            kb[d] = kr[d] * eb[d];
            kc[d] = kr[d] * ec[d];
        }
    }
}

/* A', M, R = V - Kb S0 and U, from a loaded chunk and its start state. */
static void chunk_solve(const ScanShape *s, ChunkBuf *c, int n, const float *S0) {
    const int K = s->K, V = s->V;
    decayed_products(c->A, c->k, c->k, c->b, n, K, s->channel_gate, false, c->sub);
    decayed_products(c->M, c->q, c->k, c->b, n, K, s->channel_gate, true, c->sub);
    /* R = V - Kb S0; then U by forward substitution of (I + diag(beta) A') U = diag(beta) R:
     * U_r = beta_r (R_r - sum_{j<r} A'_rj U_j) */
    memcpy(c->R, c->v, sizeof(float) * (size_t)n * V);
    cpu_gemm(false, false, n, V, K, -1.0f, c->kb, K, S0, V, 1.0f, c->R, V);
    for (int r = 0; r < n; r++) {
        float *ur = c->U + (size_t)r * V;
        const float *rr = c->R + (size_t)r * V;
        for (int j = 0; j < V; j++) ur[j] = rr[j];
        for (int j = 0; j < r; j++) {
            float a = c->A[r * n + j];
            const float *uj = c->U + (size_t)j * V;
#pragma omp simd
            for (int x = 0; x < V; x++) ur[x] -= a * uj[x];
        }
        for (int x = 0; x < V; x++) ur[x] *= c->beta[r];
    }
}

/* Scales row i of S [K, V] by exp(b_last[i]) (or by one factor when the gate is per head). */
static void decay_state(const ScanShape *s, float *S, const float *blast) {
    for (int i = 0; i < s->K; i++) {
        float d = expf(blast[s->channel_gate ? i : 0]);
        float *row = S + (size_t)i * s->V;
        for (int j = 0; j < s->V; j++) row[j] *= d;
    }
}

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *g, const float *beta,
                          const float *initial_state, float *work) {
    const int K = s->K, V = s->V, nc = n_chunks(s), gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        float *base = work + chunk_thread_floats(s) * (size_t)omp_get_thread_num();
        ChunkBuf c = chunk_buffers(s, base);
        float *S = c.dS0; /* the running state lives in the dS0 slot, unused in the forward */
        if (initial_state) memcpy(S, initial_state + bh * KV, sizeof(float) * KV);
        else memset(S, 0, sizeof(float) * KV);
        for (int ci = 0; ci < nc; ci++) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            if (saved) {
                float *slot = saved + ((size_t)bh * nc + ci) * chunk_saved_floats(s);
                memcpy(slot, S, sizeof(float) * KV);
                use_saved_slots(s, &c, slot);
            }
            chunk_load(s, &c, bi, h, t0, n, q, k, v, g, beta);
            chunk_solve(s, &c, n, S);
            /* O = scale (Qb S0 + M U) */
            cpu_gemm(false, false, n, V, K, s->scale, c.qb, K, S, V, 0.0f, c.O, V);
            cpu_gemm(false, false, n, V, n, s->scale, c.M, n, c.U, V, 1.0f, c.O, V);
            for (int r = 0; r < n; r++) memcpy(o + row_index(s, bi, t0 + r, h, V), c.O + (size_t)r * V, sizeof(float) * V);
            /* S = diag(exp(b_n)) S0 + Kc^T U */
            decay_state(s, S, c.b + (size_t)(n - 1) * gw);
            cpu_gemm(true, false, K, V, n, 1.0f, c.kc, K, c.U, V, 1.0f, S, V);
        }
        if (final_state) memcpy(final_state + bh * KV, S, sizeof(float) * KV);
    }
}

/* The chunk backward, given dO and dS_end (the gradient of the chunk's end state):
 *   dU = scale M^T dO + Kc dS_end;  dM = scale dO U^T (j <= r);  dQb = scale dO S0^T;
 *   dS0 = scale Qb^T dO + diag(exp(b_n)) dS_end;  dKc = U dS_end^T;
 *   dY = (I + diag(beta) A')^-T dU;  dL = -dY U^T (j < r): dA' = diag(beta) dL, dbeta += rowsum(dL . A');
 *   dbeta += rowsum(dY . R);  dR = diag(beta) dY:  dV = dR,  dKb = -dR S0^T,  dS0 -= Kb^T dR;
 *   then through A', M, Qb, Kb, Kc to dQ, dK and db, and dg = reverse cumulative sum of db. */
static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                           float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                           const float *k, const float *v, const float *g, const float *beta, const float *saved,
                           float *work) {
    const int K = s->K, V = s->V, nc = n_chunks(s), gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        float *base = work + chunk_thread_floats(s) * (size_t)omp_get_thread_num();
        ChunkBuf c = chunk_buffers(s, base);
        /* dS holds the chunk's dS_end on entry and is turned into its dS0 in place, which is the
         * previous chunk's dS_end */
        float *dS = c.dS0;
        if (dfinal_state) memcpy(dS, dfinal_state + bh * KV, sizeof(float) * KV);
        else memset(dS, 0, sizeof(float) * KV);
        for (int ci = nc - 1; ci >= 0; ci--) {
            int t0 = ci * s->chunk, n = min_int(s->chunk, s->T - t0);
            float *slot = (float *)saved + ((size_t)bh * nc + ci) * chunk_saved_floats(s);
            const float *S0 = slot;
            use_saved_slots(s, &c, slot); /* A', M, U, R as the forward left them */
            chunk_load(s, &c, bi, h, t0, n, q, k, v, g, beta);
            for (int r = 0; r < n; r++) memcpy(c.dO + (size_t)r * V, dout + row_index(s, bi, t0 + r, h, V), sizeof(float) * V);
            const float *blast = c.b + (size_t)(n - 1) * gw;
            memset(c.dq, 0, sizeof(float) * (size_t)n * K);
            memset(c.dk, 0, sizeof(float) * (size_t)n * K);
            memset(c.db, 0, sizeof(float) * (size_t)n * gw);
            memset(c.dbeta, 0, sizeof(float) * (size_t)n);
            /* terms that need dS_end (= dS): dU, dKc, d b_n; dS0 starts as diag(exp(b_n)) dS_end */
            cpu_gemm(false, false, n, V, K, 1.0f, c.kc, K, dS, V, 0.0f, c.dU, V);
            cpu_gemm(false, true, n, K, V, 1.0f, c.U, V, dS, V, 0.0f, c.dkc, K);
            for (int d = 0; d < gw; d++) c.blast_d[d] = 0.0f;
            for (int d = 0; d < K; d++) c.dbk_last[d] = 0.0f;
            for (int i = 0; i < K; i++) {
                float e = expf(blast[s->channel_gate ? i : 0]), acc = 0.0f;
                float *drow = dS + (size_t)i * V;
                const float *srow = S0 + (size_t)i * V;
                for (int j = 0; j < V; j++) {
                    acc += drow[j] * srow[j];
                    drow[j] *= e;
                }
                c.blast_d[s->channel_gate ? i : 0] += acc * e;
            }
            /* dS now holds diag(exp(b_n)) dS_end and accumulates the rest of dS0 */
            cpu_gemm(true, false, n, V, n, s->scale, c.M, n, c.dO, V, 1.0f, c.dU, V);
            cpu_gemm(false, true, n, n, V, s->scale, c.dO, V, c.U, V, 0.0f, c.dM, n);
            for (int r = 0; r < n; r++)
                for (int j = r + 1; j < n; j++) c.dM[r * n + j] = 0.0f;
            cpu_gemm(false, true, n, K, V, s->scale, c.dO, V, S0, V, 0.0f, c.dqb, K);
            cpu_gemm(true, false, K, V, n, s->scale, c.qb, K, c.dO, V, 1.0f, dS, V);
            /* back substitution: dY_r = dU_r - sum_{r' > r} beta_r' A'_{r' r} dY_r' */
            for (int r = n - 1; r >= 0; r--) {
                float *dyr = c.dY + (size_t)r * V;
                memcpy(dyr, c.dU + (size_t)r * V, sizeof(float) * V);
                for (int r2 = r + 1; r2 < n; r2++) {
                    float a = c.beta[r2] * c.A[r2 * n + r];
                    const float *dy2 = c.dY + (size_t)r2 * V;
#pragma omp simd
                    for (int x = 0; x < V; x++) dyr[x] -= a * dy2[x];
                }
            }
            /* dL = -dY U^T on the strict lower triangle -> dA' and dbeta */
            cpu_gemm(false, true, n, n, V, -1.0f, c.dY, V, c.U, V, 0.0f, c.dA, n);
            for (int r = 0; r < n; r++) {
                float acc = 0.0f;
                for (int j = 0; j < n; j++) {
                    if (j >= r) {
                        c.dA[r * n + j] = 0.0f;
                        continue;
                    }
                    acc += c.dA[r * n + j] * c.A[r * n + j];
                    c.dA[r * n + j] *= c.beta[r];
                }
                c.dbeta[r] += acc;
            }
            /* Y = diag(beta) R: dbeta += dY . R; dR = beta dY -> dV, dKb, dS0 */
            for (int r = 0; r < n; r++) {
                float acc = 0.0f;
                float *dyr = c.dY + (size_t)r * V;
                const float *rr = c.R + (size_t)r * V;
                for (int x = 0; x < V; x++) {
                    acc += dyr[x] * rr[x];
                    dyr[x] *= c.beta[r]; /* dY becomes dR */
                }
                c.dbeta[r] += acc;
            }
            cpu_gemm(false, true, n, K, V, -1.0f, c.dY, V, S0, V, 0.0f, c.dkb, K);
            cpu_gemm(true, false, K, V, n, -1.0f, c.kb, K, c.dY, V, 1.0f, dS, V);
            decayed_products_backward(c.dA, c.A, c.k, c.k, c.b, c.dk, c.dk, c.db, c.tmp, c.sub, n, K, s->channel_gate);
            decayed_products_backward(c.dM, c.M, c.q, c.k, c.b, c.dq, c.dk, c.db, c.tmp, c.sub, n, K, s->channel_gate);
            /* through Qb = Q e^b, Kb = K e^b and Kc = K e^(b_n - b), per channel into dbk */
            for (int r = 0; r < n; r++) {
                size_t o = (size_t)r * K;
                const float *dqb = c.dqb + o, *dkb = c.dkb + o, *dkc = c.dkc + o, *eb = c.eb + o, *ec = c.ec + o;
                const float *qb = c.qb + o, *kb = c.kb + o, *kc = c.kc + o;
                float *dqr = c.dq + o, *dkr = c.dk + o, *dbk = c.dbk + o;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = dkc[d] * kc[d];
                    dqr[d] += dqb[d] * eb[d];
                    dkr[d] += dkb[d] * eb[d] + dkc[d] * ec[d];
                    dbk[d] = dqb[d] * qb[d] + dkb[d] * kb[d] - w;
                    c.dbk_last[d] += w;
                }
            }
            /* a per-head gate collects its channels */
            for (int r = 0; r < n; r++) {
                const float *dbk = c.dbk + (size_t)r * K;
                if (s->channel_gate) {
                    float *dbr = c.db + (size_t)r * K;
                    for (int d = 0; d < K; d++) dbr[d] += dbk[d];
                } else {
                    float acc = 0.0f;
                    for (int d = 0; d < K; d++) acc += dbk[d];
                    c.db[r] += acc;
                }
            }
            if (s->channel_gate) for (int d = 0; d < K; d++) c.blast_d[d] += c.dbk_last[d];
            else for (int d = 0; d < K; d++) c.blast_d[0] += c.dbk_last[d];
            for (int d = 0; d < gw; d++) c.db[(size_t)(n - 1) * gw + d] += c.blast_d[d];
            /* b_r = g_1 + ... + g_r, so dg_r = db_r + ... + db_n */
            for (int r = n - 2; r >= 0; r--)
                for (int d = 0; d < gw; d++) c.db[(size_t)r * gw + d] += c.db[(size_t)(r + 1) * gw + d];
            for (int r = 0; r < n; r++) {
                memcpy(dq + row_index(s, bi, t0 + r, h, K), c.dq + (size_t)r * K, sizeof(float) * K);
                memcpy(dk + row_index(s, bi, t0 + r, h, K), c.dk + (size_t)r * K, sizeof(float) * K);
                memcpy(dv + row_index(s, bi, t0 + r, h, V), c.dY + (size_t)r * V, sizeof(float) * V);
                memcpy(dg + row_index(s, bi, t0 + r, h, gw), c.db + (size_t)r * gw, sizeof(float) * gw);
                dbeta[row_index(s, bi, t0 + r, h, 1)] = c.dbeta[r];
            }
        }
        if (dinitial_state) memcpy(dinitial_state + bh * KV, dS, sizeof(float) * KV);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points */

void cpu_delta_rule_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *g, const float *beta,
                            const float *initial_state, float *work) {
    if (s->chunk) chunk_forward(s, o, final_state, saved, q, k, v, g, beta, initial_state, work);
    else recurrent_forward(s, o, final_state, saved, q, k, v, g, beta, initial_state, work);
}

void cpu_delta_rule_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *g, const float *beta, const float *saved,
                             float *work) {
    if (s->chunk)
        chunk_backward(s, dq, dk, dv, dg, dbeta, dinitial_state, dfinal_state, dout, q, k, v, g, beta, saved, work);
    else
        recurrent_backward(s, dq, dk, dv, dg, dbeta, dinitial_state, dfinal_state, dout, q, k, v, g, beta, saved,
                           work);
}

void cpu_delta_rule_step(const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,
                         const float *g, const float *beta) {
    if (s->V > MAX_STEP_V) die("delta rule decode: value head dimension %d exceeds %d", s->V, MAX_STEP_V);
    const int K = s->K, V = s->V, gw = gate_width(s);
#pragma omp parallel for schedule(static) if (s->B * s->H > 1)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        float p[MAX_STEP_V];
        delta_step(K, V, s->scale, s->channel_gate, state + (size_t)bh * K * V, p, q + (size_t)bh * K,
                   k + (size_t)bh * K, v + (size_t)bh * V, g + (size_t)bh * gw, beta[bh], o + (size_t)bh * V);
    }
}
