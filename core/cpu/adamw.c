/* AdamW (decoupled weight decay) and the squared norm used for global gradient clipping. */
#include <math.h>

#include "cpu_ops.h"

/* Summed in double over fixed per-thread slices, then over threads in order: the same
 * thread count always gives the same bits. */
double cpu_sum_squares(const float *x, size_t n) {
    enum { MAX_THREADS = 1024 };
    double partial[MAX_THREADS] = {0};
    int nt = omp_get_max_threads() < MAX_THREADS ? omp_get_max_threads() : MAX_THREADS;
#pragma omp parallel num_threads(nt)
    {
        long lo, hi;
        thread_share((long)n, &lo, &hi);
        double s = 0.0;
        for (long i = lo; i < hi; i++) s += (double)x[i] * x[i];
        partial[omp_get_thread_num()] = s;
    }
    double total = 0.0;
    for (int t = 0; t < nt; t++) total += partial[t];
    return total;
}

void cpu_adamw(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, int step) {
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
#pragma omp parallel for simd schedule(static) if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + weight_decay * w[i]);
    }
}
