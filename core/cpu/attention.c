/* Causal softmax attention on the CPU, flash-style: query rows are processed in tiles of
 * TILE rows against the keys they can see, keeping only each row's log-sum-exp for the backward,
 * which recomputes the scores. Memory is O(TILE * T) per thread instead of O(T^2) per head, so
 * long evaluation contexts fit. Each (batch, kv head) pair is one task owned by one thread, so
 * the dK/dV sums over the heads of a group never race. Matmuls are single-threaded OpenBLAS calls
 * inside the parallel region. */
#include <math.h>

#include "core/attention_layout.h"
#include "core/util.h"
#include "cpu_ops.h"
#include "fastmath.h"

enum { TILE = 64 };

static size_t per_thread_floats(const AttnShape *s) { return 2 * (size_t)TILE * s->T + TILE; }

/* the threads' tiles, then (a layout other than heads side by side: attention_layout.h) the
 * gathered keys and values, and in the backward their gradients */
size_t cpu_attention_workspace(const AttnShape *s) {
    return sizeof(float) * (per_thread_floats(s) * (size_t)cpu_threads() + 2 * attn_gathered_floats(s));
}

/* The caller rotates q and k (RoPE): a rotated copy here would cost what the caller's pass does. */
bool cpu_attention_rotates(const AttnShape *s) {
    (void)s;
    return false;
}

/* The backward reads q, k and v themselves. */
size_t cpu_attention_saved(const AttnShape *s) {
    (void)s;
    return 0;
}

/* P = softmax over the visible keys of the scaled scores in S (nr rows of nk keys, row i is
 * position r0 + i). With lse == NULL the row statistics are computed (forward) and written to
 * lse_out; otherwise the stored log-sum-exp is used (backward recomputation). */
static void causal_softmax_tile(float *S, int nr, int nk, int r0, const float *lse, float *lse_out) {
    for (int i = 0; i < nr; i++) {
        float *row = S + (size_t)i * nk;
        int visible = r0 + i + 1;
        float shift;
        if (lse) {
            shift = lse[i];
        } else {
            float mx = -INFINITY;
            for (int j = 0; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
            shift = mx;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < visible; j++) {
            float p = fast_expf(row[j] - shift);
            row[j] = p;
            sum += p;
        }
        if (!lse) {
            float inv = 1.0f / sum;
#pragma omp simd
            for (int j = 0; j < visible; j++) row[j] *= inv;
            lse_out[i] = shift + logf(sum);
        }
        for (int j = visible; j < nk; j++) row[j] = 0.0f;
    }
}

static void forward_plain(const AttnShape *s, float *o, float *lse, const float *q, const float *k, const float *v,
                          float *work) {
    const int B = s->B, T = s->T, H = s->H, group = s->H / s->Hkv;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / group;
        float *S = work + per_thread_floats(s) * (size_t)omp_get_thread_num();
        const float *qb = q + (size_t)b * T * s->q_stride + (size_t)h * s->Dk;
        const float *kb = k + (size_t)b * T * s->k_stride + (size_t)g * s->Dk;
        const float *vb = v + (size_t)b * T * s->v_stride + (size_t)g * s->Dv;
        float *ob = o + (size_t)b * T * s->o_stride + (size_t)h * s->Dv;
        float *lseb = lse + (size_t)bh * T;
        for (int r0 = 0; r0 < T; r0 += TILE) {
            int nr = min_int(TILE, T - r0), nk = r0 + nr;
            cpu_gemm(false, true, nr, nk, s->Dk, s->scale, qb + (size_t)r0 * s->q_stride, (int)s->q_stride, kb,
                     (int)s->k_stride, 0.0f, S, nk);
            causal_softmax_tile(S, nr, nk, r0, NULL, lseb + r0);
            cpu_gemm(false, false, nr, s->Dv, nk, 1.0f, S, nk, vb, (int)s->v_stride, 0.0f,
                     ob + (size_t)r0 * s->o_stride, (int)s->o_stride);
        }
    }
}

/* dV += P^T dO; dP = dO V^T; dS = P (dP - rowsum(dO o)) scale; dQ = dS K; dK += dS^T Q. */
static void backward_plain(const AttnShape *s, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *o, const float *lse, float *work) {
    const int B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, group = s->H / s->Hkv;
#pragma omp parallel for schedule(dynamic)
    for (int bg = 0; bg < B * Hkv; bg++) {
        int b = bg / Hkv, g = bg % Hkv;
        float *P = work + per_thread_floats(s) * (size_t)omp_get_thread_num();
        float *dP = P + (size_t)TILE * T, *D = dP + (size_t)TILE * T;
        const float *kb = k + (size_t)b * T * s->k_stride + (size_t)g * s->Dk;
        const float *vb = v + (size_t)b * T * s->v_stride + (size_t)g * s->Dv;
        float *dkb = dk + (size_t)b * T * s->k_stride + (size_t)g * s->Dk;
        float *dvb = dv + (size_t)b * T * s->v_stride + (size_t)g * s->Dv;
        for (int t = 0; t < T; t++) {
            for (int d = 0; d < s->Dk; d++) dkb[(size_t)t * s->k_stride + d] = 0.0f;
            for (int d = 0; d < s->Dv; d++) dvb[(size_t)t * s->v_stride + d] = 0.0f;
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *qb = q + (size_t)b * T * s->q_stride + (size_t)h * s->Dk;
            const float *ob = o + (size_t)b * T * s->o_stride + (size_t)h * s->Dv;
            const float *dob = dout + (size_t)b * T * s->o_stride + (size_t)h * s->Dv;
            float *dqb = dq + (size_t)b * T * s->q_stride + (size_t)h * s->Dk;
            const float *lseb = lse + ((size_t)b * H + h) * T;
            for (int r0 = 0; r0 < T; r0 += TILE) {
                int nr = min_int(TILE, T - r0), nk = r0 + nr;
                const float *qt = qb + (size_t)r0 * s->q_stride, *dot = dob + (size_t)r0 * s->o_stride;
                cpu_gemm(false, true, nr, nk, s->Dk, s->scale, qt, (int)s->q_stride, kb, (int)s->k_stride, 0.0f, P,
                         nk);
                causal_softmax_tile(P, nr, nk, r0, lseb + r0, NULL);
                for (int i = 0; i < nr; i++) {
                    const float *orow = ob + (size_t)(r0 + i) * s->o_stride, *drow = dot + (size_t)i * s->o_stride;
                    float acc = 0.0f;
                    for (int d = 0; d < s->Dv; d++) acc += orow[d] * drow[d];
                    D[i] = acc;
                }
                cpu_gemm(true, false, nk, s->Dv, nr, 1.0f, P, nk, dot, (int)s->o_stride, 1.0f, dvb, (int)s->v_stride);
                cpu_gemm(false, true, nr, nk, s->Dv, 1.0f, dot, (int)s->o_stride, vb, (int)s->v_stride, 0.0f, dP, nk);
                for (int i = 0; i < nr; i++) {
                    float *dpr = dP + (size_t)i * nk;
                    const float *pr = P + (size_t)i * nk;
                    float Di = D[i], sc = s->scale;
#pragma omp simd
                    for (int j = 0; j < nk; j++) dpr[j] = pr[j] * (dpr[j] - Di) * sc;
                }
                cpu_gemm(false, false, nr, s->Dk, nk, 1.0f, dP, nk, kb, (int)s->k_stride, 0.0f,
                         dqb + (size_t)r0 * s->q_stride, (int)s->q_stride);
                cpu_gemm(true, false, nk, s->Dk, nr, 1.0f, dP, nk, qt, (int)s->q_stride, 1.0f, dkb, (int)s->k_stride);
            }
        }
    }
}

void cpu_attention_forward(const AttnShape *s, float *o, float *lse, void *saved, const float *q, const float *k,
                           const float *k_shared, const float *v, float *work) {
    (void)saved;
    attn_check_layout(s, k_shared, k_shared);
    if (attn_layout_plain(s)) {
        forward_plain(s, o, lse, q, k, v, work);
        return;
    }
    AttnShape g = attn_gathered_shape(s);
    float *kg, *vg;
    attn_gathered_buffers(s, work + per_thread_floats(s) * (size_t)cpu_threads(), &kg, &vg, NULL, NULL);
    attn_gather(cpu_copy_heads, s, kg, vg, k, k_shared, v);
    forward_plain(&g, o, lse, q, kg, vg, work);
}

void cpu_attention_backward(const AttnShape *s, float *dq, float *dk, float *dk_shared, float *dv, const float *dout,
                            const float *q, const float *k, const float *k_shared, const float *v, const float *o,
                            const float *lse, const void *saved, float *work) {
    (void)saved;
    attn_check_layout(s, k_shared, dk_shared);
    if (attn_layout_plain(s)) {
        backward_plain(s, dq, dk, dv, dout, q, k, v, o, lse, work);
        return;
    }
    AttnShape g = attn_gathered_shape(s);
    float *kg, *vg, *dkg, *dvg;
    attn_gathered_buffers(s, work + per_thread_floats(s) * (size_t)cpu_threads(), &kg, &vg, &dkg, &dvg);
    attn_gather(cpu_copy_heads, s, kg, vg, k, k_shared, v);
    backward_plain(&g, dq, dkg, dvg, dout, q, kg, vg, o, lse, work);
    attn_scatter_grads(cpu_copy_heads, s, dk, dk_shared, dv, dkg, dvg);
}

/* In-place softmax of one row of n scores. */
static void softmax_row(float *row, int n) {
    float mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        row[j] = fast_expf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) row[j] *= inv;
}

/* Decode: the heads of a group share their cached keys, so their queries go through the
 * cache together as one [group, T] score matrix per (sequence, kv head). */
size_t cpu_attention_decode_workspace(const AttnShape *s) {
    return sizeof(float) * (size_t)(s->H / s->Hkv) * s->T * (size_t)cpu_threads();
}

void cpu_attention_decode(const AttnShape *s, long kv_seq_stride, int len, const int *len_at, float *o,
                          const float *q, const float *k, const float *v, float *work) {
    (void)len_at; /* the CPU runs every step as it is called */
    attn_check_plain(s, "decode attention");
    const int group = s->H / s->Hkv, T = len;
    if (T < 1 || T > s->T) die("internal: decode attention over %d keys of a cache of %d", T, s->T);
#pragma omp parallel for schedule(dynamic)
    for (int bg = 0; bg < s->B * s->Hkv; bg++) {
        int b = bg / s->Hkv, g = bg % s->Hkv;
        float *P = work + (size_t)group * T * omp_get_thread_num();
        /* the group's query rows are consecutive heads of width Dk */
        const float *qg = q + (size_t)b * s->q_stride + (size_t)g * group * s->Dk;
        const float *kb = k + (size_t)b * kv_seq_stride + (size_t)g * s->Dk;
        const float *vb = v + (size_t)b * kv_seq_stride + (size_t)g * s->Dv;
        float *og = o + (size_t)b * s->o_stride + (size_t)g * group * s->Dv;
        cpu_gemm(false, true, group, T, s->Dk, s->scale, qg, s->Dk, kb, (int)s->k_stride, 0.0f, P, T);
        for (int i = 0; i < group; i++) softmax_row(P + (size_t)i * T, T);
        cpu_gemm(false, false, group, s->Dv, T, 1.0f, P, T, vb, (int)s->v_stride, 0.0f, og, s->Dv);
    }
}
