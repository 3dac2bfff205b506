/* RMSNorm: out = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), per row of C channels. */
#include <math.h>

#include "core/util.h"
#include "cpu_ops.h"

float *cpu_rmsnorm_copy(const float *x, const RowNorm *norm, int N, int C) {
    float *out = xalloc_aligned(sizeof(float) * ((size_t)N * C + (size_t)N)); /* the rows, then their rstd */
    cpu_rmsnorm_forward(out, out + (size_t)N * C, x, norm->w, N, C, norm->eps);
    return out;
}

void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
    }
    cpu_held_written(out);
}

/* dx_c += rstd (w_c dy_c) - rstd^3 / C * x_c * sum_j(w_j dy_j x_j); dw_c += sum_n dy_c x_c rstd.
 * The weight gradient is reduced over rows by threads that own disjoint channel ranges, so the
 * order of summation never depends on scheduling. */
void cpu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C) {
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dxr = dx + (size_t)n * C;
            float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += w[c] * dy[c] * xr[c];
            float k = r * r * r * dot / C;
#pragma omp simd
            for (int c = 0; c < C; c++) dxr[c] += r * w[c] * dy[c] - k * xr[c];
        }
        long c0, c1;
        thread_share(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
            float r = rstd[n];
#pragma omp simd
            for (long c = c0; c < c1; c++) dw[c] += dy[c] * xr[c] * r;
        }
    }
}
