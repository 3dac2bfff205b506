/* Inputs and runs of the gated delta rule core for the tests of it and of the rules built on it
 * (test_delta_rule.c; test_dplr.c, where kda is dplr's tied case). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/rng.h"

/* Inputs as a layer makes them: q, k unit-norm per head, g <= 0 in log space, beta in (0, 1). */
typedef struct {
    ScanShape s;
    float *q, *k, *v, *g, *beta, *h0;
    size_t nqk, nv, ng, nb, ns;
} DeltaInputs;

/* rows of D floats scaled to unit norm */
void unit_rows(float *x, size_t rows, int D);
/* n log-space decays -scale softplus(N(0, 1)) (<= 0): the delta rule's g and dplr's gk */
float *new_log_decays(size_t n, float scale, Rng *rng);
/* g = -decay_scale softplus(N(0, 1)); h0 ~ N(0, 0.25); the shape's chunk is 0 */
DeltaInputs delta_inputs(int B, int T, int H, int K, int V, bool channel, float decay_scale, Rng *rng);
void delta_inputs_free(DeltaInputs *in);
/* token t of each of B sequences of T tokens, rows of `row` floats: [B, T, row] -> [B, row], as a
 * decode step takes it */
void gather_token(float *dst, const float *src, int B, int T, size_t row, int t);

typedef struct {
    float *o, *final, *saved, *work;
    float *dq, *dk, *dv, *dg, *dbeta, *dh0; /* NULL without dout */
} DeltaOutputs;

/* the CPU core's forward at the given chunk size, and with dout its backward (dfinal may be NULL) */
DeltaOutputs delta_run(const DeltaInputs *in, int chunk, const float *dout, const float *dfinal);
void delta_free(DeltaOutputs *r);
