/* L2 normalization of rows (the q/k normalization of the delta-rule mixers). */
#include <math.h>

#include "cpu_ops.h"

#define PAR_MIN 16384

void cpu_l2norm_forward(float *y, float *rnorm, const float *x, int rows, int D, float eps) {
#pragma omp parallel for schedule(static) if ((long)rows * D > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * D;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int d = 0; d < D; d++) ss += xr[d] * xr[d];
        float rn = 1.0f / sqrtf(ss + eps);
        rnorm[r] = rn;
#pragma omp simd
        for (int d = 0; d < D; d++) yr[d] = xr[d] * rn;
    }
}

/* With y = x rn and rn = (x.x + eps)^-1/2: dx = rn (dy - y (y.dy)). Needs only the output and rn,
 * so the input need not be kept. */
void cpu_l2norm_backward(float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D) {
#pragma omp parallel for schedule(static) if ((long)rows * D > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *yr = y + (size_t)r * D, *dyr = dy + (size_t)r * D;
        float *dxr = dx + (size_t)r * D;
        float dot = 0.0f, rn = rnorm[r];
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < D; d++) dot += yr[d] * dyr[d];
#pragma omp simd
        for (int d = 0; d < D; d++) dxr[d] = rn * (dyr[d] - yr[d] * dot);
    }
}
