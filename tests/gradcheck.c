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

/* Central difference of loss() in coordinate i with step h, using the step fp32 really takes. */
static double central_difference(LossFn loss, void *ctx, float *x, size_t i, float h) {
    float saved = x[i];
    x[i] = saved + h;
    double lp = loss(ctx);
    x[i] = saved - h;
    double lm = loss(ctx);
    x[i] = saved;
    return (lp - lm) / ((double)(saved + h) - (double)(saved - h));
}

/* Relative error at one step size over the given coordinates. */
static double error_at_step(LossFn loss, void *ctx, float *x, const float *analytic, const size_t *coords,
                            size_t count, float h) {
    double diff2 = 0, num2 = 0;
    for (size_t c = 0; c < count; c++) {
        size_t i = coords[c];
        /* Richardson extrapolation: the h^2 error terms of the steps h and h/2 cancel */
        double d1 = central_difference(loss, ctx, x, i, h), d2 = central_difference(loss, ctx, x, i, h / 2);
        double num = (4.0 * d2 - d1) / 3.0;
        diff2 += (num - analytic[i]) * (num - analytic[i]);
        num2 += num * num;
    }
    return sqrt(diff2) / (sqrt(num2) + 1e-12);
}

double gradcheck(LossFn loss, void *ctx, float *x, const float *analytic, size_t n, size_t max_coords, float eps,
                 Rng *rng) {
    size_t count = n < max_coords ? n : max_coords;
    size_t *coords = xmalloc(sizeof(size_t) * (count ? count : 1));
    for (size_t c = 0; c < count; c++) coords[c] = n <= max_coords ? c : (size_t)rng_below(rng, n);
    /* The step that best balances truncation against fp32 rounding differs between tensors (a
     * convolution weight with a curvature in the hundreds wants 1e-3; a decay parameter whose
     * gradient is 1e-4 of the loss wants 3e-2), so four steps are tried and the smallest error
     * counts. A wrong backward is wrong at every step. */
    double best = INFINITY;
    const float steps[5] = {10.0f * eps, 3.0f * eps, eps, eps / 3.16227766f, eps / 10.0f};
    for (int k = 0; k < 5; k++) best = fmin(best, error_at_step(loss, ctx, x, analytic, coords, count, steps[k]));
    free(coords);
    return best;
}

int first_wrong_gradient(LossFn loss, void *ctx, const GradInput *inputs, size_t n, size_t max_coords, float eps,
                         Rng *rng, double *e) {
    for (size_t i = 0; i < n; i++) {
        *e = gradcheck(loss, ctx, inputs[i].x, inputs[i].analytic, inputs[i].n, max_coords, eps, rng);
        if (!(*e < GRAD_TOL)) return (int)i;
    }
    return -1;
}
