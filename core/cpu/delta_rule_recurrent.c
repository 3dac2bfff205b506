/* The gated delta rule's recurrent form on the CPU: the reference the chunkwise form
 * (delta_rule.c) is tested against, training with chunk_size = 0, and the one-token decode step.
 * S_t = (I - beta_t k_t k_t^T) D_t S_{t-1} + beta_t k_t v_t^T, o_t = scale S_t^T q_t, token by token
 * (shared/spec/attention.md, "The delta-rule family"). */
#include <math.h>
#include <string.h>

#include "core/util.h"
#include "delta_rule.h"

enum { MAX_STEP_V = 4096 };

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

size_t delta_rule_recurrent_thread_floats(const ScanShape *s) { return 3 * (size_t)s->K * s->V + 4 * (size_t)s->V + s->K; }

void delta_rule_recurrent_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                              const float *k, const float *v, const float *g, const float *beta,
                              const float *initial_state, float *work) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int b = bh / s->H, h = bh % s->H;
        float *S = work + delta_rule_recurrent_thread_floats(s) * (size_t)omp_get_thread_num(), *p = S + KV;
        state_or_zeros(S, initial_state, bh, KV);
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
void delta_rule_recurrent_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                               float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                               const float *k, const float *v, const float *g, const float *beta, const float *saved,
                               float *work) {
    const int K = s->K, V = s->V, gw = gate_width(s);
    const size_t KV = (size_t)K * V;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < s->B * s->H; bh++) {
        int b = bh / s->H, h = bh % s->H;
        float *dS = work + delta_rule_recurrent_thread_floats(s) * (size_t)omp_get_thread_num();
        float *Sp = dS + KV, *p = Sp + KV, *u = p + V, *du = u + V, *dp = du + V, *decay = dp + V;
        state_or_zeros(dS, dfinal_state, bh, KV);
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
