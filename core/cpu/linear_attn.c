/* Linear attention core on the CPU: recurrent reference, chunkwise-parallel form and decode step. */

/* The core has no feature map, normalizer or decay (the layer applies those). Per (b, h):
 *   S_t = S_{t-1} + k_t v_t^T (S in R^{K x V}, S_0 = initial_state or 0),  o_t = scale S_t^T q_t.
 * Two forms, chosen by s->chunk:
 * - chunk == 0, recurrent: a token at a time. It is the reference the chunk form is tested
 *   against and the same update the decode step runs, so it stays plain loops with V innermost.
 * - chunk == C > 0, chunkwise: with Q, K, V the rows of one chunk and S0 its start state,
 *   O = scale (Q S0 + tril(Q K^T) V) and S_end = S0 + K^T V, all OpenBLAS matmuls; those with a
 *   triangular factor by 16-row blocks (triangular.c), and no A B^T products (OpenBLAS runs them
 *   at ~60% of the speed of A B here): the operands are transposed first.
 * Each (batch, head) pair is one task owned by one thread for its whole sequence, so the result
 * does not depend on the schedule or the thread count. Matmuls are single-threaded OpenBLAS calls
 * inside the parallel region; each thread takes its own slice of `work`. */
#include <string.h>

#include "core/util.h"
#include "cpu_ops.h"

static int n_chunks(const ScanShape *s) { return s->chunk > 0 ? (s->T + s->chunk - 1) / s->chunk : 0; }

static size_t state_floats(const ScanShape *s) { return (size_t)s->K * s->V; }

/* Chunk form: the state at the start of every chunk, [B, H, n_chunks, K, V], so the backward can
 * run the chunks in any order without a forward sweep. Recurrent form: only S0, [B, H, K, V];
 * its backward recomputes S_t forward from S0 (no subtraction of updates, so no drift). */
size_t cpu_linear_attn_saved(const ScanShape *s) {
    size_t per_head = s->chunk > 0 ? (size_t)n_chunks(s) * state_floats(s) : state_floats(s);
    return (size_t)s->B * s->H * per_head;
}

/* Rows of the largest chunk (a chunk longer than the sequence is the sequence). */
static int tile_rows(const ScanShape *s) { return s->chunk > 0 ? min_int(s->chunk, max_int(s->T, 1)) : 0; }

/* Per thread: one K x V state (S forward, dS backward) and, in the chunk form, two score tiles
 * (A = scale tril(Q K^T), and in the backward dA = scale tril(dO V^T)) and the transposes K^T,
 * V^T [K or V, C], S0^T and dS^T [V, K]. */
static size_t per_thread_floats(const ScanShape *s) {
    size_t c = (size_t)tile_rows(s);
    return state_floats(s) + 2 * c * c + c * ((size_t)s->K + (size_t)s->V) + 2 * state_floats(s);
}

typedef struct {
    float *S, *A, *dA, *kT, *vT, *s0T, *dsT;
} Tiles;

static Tiles thread_tiles(const ScanShape *s, float *work) {
    size_t c = (size_t)tile_rows(s), KV = state_floats(s);
    Tiles t;
    t.S = work + per_thread_floats(s) * (size_t)omp_get_thread_num();
    t.A = t.S + KV;
    t.dA = t.A + c * c;
    t.kT = t.dA + c * c;
    t.vT = t.kT + c * (size_t)s->K;
    t.s0T = t.vT + c * (size_t)s->V;
    t.dsT = t.s0T + KV;
    return t;
}

size_t cpu_linear_attn_workspace(const ScanShape *s) {
    return sizeof(float) * per_thread_floats(s) * (size_t)cpu_threads();
}

/* The one-token update shared by the recurrent forward and the decode step, so the two agree
 * bit for bit: S += k v^T, then o = scale S^T q (rows of S in order, V innermost). */
static inline void token_update(float *restrict S, float *restrict o, const float *restrict q,
                                const float *restrict k, const float *restrict v, int K, int V, float scale) {
    for (int j = 0; j < V; j++) o[j] = 0.0f;
    for (int i = 0; i < K; i++) {
        float *restrict row = S + (size_t)i * V;
        float ki = k[i], qi = q[i];
#pragma omp simd
        for (int j = 0; j < V; j++) {
            row[j] += ki * v[j];
            o[j] += qi * row[j];
        }
    }
#pragma omp simd
    for (int j = 0; j < V; j++) o[j] *= scale;
}

/* Zeroes the strictly upper triangle of an n x n row-major tile inside its diagonal blocks: the
 * causal mask, diagonal kept (the triangular products never read right of those blocks). */
static void causal_mask(float *A, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1, end = triangle_block_end(i, n); j < end; j++) A[(size_t)i * n + j] = 0.0f;
}

/* S = head bh's state from src ([B, H, K, V]), or zero when src is NULL (an optional argument). */
static void load_or_zero(float *S, const float *src, size_t bh, size_t n) {
    if (src) memcpy(S, src + bh * n, sizeof(float) * n);
    else memset(S, 0, sizeof(float) * n);
}

void cpu_linear_attn_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                             const float *k, const float *v, const float *initial_state, float *work) {
    const int B = s->B, T = s->T, H = s->H, K = s->K, V = s->V, C = s->chunk, NC = n_chunks(s);
    const size_t KV = state_floats(s);
    const long qs = (long)H * K, vs = (long)H * V; /* row strides between tokens of one head */
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        Tiles w = thread_tiles(s, work);
        float *S = w.S;
        const float *qb = q + (size_t)b * T * qs + (size_t)h * K, *kb = k + (size_t)b * T * qs + (size_t)h * K;
        const float *vb = v + (size_t)b * T * vs + (size_t)h * V;
        float *ob = o + (size_t)b * T * vs + (size_t)h * V;
        load_or_zero(S, initial_state, (size_t)bh, KV);
        if (C == 0) {
            memcpy(saved + (size_t)bh * KV, S, sizeof(float) * KV);
            for (int t = 0; t < T; t++)
                token_update(S, ob + (size_t)t * vs, qb + (size_t)t * qs, kb + (size_t)t * qs, vb + (size_t)t * vs,
                             K, V, s->scale);
        } else {
            float *A = w.A;
            for (int c = 0; c < NC; c++) {
                int t0 = c * C, n = min_int(C, T - t0);
                const float *Q = qb + (size_t)t0 * qs, *Kc = kb + (size_t)t0 * qs, *Vc = vb + (size_t)t0 * vs;
                float *O = ob + (size_t)t0 * vs;
                memcpy(saved + ((size_t)bh * NC + c) * KV, S, sizeof(float) * KV);
                /* O = scale Q S0: the part of the past before this chunk */
                cpu_gemm(false, false, n, V, K, s->scale, Q, (int)qs, S, V, 0.0f, O, (int)vs);
                /* O += tril(scale Q K^T) V: the chunk's own tokens, each seeing itself and earlier */
                cpu_transpose(w.kT, n, Kc, (int)qs, n, K);
                cpu_gemm_lower_result(n, K, s->scale, Q, (int)qs, w.kT, n, 0.0f, A, n, NULL);
                causal_mask(A, n);
                cpu_gemm_lower_left(false, n, V, 1.0f, A, n, Vc, (int)vs, 1.0f, O, (int)vs, NULL);
                /* S_end = S0 + K^T V */
                cpu_gemm(true, false, K, V, n, 1.0f, Kc, (int)qs, Vc, (int)vs, 1.0f, S, V);
            }
        }
        if (final_state) memcpy(final_state + (size_t)bh * KV, S, sizeof(float) * KV);
    }
}

/* Backward. Write dS_t = dL/dS_t counting every path through later states. S_t is read by o_t
 * and passed on unchanged to S_{t+1}, so walking t = T..1 from dS = dS_final:
 *   dS_t = dS_{t+1} + scale q_t do_t^T   (dS_{T+1} = dS_final),
 * and since S_t = S_{t-1} + k_t v_t^T and o_t = scale S_t^T q_t:
 *   dk_t = dS_t v_t,  dv_t = dS_t^T k_t,  dq_t = scale S_t do_t,  dS_0 = dS_1.
 * dq needs S_t in forward order, so the recurrent backward runs one forward sweep from the saved
 * S0 for dq and one reverse sweep for dk, dv and dS_0 (no storage of every S_t, no subtraction).
 * Chunk form: the same rule summed over a chunk's rows. Chunks in reverse, dS = the gradient of
 * the chunk's end state, A = scale tril(Q K^T), dA = scale tril(dO V^T):
 *   dQ  = scale dO S0^T + dA K     (through Q S0 and through A)
 *   dK  = V dS^T + dA^T Q          (through S_end = S0 + K^T V and through A)
 *   dV  = K dS + A^T dO            (through S_end and through A V)
 *   dS0 = dS + scale Q^T dO        (S0 passes to S_end unchanged and is read by Q S0) */
void cpu_linear_attn_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,
                              const float *dfinal_state, const float *dout, const float *q, const float *k,
                              const float *v, const float *saved, float *work) {
    const int B = s->B, T = s->T, H = s->H, K = s->K, V = s->V, C = s->chunk, NC = n_chunks(s);
    const size_t KV = state_floats(s);
    const long qs = (long)H * K, vs = (long)H * V;
    const float scale = s->scale;
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        Tiles w = thread_tiles(s, work);
        float *dS = w.S;
        size_t qo = (size_t)b * T * qs + (size_t)h * K, vo = (size_t)b * T * vs + (size_t)h * V;
        const float *qb = q + qo, *kb = k + qo, *vb = v + vo, *dob = dout + vo;
        float *dqb = dq + qo, *dkb = dk + qo, *dvb = dv + vo;
        if (C == 0) {
            /* forward sweep: S_t from S0 again (dS's buffer holds S for now), dq_t = scale S_t do_t */
            float *S = dS;
            memcpy(S, saved + (size_t)bh * KV, sizeof(float) * KV);
            for (int t = 0; t < T; t++) {
                const float *kt = kb + (size_t)t * qs, *vt = vb + (size_t)t * vs, *dot = dob + (size_t)t * vs;
                float *dqt = dqb + (size_t)t * qs;
                for (int i = 0; i < K; i++) {
                    float *row = S + (size_t)i * V, ki = kt[i], acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int j = 0; j < V; j++) {
                        row[j] += ki * vt[j];
                        acc += row[j] * dot[j];
                    }
                    dqt[i] = scale * acc;
                }
            }
            /* reverse sweep */
            load_or_zero(dS, dfinal_state, (size_t)bh, KV);
            for (int t = T - 1; t >= 0; t--) {
                const float *qt = qb + (size_t)t * qs, *kt = kb + (size_t)t * qs, *vt = vb + (size_t)t * vs;
                const float *dot = dob + (size_t)t * vs;
                float *dkt = dkb + (size_t)t * qs, *dvt = dvb + (size_t)t * vs;
                for (int j = 0; j < V; j++) dvt[j] = 0.0f;
                for (int i = 0; i < K; i++) {
                    float *row = dS + (size_t)i * V, sqi = scale * qt[i], ki = kt[i], acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int j = 0; j < V; j++) {
                        row[j] += sqi * dot[j];
                        acc += row[j] * vt[j];
                        dvt[j] += ki * row[j];
                    }
                    dkt[i] = acc;
                }
            }
        } else {
            float *A = w.A, *dA = w.dA;
            load_or_zero(dS, dfinal_state, (size_t)bh, KV);
            for (int c = NC - 1; c >= 0; c--) {
                int t0 = c * C, n = min_int(C, T - t0);
                const float *Q = qb + (size_t)t0 * qs, *Kc = kb + (size_t)t0 * qs, *Vc = vb + (size_t)t0 * vs;
                const float *dO = dob + (size_t)t0 * vs, *S0 = saved + ((size_t)bh * NC + c) * KV;
                float *dQ = dqb + (size_t)t0 * qs, *dK = dkb + (size_t)t0 * qs, *dV = dvb + (size_t)t0 * vs;
                cpu_transpose(w.kT, n, Kc, (int)qs, n, K);
                cpu_transpose(w.vT, n, Vc, (int)vs, n, V);
                cpu_transpose(w.s0T, K, S0, V, K, V);
                cpu_transpose(w.dsT, K, dS, V, K, V);
                cpu_gemm_lower_result(n, K, scale, Q, (int)qs, w.kT, n, 0.0f, A, n, NULL);
                causal_mask(A, n);
                cpu_gemm_lower_result(n, V, scale, dO, (int)vs, w.vT, n, 0.0f, dA, n, NULL);
                causal_mask(dA, n);
                cpu_gemm(false, false, n, K, V, scale, dO, (int)vs, w.s0T, K, 0.0f, dQ, (int)qs);
                cpu_gemm_lower_left(false, n, K, 1.0f, dA, n, Kc, (int)qs, 1.0f, dQ, (int)qs, NULL);
                cpu_gemm(false, false, n, K, V, 1.0f, Vc, (int)vs, w.dsT, K, 0.0f, dK, (int)qs);
                cpu_gemm_lower_left(true, n, K, 1.0f, dA, n, Q, (int)qs, 1.0f, dK, (int)qs, NULL);
                cpu_gemm(false, false, n, V, K, 1.0f, Kc, (int)qs, dS, V, 0.0f, dV, (int)vs);
                cpu_gemm_lower_left(true, n, V, 1.0f, A, n, dO, (int)vs, 1.0f, dV, (int)vs, NULL);
                /* only now: dK and dV above needed the end state's gradient */
                cpu_gemm(true, false, K, V, n, scale, Q, (int)qs, dO, (int)vs, 1.0f, dS, V);
            }
        }
        if (dinitial_state) memcpy(dinitial_state + (size_t)bh * KV, dS, sizeof(float) * KV);
    }
}

void cpu_linear_attn_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                          const float *v) {
    const int BH = s->B * s->H, K = s->K, V = s->V;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < BH; bh++)
        token_update(state + (size_t)bh * K * V, o + (size_t)bh * V, q + (size_t)bh * K, k + (size_t)bh * K,
                     v + (size_t)bh * V, K, V, s->scale);
}
