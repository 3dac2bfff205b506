/* The gated delta rule core (gdn: per-head decay, kda: per-channel decay): the recurrent form
 * against a double-precision transcription of the spec and finite differences; the chunkwise
 * form against the recurrent one (outputs, final state, every gradient) over chunk sizes and
 * lengths that do not divide; the decode step against the full forward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/util.h"
#include "delta_inputs.h"
#include "gradcheck.h"
#include "test.h"

/* ---- the recurrence, transcribed from the spec in double: S_t = (I - beta k k^T) D S + beta k v^T ---- */
TEST(test_delta_rule_recurrent_matches_the_spec_in_double) {
    for (int channel = 0; channel < 2; channel++) {
        Rng rng;
        rng_seed(&rng, 40 + channel);
        DeltaInputs in = delta_inputs(2, 9, 2, 5, 3, channel, 1.0f, &rng);
        DeltaOutputs r = delta_run(&in, 0, NULL, NULL);
        const ScanShape *s = &in.s;
        int K = s->K, V = s->V;
        double S[5][3], Sn[5][3];
        for (int b = 0; b < s->B; b++)
            for (int h = 0; h < s->H; h++) {
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) S[i][j] = in.h0[(((size_t)b * s->H + h) * K + i) * V + j];
                for (int t = 0; t < s->T; t++) {
                    size_t row = ((size_t)b * s->T + t) * s->H + h;
                    const float *q = in.q + row * K, *k = in.k + row * K, *v = in.v + row * V;
                    double beta = in.beta[row];
                    for (int i = 0; i < K; i++) {
                        for (int j = 0; j < V; j++) {
                            double acc = beta * k[i] * v[j];
                            for (int m = 0; m < K; m++) {
                                double decay = exp(channel ? in.g[row * K + m] : in.g[row]);
                                double trans = (i == m) - beta * k[i] * k[m];
                                acc += trans * decay * S[m][j];
                            }
                            Sn[i][j] = acc;
                        }
                    }
                    memcpy(S, Sn, sizeof S);
                    for (int j = 0; j < V; j++) {
                        double o = 0;
                        for (int i = 0; i < K; i++) o += S[i][j] * q[i];
                        o *= s->scale;
                        CHECK_NEAR(r.o[row * V + j], o, 1e-5, "output");
                    }
                }
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++)
                        CHECK_NEAR(r.final[(((size_t)b * s->H + h) * K + i) * V + j], S[i][j], 1e-5, "final state");
            }
        delta_free(&r);
        delta_inputs_free(&in);
    }
}

/* ---- finite differences of the recurrent form ---- */

typedef struct {
    DeltaInputs *in;
    float *R, *Rf; /* loss = sum(o R) + sum(final Rf) */
    DeltaOutputs scratch;
} DeltaLoss;

static double delta_loss(void *p) {
    DeltaLoss *c = p;
    const Backend *be = backend_cpu();
    DeltaInputs *in = c->in;
    be->delta_rule_forward(&in->s, c->scratch.o, c->scratch.final, NULL, in->q, in->k, in->v, in->g, in->beta, in->h0,
                           c->scratch.work);
    return dot_loss(c->scratch.o, c->R, in->nv) + dot_loss(c->scratch.final, c->Rf, in->ns);
}

static void check_recurrent_gradients(bool channel, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    DeltaInputs in = delta_inputs(2, 6, 2, 4, 3, channel, 1.0f, &rng);
    float *R = new_normal(in.nv, 1.0f, &rng), *Rf = new_normal(in.ns, 1.0f, &rng);
    DeltaOutputs r = delta_run(&in, 0, R, Rf);
    DeltaLoss c = {&in, R, Rf, delta_run(&in, 0, NULL, NULL)};
    const GradInput wrt[] = {{"q", in.q, r.dq, in.nqk}, {"k", in.k, r.dk, in.nqk},
                             {"v", in.v, r.dv, in.nv},   {"g", in.g, r.dg, in.ng},
                             {"beta", in.beta, r.dbeta, in.nb}, {"initial_state", in.h0, r.dh0, in.ns}};
    double e;
    int bad = first_wrong_gradient(delta_loss, &c, wrt, sizeof wrt / sizeof wrt[0], 300, 1e-2f, &rng, &e);
    CHECK(bad < 0, "%s recurrent d%s relative error %.2e", channel ? "kda" : "gdn", wrt[bad].name, e);
    delta_free(&r);
    delta_free(&c.scratch);
    delta_inputs_free(&in);
    free(R);
    free(Rf);
}

TEST(test_delta_rule_recurrent_gradient_kda) { check_recurrent_gradients(true, 50); }
TEST(test_delta_rule_recurrent_gradient_gdn) { check_recurrent_gradients(false, 51); }

/* ---- chunkwise == recurrent ---- */

static void check_chunk_matches_recurrent(bool channel, int T, int chunk, float decay_scale, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    DeltaInputs in = delta_inputs(2, T, 3, 8, 6, channel, decay_scale, &rng);
    float *dout = new_normal(in.nv, 1.0f, &rng), *dfinal = new_normal(in.ns, 1.0f, &rng);
    DeltaOutputs a = delta_run(&in, 0, dout, dfinal), b = delta_run(&in, chunk, dout, dfinal);
    /* fp32, different summation orders: agreement to a few ulps of the largest value */
    const double tol = 2e-6; /* observed: up to 2.4e-7 */
    const TensorPair cmp[] = {{"o", a.o, b.o, in.nv},             {"final_state", a.final, b.final, in.ns},
                              {"dq", a.dq, b.dq, in.nqk},         {"dk", a.dk, b.dk, in.nqk},
                              {"dv", a.dv, b.dv, in.nv},          {"dg", a.dg, b.dg, in.ng},
                              {"dbeta", a.dbeta, b.dbeta, in.nb}, {"dinitial_state", a.dh0, b.dh0, in.ns}};
    double d;
    int bad = first_differing(cmp, sizeof cmp / sizeof cmp[0], 1.0, tol, &d);
    CHECK(bad < 0, "%s T=%d chunk=%d decay x%g: %s differs by %.2e", channel ? "kda" : "gdn", T, chunk, decay_scale,
          cmp[bad].name, d);
    delta_free(&a);
    delta_free(&b);
    delta_inputs_free(&in);
    free(dout);
    free(dfinal);
}

/* Chunks above 16 rows also exercise kda's sub-chunk factorization (matmuls between sub-chunks). */
TEST(test_kda_chunk_matches_recurrent) {
    int Ts[] = {1, 7, 19, 40, 75}, chunks[] = {1, 3, 8, 16, 37, 64};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 6; j++) check_chunk_matches_recurrent(true, Ts[i], chunks[j], 1.0f, 60 + 6 * i + j);
}

TEST(test_gdn_chunk_matches_recurrent) {
    int Ts[] = {1, 7, 19, 40, 75}, chunks[] = {1, 3, 8, 16, 37, 64};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 6; j++) check_chunk_matches_recurrent(false, Ts[i], chunks[j], 1.0f, 100 + 6 * i + j);
}

/* Decays of up to ~40 per step: exp(-b_j) of a naive factorization would overflow within a few
 * rows; pairwise differences keep every factor <= 1. */
TEST(test_delta_rule_chunk_is_stable_under_strong_decay) {
    check_chunk_matches_recurrent(true, 40, 16, 20.0f, 140);
    check_chunk_matches_recurrent(false, 40, 16, 20.0f, 141);
    check_chunk_matches_recurrent(true, 75, 64, 20.0f, 142);
}

/* Decays of ~0.05 per step: every chunk, 64 rows included, factors through its start (one
 * matmul for A' and M); and ~0.45 per step: chunks of 64 straddle the 30-nat limit, so some
 * chunks of one sequence factor and others take the sub-chunk path. */
TEST(test_delta_rule_chunk_matches_recurrent_on_both_sides_of_the_factor_limit) {
    int Ts[] = {64, 75, 130}, chunks[] = {16, 37, 64};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            check_chunk_matches_recurrent(true, Ts[i], chunks[j], 0.05f, 150 + 3 * i + j);
            check_chunk_matches_recurrent(false, Ts[i], chunks[j], 0.05f, 160 + 3 * i + j);
            check_chunk_matches_recurrent(true, Ts[i], chunks[j], 0.55f, 170 + 3 * i + j);
            check_chunk_matches_recurrent(false, Ts[i], chunks[j], 0.55f, 180 + 3 * i + j);
        }
}

/* The blocked inverse of a unit lower-triangular matrix against L T = I, at sizes below, at and
 * above the 16-row direct block, including odd splits: zeros above the diagonal inside the
 * diagonal blocks, and nothing right of them written (the 7s stay). */
TEST(test_unit_lower_inverse) {
    int sizes[] = {1, 2, 5, 16, 17, 37, 64, 100};
    Rng rng;
    rng_seed(&rng, 190);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si], ld = n + 3;
        float *L = new_zeros((size_t)n * ld), *T = new_zeros((size_t)n * ld), *tmp = new_zeros((size_t)n * n);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                float x = j < r ? 0.3f * (float)rng_normal(&rng) / sqrtf((float)n) : 7.0f; /* 7: ignored */
                L[(size_t)r * ld + j] = x;
                T[(size_t)r * ld + j] = x;
            }
        cpu_unit_lower_inverse(T, n, ld, tmp);
        double worst = 0;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++) {
                double acc = 0; /* (L T)_rc with L's unit diagonal and T's zeros above the diagonal */
                for (int j = c; j <= r; j++) acc += (j == r ? 1.0 : L[(size_t)r * ld + j]) * T[(size_t)j * ld + c];
                worst = worst_of(worst, fabs(acc - (r == c ? 1.0 : 0.0)));
                float above = T[(size_t)r * ld + c];
                if (c > r && c < triangle_block_end(r, n))
                    CHECK(above == 0.0f, "n=%d: T[%d,%d] above the diagonal is not 0", n, r, c);
                else if (c > r)
                    CHECK(above == 7.0f, "n=%d: T[%d,%d] right of the diagonal blocks was written", n, r, c);
            }
        CHECK(worst < 1e-5, "n=%d: |L T - I| = %.2e", n, worst);
        free(L);
        free(T);
        free(tmp);
    }
}

/* The triangular products against plain sums in double: L B and L^T B with L lower triangular,
 * and the lower part of A B, whose entries right of the diagonal blocks must be left as they
 * were. L's entries right of the 16-row diagonal blocks must never be read: they hold a guard
 * that poisons any result it reaches, NaN in one pass and 1e30 in another (a product that read
 * them would be NaN or off by ~1e30; the comparison sees both). */
TEST(test_triangular_products) {
    int sizes[] = {1, 7, 16, 17, 40, 64, 70};
    const int N = 5, ld = 75;
    Rng rng;
    rng_seed(&rng, 191);
    for (size_t pass = 0; pass < 2 * sizeof sizes / sizeof sizes[0]; pass++) {
        int n = sizes[pass / 2];
        float guard = pass % 2 ? 1e30f : NAN;
        float *L = new_zeros((size_t)n * ld), *B = new_zeros((size_t)(n + N) * ld), *C = new_zeros((size_t)n * ld);
        float *C0 = new_zeros((size_t)n * ld);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < ld; j++) {
                L[(size_t)r * ld + j] = j <= r ? (float)rng_normal(&rng) : j < triangle_block_end(r, n) ? 0.0f : guard;
                B[(size_t)r * ld + j] = (float)rng_normal(&rng);
                C0[(size_t)r * ld + j] = (float)rng_normal(&rng);
            }
        for (size_t i = (size_t)n * ld; i < (size_t)(n + N) * ld; i++) B[i] = (float)rng_normal(&rng);
        for (int trans = 0; trans < 2; trans++) {
            memcpy(C, C0, sizeof(float) * (size_t)n * ld);
            cpu_gemm_lower_left(trans, n, N, 0.5f, L, ld, B, ld, 1.0f, C, ld, NULL);
            double worst = 0;
            for (int r = 0; r < n; r++)
                for (int x = 0; x < N; x++) {
                    double acc = C0[(size_t)r * ld + x];
                    for (int j = 0; j < n; j++) {
                        int lr = trans ? j : r, lc = trans ? r : j;
                        if (lc <= lr) acc += 0.5 * L[(size_t)lr * ld + lc] * B[(size_t)j * ld + x];
                    }
                    worst = worst_of(worst, fabs(acc - C[(size_t)r * ld + x]));
                }
            CHECK(worst < 1e-4, "n=%d trans=%d: |C - ref| = %.2e", n, trans, worst);
        }
        /* lower part of A B with A = B's first N columns (n x N) and B's rows 0..N-1 as N x n */
        memcpy(C, C0, sizeof(float) * (size_t)n * ld);
        cpu_gemm_lower_result(n, N, 2.0f, B, ld, B, ld, 0.0f, C, ld, NULL);
        double worst = 0;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++) {
                double acc = 0;
                for (int j = 0; j < N; j++) acc += 2.0 * B[(size_t)r * ld + j] * B[(size_t)j * ld + c];
                if (c <= r) worst = worst_of(worst, fabs(acc - C[(size_t)r * ld + c]));
                else if (c >= triangle_block_end(r, n))
                    CHECK(C[(size_t)r * ld + c] == C0[(size_t)r * ld + c], "n=%d: C[%d,%d] was written", n, r, c);
            }
        CHECK(worst < 1e-4, "n=%d: lower part of A B off by %.2e", n, worst);
        free(L);
        free(B);
        free(C);
        free(C0);
    }
}

/* ---- decode step == full forward ---- */

TEST(test_delta_rule_step_matches_forward) {
    for (int channel = 0; channel < 2; channel++) {
        Rng rng;
        rng_seed(&rng, 110 + channel);
        DeltaInputs in = delta_inputs(2, 11, 3, 8, 5, channel, 1.0f, &rng);
        DeltaOutputs full = delta_run(&in, 0, NULL, NULL);
        const ScanShape *s = &in.s;
        size_t HK = (size_t)s->H * s->K, HV = (size_t)s->H * s->V, HG = (size_t)s->H * (channel ? s->K : 1);
        float *state = new_zeros(in.ns), *o = new_zeros(s->B * HV);
        memcpy(state, in.h0, sizeof(float) * in.ns);
        float *q = new_zeros(s->B * HK), *k = new_zeros(s->B * HK), *v = new_zeros(s->B * HV);
        float *g = new_zeros(s->B * HG), *beta = new_zeros((size_t)s->B * s->H);
        for (int t = 0; t < s->T; t++) {
            gather_token(q, in.q, s->B, s->T, HK, t);
            gather_token(k, in.k, s->B, s->T, HK, t);
            gather_token(v, in.v, s->B, s->T, HV, t);
            gather_token(g, in.g, s->B, s->T, HG, t);
            gather_token(beta, in.beta, s->B, s->T, s->H, t);
            backend_cpu()->delta_rule_step(s, state, o, q, k, v, g, beta);
            for (int b = 0; b < s->B; b++)
                for (int x = 0; x < s->H * s->V; x++)
                    CHECK(o[(size_t)b * s->H * s->V + x] == full.o[((size_t)b * s->T + t) * s->H * s->V + x],
                          "step output differs at t=%d", t);
        }
        CHECK(memcmp(state, full.final, sizeof(float) * in.ns) == 0, "step state differs from the final state");
        delta_free(&full);
        delta_inputs_free(&in);
    }
}
