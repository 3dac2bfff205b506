/* Inputs and runs of the gated delta rule core for the tests (see delta_inputs.h). */
#include "delta_inputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "gradcheck.h"

void unit_rows(float *x, size_t rows, int D) {
    for (size_t r = 0; r < rows; r++) {
        double n = 0;
        for (int d = 0; d < D; d++) n += (double)x[r * D + d] * x[r * D + d];
        for (int d = 0; d < D; d++) x[r * D + d] = (float)(x[r * D + d] / sqrt(n + 1e-6));
    }
}

float *new_log_decays(size_t n, float scale, Rng *rng) {
    float *g = new_zeros(n);
    for (size_t i = 0; i < n; i++) g[i] = -scale * (float)log1p(exp(rng_normal(rng)));
    return g;
}

DeltaInputs delta_inputs(int B, int T, int H, int K, int V, bool channel, float decay_scale, Rng *rng) {
    DeltaInputs in;
    in.s = (ScanShape){B, T, H, K, V, 1.0f / sqrtf((float)K), 0, channel};
    in.nqk = (size_t)B * T * H * K;
    in.nv = (size_t)B * T * H * V;
    in.ng = channel ? in.nqk : (size_t)B * T * H;
    in.nb = (size_t)B * T * H;
    in.ns = (size_t)B * H * K * V;
    in.q = new_normal(in.nqk, 1.0f, rng);
    in.k = new_normal(in.nqk, 1.0f, rng);
    unit_rows(in.q, in.nqk / K, K);
    unit_rows(in.k, in.nqk / K, K);
    in.v = new_normal(in.nv, 1.0f, rng);
    in.g = new_log_decays(in.ng, decay_scale, rng);
    in.beta = new_zeros(in.nb);
    for (size_t i = 0; i < in.nb; i++) in.beta[i] = (float)(1.0 / (1.0 + exp(-rng_normal(rng))));
    in.h0 = new_normal(in.ns, 0.5f, rng);
    return in;
}

void delta_inputs_free(DeltaInputs *in) {
    float *all[] = {in->q, in->k, in->v, in->g, in->beta, in->h0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

void gather_token(float *dst, const float *src, int B, int T, size_t row, int t) {
    for (int b = 0; b < B; b++) memcpy(dst + (size_t)b * row, src + ((size_t)b * T + t) * row, sizeof(float) * row);
}

DeltaOutputs delta_run(const DeltaInputs *in, int chunk, const float *dout, const float *dfinal) {
    const Backend *be = backend_cpu();
    ScanShape s = in->s;
    s.chunk = chunk;
    DeltaOutputs r;
    r.o = new_zeros(in->nv);
    r.final = new_zeros(in->ns);
    r.saved = new_zeros(be->delta_rule_saved(&s));
    r.work = xalloc_aligned(be->delta_rule_workspace(&s));
    be->delta_rule_forward(&s, r.o, r.final, r.saved, in->q, in->k, in->v, in->g, in->beta, in->h0, r.work);
    r.dq = r.dk = r.dv = r.dg = r.dbeta = r.dh0 = NULL;
    if (dout) {
        r.dq = new_zeros(in->nqk);
        r.dk = new_zeros(in->nqk);
        r.dv = new_zeros(in->nv);
        r.dg = new_zeros(in->ng);
        r.dbeta = new_zeros(in->nb);
        r.dh0 = new_zeros(in->ns);
        be->delta_rule_backward(&s, r.dq, r.dk, r.dv, r.dg, r.dbeta, r.dh0, dfinal, dout, in->q, in->k, in->v, in->g,
                                in->beta, r.saved, r.work);
    }
    return r;
}

void delta_free(DeltaOutputs *r) {
    float *all[] = {r->o, r->final, r->saved, r->work, r->dq, r->dk, r->dv, r->dg, r->dbeta, r->dh0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}
