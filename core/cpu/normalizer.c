/* Linear attention's normalizer as an extra value channel of ones (see backend.h). */
#include "cpu_ops.h"

void cpu_append_ones(float *y, const float *x, int rows, int D) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * (D + 1);
        for (int j = 0; j < D; j++) yr[j] = xr[j];
        yr[D] = 1.0f;
    }
}

void cpu_normalize_by_last(float *o, const float *num, int rows, int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *nr = num + (size_t)r * (D + 1);
        float *orow = o + (size_t)r * D, inv = 1.0f / (nr[D] + eps);
        for (int j = 0; j < D; j++) orow[j] = nr[j] * inv;
    }
}

/* o_j = n_j / (d + eps): dn_j = do_j / (d + eps); dd = -sum_j do_j n_j / (d + eps)^2 */
void cpu_normalize_by_last_backward(float *dnum, const float *dout, const float *num, int rows, int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *nr = num + (size_t)r * (D + 1), *dr = dout + (size_t)r * D;
        float *dn = dnum + (size_t)r * (D + 1), inv = 1.0f / (nr[D] + eps), acc = 0.0f;
        for (int j = 0; j < D; j++) {
            dn[j] = dr[j] * inv;
            acc += dr[j] * nr[j];
        }
        dn[D] = -acc * inv * inv;
    }
}
