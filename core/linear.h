/* A linear layer y = x W^T with W stored [out, in] (the PyTorch layout, so weights and
 * reference fixtures line up), as two backend matmuls. */
#pragma once
#include "backend.h"
#include "params.h"

/* y[N, out] = x[N, in] W^T, or y += ... when accumulate. */
static inline void linear_forward(const Backend *be, float *y, const float *x, const Param *W, int N, int in, int out,
                                  bool accumulate) {
    be->gemm(false, true, N, out, in, 1.0f, x, in, W->w, in, accumulate ? 1.0f : 0.0f, y, out);
}

/* dW += dy^T x; dx = dy W (or dx += dy W when accumulate_dx; skipped when dx is NULL). */
static inline void linear_backward(const Backend *be, float *dx, const float *dy, const float *x, const Param *W,
                                   int N, int in, int out, bool accumulate_dx) {
    be->linear_backward(dx, W->g, dy, x, W->w, N, in, out, accumulate_dx);
}

/* W's part of a linear_group_backward: dy [N, out] the gradient of x W^T */
static inline LinearGrad linear_grad(const Param *W, const float *dy, int out) {
    return (LinearGrad){W->w, W->g, dy, out};
}
