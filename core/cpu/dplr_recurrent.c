/* The diagonal-plus-low-rank rule's recurrent form on the CPU: the reference the chunkwise form
 * (dplr.c) is tested against, training with chunk_size = 0, and the one-token decode step.
 * Token by token (fla's dplr naive.py, in attnlab's [K, V] state layout):
 *   w_t = S_{t-1}^T a_t,  S_t = D_t S_{t-1} + b_t w_t^T + k_t v_t^T,  o_t = scale S_t^T q_t,
 * with D_t = diag(exp(gk_t)): a reads the state before its decay, b writes what it read. */
#include <math.h>
#include <string.h>

#include "core/util.h"
#include "dplr.h"

enum { MAX_STEP_V = 4096 };

/* One token's inputs for one head. */
typedef struct {
    const float *q, *k, *v, *a, *b, *gk;
} DplrToken;

static DplrToken token_at(const ScanShape *s, int bi, int t, int h, const float *q, const float *k, const float *v,
                          const float *a, const float *b, const float *gk) {
    size_t rk = row_index(s, bi, t, h, s->K), rv = row_index(s, bi, t, h, s->V);
    return (DplrToken){q + rk, k + rk, v + rv, a + rk, b + rk, gk + rk};
}

/* One step on one head's state S [K, V]: read, decay and write, read out. w is V scratch. */
static void dplr_step_head(int K, int V, float scale, float *S, float *w, const DplrToken *x, float *o) {
    for (int j = 0; j < V; j++) w[j] = 0.0f;
    for (int i = 0; i < K; i++) {
        const float *row = S + (size_t)i * V;
        float ai = x->a[i];
#pragma omp simd
        for (int j = 0; j < V; j++) w[j] += row[j] * ai;
    }
    for (int j = 0; j < V; j++) o[j] = 0.0f;
    for (int i = 0; i < K; i++) {
        float *row = S + (size_t)i * V;
        float d = expf(x->gk[i]), bi = x->b[i], ki = x->k[i], qi = x->q[i];
#pragma omp simd
        for (int j = 0; j < V; j++) {
            row[j] = d * row[j] + bi * w[j] + ki * x->v[j];
            o[j] += row[j] * qi;
        }
    }
    for (int j = 0; j < V; j++) o[j] *= scale;
}

size_t dplr_recurrent_thread_floats(const ScanShape *s) { return (size_t)s->K * s->V + 3 * (size_t)s->V + 16; }

void dplr_recurrent_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *a, const float *b, const float *gk,
                            const float *initial_state, float *work) {
    const size_t KV = (size_t)s->K * s->V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        float *S = work + dplr_recurrent_thread_floats(s) * (size_t)omp_get_thread_num(), *w = S + KV;
        state_or_zeros(S, initial_state, bh, KV);
        for (int t = 0; t < s->T; t++) {
            if (saved) memcpy(saved + ((size_t)bh * s->T + t) * KV, S, sizeof(float) * KV);
            DplrToken x = token_at(s, bi, t, h, q, k, v, a, b, gk);
            dplr_step_head(s->K, s->V, s->scale, S, w, &x, o + row_index(s, bi, t, h, s->V));
        }
        if (final_state) memcpy(final_state + bh * KV, S, sizeof(float) * KV);
    }
}

/* Reverse time with dS = d(loss)/dS_t and P = S_{t-1} (saved), w = P^T a recomputed:
 *   dq = scale S_t do, with S_t = D P + b w^T + k v^T read row by row;  dS += scale q do^T;
 *   dk = dS v;  dv = dS^T k;  db = dS w;  dw = dS^T b;  dgk_i = exp(gk_i) sum_j dS_ij P_ij;
 *   da = P dw;  dS_{t-1} = D dS + a dw^T. */
void dplr_recurrent_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *a, const float *b, const float *gk,
                             const float *saved, float *work) {
    const int K = s->K, V = s->V;
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int bi = bh / s->H, h = bh % s->H;
        float *dS = work + dplr_recurrent_thread_floats(s) * (size_t)omp_get_thread_num();
        float *w = dS + KV, *dw = w + V, *dvt = dw + V;
        state_or_zeros(dS, dfinal_state, bh, KV);
        for (int t = s->T - 1; t >= 0; t--) {
            DplrToken x = token_at(s, bi, t, h, q, k, v, a, b, gk);
            size_t rk = row_index(s, bi, t, h, K);
            const float *dot = dout + row_index(s, bi, t, h, V), *P = saved + ((size_t)bh * s->T + t) * KV;
            for (int j = 0; j < V; j++) w[j] = dw[j] = dvt[j] = 0.0f;
            for (int i = 0; i < K; i++) {
                const float *prow = P + (size_t)i * V;
                float ai = x.a[i];
#pragma omp simd
                for (int j = 0; j < V; j++) w[j] += prow[j] * ai;
            }
            float wdo = 0.0f, vdo = 0.0f;
            for (int j = 0; j < V; j++) {
                wdo += w[j] * dot[j];
                vdo += x.v[j] * dot[j];
            }
            for (int i = 0; i < K; i++) {
                const float *prow = P + (size_t)i * V;
                float *drow = dS + (size_t)i * V;
                float decay = expf(x.gk[i]), sq = s->scale * x.q[i], ki = x.k[i], bi_ = x.b[i];
                float pdo = 0.0f, sv = 0.0f, sw = 0.0f, sp = 0.0f;
#pragma omp simd reduction(+ : pdo, sv, sw, sp)
                for (int j = 0; j < V; j++) {
                    pdo += prow[j] * dot[j];
                    drow[j] += sq * dot[j];
                    sv += drow[j] * x.v[j];
                    sw += drow[j] * w[j];
                    sp += drow[j] * prow[j];
                    dvt[j] += drow[j] * ki;
                    dw[j] += drow[j] * bi_;
                }
                dq[rk + i] = s->scale * (decay * pdo + bi_ * wdo + ki * vdo);
                dk[rk + i] = sv;
                db[rk + i] = sw;
                dgk[rk + i] = decay * sp;
            }
            memcpy(dv + row_index(s, bi, t, h, V), dvt, sizeof(float) * V);
            for (int i = 0; i < K; i++) {
                const float *prow = P + (size_t)i * V;
                float *drow = dS + (size_t)i * V;
                float decay = expf(x.gk[i]), ai = x.a[i], sd = 0.0f;
#pragma omp simd reduction(+ : sd)
                for (int j = 0; j < V; j++) {
                    sd += prow[j] * dw[j];
                    drow[j] = decay * drow[j] + ai * dw[j];
                }
                da[rk + i] = sd;
            }
        }
        if (dinitial_state) memcpy(dinitial_state + bh * KV, dS, sizeof(float) * KV);
    }
}

void cpu_dplr_step(const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,
                   const float *a, const float *b, const float *gk) {
    if (s->V > MAX_STEP_V) die("dplr decode: value head dimension %d exceeds %d", s->V, MAX_STEP_V);
    const int K = s->K, V = s->V;
#pragma omp parallel for schedule(static) if (s->B * s->H > 1)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        float w[MAX_STEP_V];
        size_t rk = (size_t)bh * K;
        DplrToken x = {q + rk, k + rk, v + (size_t)bh * V, a + rk, b + rk, gk + rk};
        dplr_step_head(K, V, s->scale, state + (size_t)bh * K * V, w, &x, o + (size_t)bh * V);
    }
}
