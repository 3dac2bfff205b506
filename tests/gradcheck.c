/* Finite-difference gradient checks (see gradcheck.h). */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>

#include "core/util.h"

double dot_loss(const float *out, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

void fill_normal(float *x, size_t n, float std, Rng *rng) { rng_fill_normal(rng, x, (long)n, std); }

float *new_normal(size_t n, float std, Rng *rng) {
    float *x = xalloc_aligned(sizeof(float) * (n ? n : 1));
    fill_normal(x, n, std, rng);
    return x;
}

float *new_zeros(size_t n) { return xalloc_aligned(sizeof(float) * (n ? n : 1)); }

double gradcheck(LossFn loss, void *ctx, float *x, const float *analytic, size_t n, size_t max_coords, float eps,
                 Rng *rng) {
    double diff2 = 0, num2 = 0;
    size_t count = n < max_coords ? n : max_coords;
    for (size_t c = 0; c < count; c++) {
        size_t i = n <= max_coords ? c : (size_t)rng_below(rng, n);
        float saved = x[i];
        x[i] = saved + eps;
        double lp = loss(ctx);
        x[i] = saved - eps;
        double lm = loss(ctx);
        x[i] = saved;
        /* the step actually taken in fp32 may differ from 2 eps */
        double h = (double)(saved + eps) - (double)(saved - eps);
        double num = (lp - lm) / h;
        diff2 += (num - analytic[i]) * (num - analytic[i]);
        num2 += num * num;
    }
    return sqrt(diff2) / (sqrt(num2) + 1e-12);
}
