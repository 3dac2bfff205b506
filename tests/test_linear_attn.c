/* Linear attention core: gradients, chunk form == recurrent form, decode step, direct formula. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "core/backend.h"
#include "core/util.h"
#include "gradcheck.h"
#include "test.h"

/* One problem: inputs, the initial state, and the loss weights R (on o) and Rf (on the final
 * state), so L = sum(o * R) + sum(final * Rf) and the backward gets dout = R, dfinal = Rf. */
typedef struct {
    const Backend *be;
    ScanShape s;
    float *q, *k, *v, *s0, *R, *Rf;
    /* for the gradient check's loss: recurrent-form buffers */
    float *o, *fin, *saved, *work;
} LaCase;

static size_t nq(const ScanShape *s) { return (size_t)s->B * s->T * s->H * s->K; }
static size_t nv(const ScanShape *s) { return (size_t)s->B * s->T * s->H * s->V; }
static size_t ns(const ScanShape *s) { return (size_t)s->B * s->H * s->K * s->V; }

static LaCase la_case(int B, int T, int H, int K, int V, Rng *rng) {
    LaCase c;
    c.be = backend_cpu();
    c.s = (ScanShape){B, T, H, K, V, 1.0f / sqrtf((float)K), 0, false};
    c.q = new_normal(nq(&c.s), 1.0f, rng);
    c.k = new_normal(nq(&c.s), 1.0f, rng);
    c.v = new_normal(nv(&c.s), 1.0f, rng);
    c.s0 = new_normal(ns(&c.s), 1.0f, rng);
    c.R = new_normal(nv(&c.s), 1.0f, rng);
    c.Rf = new_normal(ns(&c.s), 1.0f, rng);
    c.o = new_zeros(nv(&c.s));
    c.fin = new_zeros(ns(&c.s));
    c.saved = new_zeros(c.be->linear_attn_saved(&c.s));
    c.work = xalloc_aligned(c.be->linear_attn_workspace(&c.s));
    return c;
}

/* Everything one form computes. */
typedef struct {
    float *o, *fin, *dq, *dk, *dv, *ds0;
} LaResult;

/* Forward and backward with the given chunk (0 = recurrent). with_s0 / with_dfin pass the case's
 * initial state / Rf, or NULL. Outputs start as garbage so a missed write shows. */
static LaResult run_form(const LaCase *c, int chunk, bool with_s0, bool with_dfin) {
    ScanShape s = c->s;
    s.chunk = chunk;
    Rng rng;
    rng_seed(&rng, 99);
    LaResult r = {new_normal(nv(&s), 1e3f, &rng), new_normal(ns(&s), 1e3f, &rng), new_normal(nq(&s), 1e3f, &rng),
                  new_normal(nq(&s), 1e3f, &rng), new_normal(nv(&s), 1e3f, &rng), new_normal(ns(&s), 1e3f, &rng)};
    float *saved = new_normal(c->be->linear_attn_saved(&s), 1e3f, &rng);
    float *work = xalloc_aligned(c->be->linear_attn_workspace(&s));
    c->be->linear_attn_forward(&s, r.o, r.fin, saved, c->q, c->k, c->v, with_s0 ? c->s0 : NULL, work);
    c->be->linear_attn_backward(&s, r.dq, r.dk, r.dv, r.ds0, with_dfin ? c->Rf : NULL, c->R, c->q, c->k, c->v,
                                saved, work);
    free(saved);
    free(work);
    return r;
}

/* max |a - b| / max |b|: the error relative to the tensor's scale (infinite for NaN) */
static double rel_diff(const float *a, const float *b, size_t n) { return max_rel_diff(a, b, n, 1e-30); }

/* Largest rel_diff over all six tensors; names the worst in *what. */
static double result_diff(const LaResult *a, const LaResult *b, const ScanShape *s, const char **what) {
    const char *names[6] = {"o", "final state", "dq", "dk", "dv", "dinitial_state"};
    const float *pa[6] = {a->o, a->fin, a->dq, a->dk, a->dv, a->ds0};
    const float *pb[6] = {b->o, b->fin, b->dq, b->dk, b->dv, b->ds0};
    size_t n[6] = {nv(s), ns(s), nq(s), nq(s), nv(s), ns(s)};
    double worst = 0;
    for (int i = 0; i < 6; i++) {
        double d = rel_diff(pa[i], pb[i], n[i]);
        if (!isfinite(d)) {
            *what = names[i];
            return d;
        }
        if (d > worst) {
            worst = d;
            *what = names[i];
        }
    }
    return worst;
}

/* ---- gradient of the recurrent form against finite differences ---- */

static double la_loss(void *p) {
    LaCase *c = p;
    c->be->linear_attn_forward(&c->s, c->o, c->fin, c->saved, c->q, c->k, c->v, c->s0, c->work);
    return dot_loss(c->o, c->R, nv(&c->s)) + dot_loss(c->fin, c->Rf, ns(&c->s));
}

TEST(test_linear_attn_recurrent_gradient) {
    Rng rng;
    rng_seed(&rng, 21);
    LaCase c = la_case(2, 9, 2, 5, 4, &rng);
    LaResult r = run_form(&c, 0, true, true);
    /* L is linear in any single coordinate (o and the state are bilinear in distinct inputs), so
     * the central difference is exact in exact arithmetic: a large step only shrinks the fp32
     * rounding relative to the difference. Measured: at most 4e-7 over the four inputs; 3e-6
     * leaves room for other compilers and is far below what a wrong term gives (checked below). */
    const float eps = 0.5f;
    const double tol = 3e-6;
    double eq = gradcheck(la_loss, &c, c.q, r.dq, nq(&c.s), 1000, eps, &rng);
    double ek = gradcheck(la_loss, &c, c.k, r.dk, nq(&c.s), 1000, eps, &rng);
    double ev = gradcheck(la_loss, &c, c.v, r.dv, nv(&c.s), 1000, eps, &rng);
    double es = gradcheck(la_loss, &c, c.s0, r.ds0, ns(&c.s), 1000, eps, &rng);
    CHECK(eq < tol, "dq relative error %.2e", eq);
    CHECK(ek < tol, "dk relative error %.2e", ek);
    CHECK(ev < tol, "dv relative error %.2e", ev);
    CHECK(es < tol, "dinitial_state relative error %.2e", es);
    /* the check can fail: dropping the final state's gradient (dfinal = NULL while the loss still
     * reads the final state) must show in dk, dv and dinitial_state */
    LaResult wrong = run_form(&c, 0, true, false);
    double wk = gradcheck(la_loss, &c, c.k, wrong.dk, nq(&c.s), 1000, eps, &rng);
    double ws = gradcheck(la_loss, &c, c.s0, wrong.ds0, ns(&c.s), 1000, eps, &rng);
    CHECK(wk > 100 * tol, "a dropped dfinal_state went unnoticed in dk (%.2e)", wk);
    CHECK(ws > 100 * tol, "a dropped dfinal_state went unnoticed in dinitial_state (%.2e)", ws);
}

/* ---- chunk form against the recurrent form ---- */

/* Both forms sum the same products in different orders (and OpenBLAS blocks its sums), so they
 * differ by fp32 rounding of sums over at most T terms. The error is taken relative to each
 * tensor's largest entry; the bounds are given at each call with what was measured. */
static void check_chunk_matches_recurrent(int B, int T, int H, int K, int V, const int *chunks, int n_chunks,
                                          double tol, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    LaCase c = la_case(B, T, H, K, V, &rng);
    LaResult ref = run_form(&c, 0, true, true);
    for (int i = 0; i < n_chunks; i++) {
        LaResult r = run_form(&c, chunks[i], true, true);
        const char *what = "";
        double d = result_diff(&r, &ref, &c.s, &what);
        CHECK(d <= tol, "B%d T%d H%d K%d V%d chunk %d: %s differs from the recurrent form by %.2e (tol %.1e)", B, T,
              H, K, V, chunks[i], what, d, tol);
    }
}

TEST(test_linear_attn_chunk_matches_recurrent) {
    const int chunks[] = {1, 3, 8, 16};
    const int lengths[] = {1, 7, 19, 40};
    for (int i = 0; i < 4; i++) {
        /* measured: at most 5e-7 (dk, T 40) */
        check_chunk_matches_recurrent(2, lengths[i], 3, 6, 5, chunks, 4, 2e-6, 30 + (unsigned)i);
        if (test_failed()) return;
    }
}

/* Sizes where OpenBLAS uses its blocked kernels (K, V, chunk of training size) and a partial
 * last chunk. */
TEST(test_linear_attn_chunk_matches_recurrent_at_model_sizes) {
    const int chunks[] = {64, 48};
    /* measured: at most 8e-7 (the final state, a sum of 200 outer products) */
    check_chunk_matches_recurrent(1, 200, 2, 32, 24, chunks, 2, 5e-6, 40);
}

/* NULL initial state means zero; NULL dfinal_state means zero; NULL final_state and
 * dinitial_state are simply not written. */
TEST(test_linear_attn_null_states_mean_zero) {
    Rng rng;
    rng_seed(&rng, 50);
    LaCase c = la_case(2, 11, 2, 4, 6, &rng);
    memset(c.s0, 0, sizeof(float) * ns(&c.s));
    memset(c.Rf, 0, sizeof(float) * ns(&c.s));
    const int chunks[] = {0, 4};
    for (int i = 0; i < 2; i++) {
        LaResult zero = run_form(&c, chunks[i], true, true), null = run_form(&c, chunks[i], false, false);
        const char *what = "";
        double d = result_diff(&null, &zero, &c.s, &what);
        /* the same arithmetic on the same numbers: bit-identical */
        CHECK(d == 0, "chunk %d: NULL states differ from zero states in %s (%.2e)", chunks[i], what, d);
        ScanShape s = c.s;
        s.chunk = chunks[i];
        float *saved = new_zeros(c.be->linear_attn_saved(&s)), *work = xalloc_aligned(c.be->linear_attn_workspace(&s));
        float *o = new_zeros(nv(&s)), *dq = new_zeros(nq(&s)), *dk = new_zeros(nq(&s)), *dv = new_zeros(nv(&s));
        c.be->linear_attn_forward(&s, o, NULL, saved, c.q, c.k, c.v, NULL, work);
        c.be->linear_attn_backward(&s, dq, dk, dv, NULL, NULL, c.R, c.q, c.k, c.v, saved, work);
        CHECK(rel_diff(o, zero.o, nv(&s)) == 0 && rel_diff(dq, zero.dq, nq(&s)) == 0 &&
                  rel_diff(dk, zero.dk, nq(&s)) == 0 && rel_diff(dv, zero.dv, nv(&s)) == 0,
              "chunk %d: results change when final_state / dinitial_state are NULL", chunks[i]);
    }
}

/* ---- decode step ---- */

TEST(test_linear_attn_step_matches_recurrent_at_every_position) {
    Rng rng;
    rng_seed(&rng, 60);
    const int B = 2, T = 19, H = 3, K = 6, V = 5;
    LaCase c = la_case(B, T, H, K, V, &rng);
    c.be->linear_attn_forward(&c.s, c.o, c.fin, c.saved, c.q, c.k, c.v, c.s0, c.work);
    float *state = new_zeros(ns(&c.s));
    memcpy(state, c.s0, sizeof(float) * ns(&c.s));
    float *qt = new_zeros((size_t)B * H * K), *kt = new_zeros((size_t)B * H * K), *vt = new_zeros((size_t)B * H * V),
          *ot = new_zeros((size_t)B * H * V), *oref = new_zeros((size_t)B * H * V);
    /* both run the same one-token update: measured bit-identical; the bound only leaves room for
     * a compiler contracting the two inlined copies differently */
    const double tol = 1e-6;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) { /* token (b, t) holds H heads side by side */
            size_t src = ((size_t)b * T + t) * H;
            memcpy(qt + (size_t)b * H * K, c.q + src * K, sizeof(float) * H * K);
            memcpy(kt + (size_t)b * H * K, c.k + src * K, sizeof(float) * H * K);
            memcpy(vt + (size_t)b * H * V, c.v + src * V, sizeof(float) * H * V);
            memcpy(oref + (size_t)b * H * V, c.o + src * V, sizeof(float) * H * V);
        }
        c.be->linear_attn_step(&c.s, state, ot, qt, kt, vt);
        double d = rel_diff(ot, oref, (size_t)B * H * V);
        CHECK(d <= tol, "step output at t=%d differs from the recurrent forward by %.2e", t, d);
    }
    double d = rel_diff(state, c.fin, ns(&c.s));
    CHECK(d <= tol, "state after %d steps differs from the final state by %.2e", T, d);
}

/* ---- forward against the definition ---- */

TEST(test_linear_attn_forward_matches_direct_formula) {
    Rng rng;
    rng_seed(&rng, 70);
    const int B = 2, T = 40, H = 3, K = 6, V = 5;
    LaCase c = la_case(B, T, H, K, V, &rng);
    const ScanShape *s = &c.s;
    /* o_t = scale (S0^T q_t + sum_{u <= t} (q_t . k_u) v_u), final = S0 + sum_u k_u v_u^T, in
     * double, O(T^2) per head; also the strictly causal variant (u < t) to show the check sees
     * an off-by-one in the mask */
    double *ref = xmalloc(sizeof(double) * nv(s)), *strict = xmalloc(sizeof(double) * nv(s));
    double *fin = xmalloc(sizeof(double) * ns(s));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *S0 = c.s0 + ((size_t)b * H + h) * K * V;
            for (int t = 0; t < T; t++) {
                const float *qt = c.q + (((size_t)b * T + t) * H + h) * K;
                for (int j = 0; j < V; j++) {
                    double acc = 0, diag = 0;
                    for (int i = 0; i < K; i++) acc += (double)S0[(size_t)i * V + j] * qt[i];
                    for (int u = 0; u <= t; u++) {
                        const float *ku = c.k + (((size_t)b * T + u) * H + h) * K;
                        double dot = 0;
                        for (int i = 0; i < K; i++) dot += (double)qt[i] * ku[i];
                        double term = dot * c.v[(((size_t)b * T + u) * H + h) * V + j];
                        acc += term;
                        if (u == t) diag = term;
                    }
                    size_t at = (((size_t)b * T + t) * H + h) * V + j;
                    ref[at] = s->scale * acc;
                    strict[at] = s->scale * (acc - diag);
                }
            }
            for (int i = 0; i < K; i++)
                for (int j = 0; j < V; j++) {
                    double acc = S0[(size_t)i * V + j];
                    for (int u = 0; u < T; u++)
                        acc += (double)c.k[(((size_t)b * T + u) * H + h) * K + i] *
                               c.v[(((size_t)b * T + u) * H + h) * V + j];
                    fin[((size_t)b * H + h) * K * V + (size_t)i * V + j] = acc;
                }
        }
    /* fp32 against double: rounding of sums over up to T + K terms, measured at most 1.5e-7 of
     * the largest entry */
    const double tol = 1e-6;
    const int chunks[] = {0, 8, 16, 64};
    for (int ci = 0; ci < 4; ci++) {
        LaResult r = run_form(&c, chunks[ci], true, true);
        double md = 0, mr = 0, ms = 0, fd = 0, fr = 0;
        for (size_t i = 0; i < nv(s); i++) {
            md = worst_of(md, fabs(r.o[i] - ref[i]));
            ms = worst_of(ms, fabs(r.o[i] - strict[i]));
            mr = worst_of(mr, fabs(ref[i]));
        }
        for (size_t i = 0; i < ns(s); i++) {
            fd = worst_of(fd, fabs(r.fin[i] - fin[i]));
            fr = worst_of(fr, fabs(fin[i]));
        }
        CHECK(md <= tol * mr, "chunk %d: o differs from the formula by %.2e of its scale", chunks[ci], md / mr);
        CHECK(fd <= tol * fr, "chunk %d: final state differs from the formula by %.2e", chunks[ci], fd / fr);
        CHECK(ms > 1000 * tol * mr, "chunk %d: the check cannot tell the diagonal in from out (%.2e)", chunks[ci],
              ms / mr);
    }
}

/* ---- determinism ---- */

/* Each (batch, head) is one task done by one thread, so the results are bit-identical for any
 * thread count, not only for a fixed one. */
TEST(test_linear_attn_independent_of_thread_count) {
    Rng rng;
    rng_seed(&rng, 80);
    LaCase c = la_case(2, 37, 3, 8, 12, &rng);
    const int chunks[] = {0, 16};
    int threads = omp_get_max_threads();
    for (int i = 0; i < 2; i++) {
        omp_set_num_threads(1);
        LaResult one = run_form(&c, chunks[i], true, true);
        omp_set_num_threads(threads > 1 ? threads : 2);
        LaResult many = run_form(&c, chunks[i], true, true);
        LaResult again = run_form(&c, chunks[i], true, true);
        const char *what = "";
        double d = result_diff(&many, &one, &c.s, &what);
        CHECK(d == 0, "chunk %d: %s changes with the thread count (%.2e)", chunks[i], what, d);
        d = result_diff(&again, &many, &c.s, &what);
        CHECK(d == 0, "chunk %d: %s changes between two identical runs (%.2e)", chunks[i], what, d);
    }
    omp_set_num_threads(threads);
}
