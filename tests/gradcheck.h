/* Finite-difference gradient checking. A test defines the scalar loss L = sum(out * R) for a fixed
 * random R, gets the analytic gradient from the op's backward with dout = R, and compares it with
 * central differences (L(x + h) - L(x - h)) / 2h, Richardson-extrapolated from h and h/2, on a
 * sample of coordinates, at the steps h = 10 eps, 3 eps, eps, eps/sqrt(10) and eps/10 (the smallest
 * error counts: the best step depends on the tensor's curvature against fp32 rounding; a
 * log-space parameter with a small gradient, like gdn's dt_bias, needs the large steps to rise
 * above the loss's rounding noise). The error is
 * ||numeric - analytic|| / ||numeric|| over the sample: fp32 rounding keeps a correct backward
 * near 1e-4, while a wrong term or a factor off by 5% lands far above the 1e-2 threshold
 * (test_gradcheck_catches_a_wrong_backward shows it). */
#pragma once
#include <stddef.h>

#include "core/rng.h"

typedef double (*LossFn)(void *ctx);

/* Relative error between the numeric gradient of loss() with respect to x[0..n) and analytic[],
 * over at most max_coords coordinates chosen with rng (all when n <= max_coords). */
double gradcheck(LossFn loss, void *ctx, float *x, const float *analytic, size_t n, size_t max_coords, float eps,
                 Rng *rng);

/* The usual threshold for fp32 ops. */
#define GRAD_TOL 1e-2

/* One input of a gradient check: its values (perturbed and restored) and the analytic gradient. */
typedef struct {
    const char *name;
    float *x;
    const float *analytic;
    size_t n;
} GradInput;
/* gradcheck() over the inputs in order: the first whose error is not below GRAD_TOL (a NaN is
 * not), or -1; *e gets that input's error. */
int first_wrong_gradient(LossFn loss, void *ctx, const GradInput *inputs, size_t n, size_t max_coords, float eps,
                         Rng *rng, double *e);

/* sum(out[i] * r[i]) in double. */
double dot_loss(const float *out, const float *r, size_t n);
/* Fills with N(0, std^2). */
void fill_normal(float *x, size_t n, float std, Rng *rng);
float *new_normal(size_t n, float std, Rng *rng);
float *new_zeros(size_t n);
