/* The log-space decay gate of gdn and kda: g = -exp(A_log[h]) * softplus(a + dt_bias[h, d]). */
#include <math.h>

#include "cpu_ops.h"

#define PAR_MIN 16384

/* Above 20 softplus is x to float precision (and exp would overflow past 88); below -20 it is
 * exp(x) to float precision. */
static inline float softplusf(float x) {
    if (x > 20.0f) return x;
    float e = expf(x);
    return x < -20.0f ? e : log1pf(e);
}

/* softplus(x) and its derivative sigmoid(x) from one exp. */
static inline float softplus_sigmoid(float x, float *sig) {
    if (x > 20.0f) {
        *sig = 1.0f / (1.0f + expf(-x));
        return x;
    }
    float e = expf(x);
    *sig = e / (1.0f + e);
    return x < -20.0f ? e : log1pf(e);
}

void cpu_decay_gate_forward(float *g, const float *a, const float *A_log, const float *dt_bias, int N, int H,
                            int D) {
    long HD = (long)H * D;
#pragma omp parallel for schedule(static) if ((long)N * HD > PAR_MIN)
    for (int n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            float A = expf(A_log[h]);
            size_t off = (size_t)n * HD + (size_t)h * D;
            for (int d = 0; d < D; d++) g[off + d] = -A * softplusf(a[off + d] + dt_bias[(size_t)h * D + d]);
        }
    }
}

/* da = dg * (-exp(A_log)) * sigmoid(a + dt_bias); since dt_bias enters exactly as a does,
 * ddt_bias gets the column sums of da. dA_log[h] += sum over (n, d) of dg * g. Each thread sums
 * a fixed slice of rows into double partials, and the partials are added in thread order
 * (an ordered loop): deterministic for a fixed thread count without a workspace. Heads go in
 * blocks so the partials fit on the stack; there is one block unless H > HEAD_BLOCK. */
void cpu_decay_gate_backward(float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,
                             const float *A_log, const float *dt_bias, int N, int H, int D) {
    enum { HEAD_BLOCK = 256 };
    long HD = (long)H * D;
    for (int hb = 0; hb < H; hb += HEAD_BLOCK) {
        int nh = H - hb < HEAD_BLOCK ? H - hb : HEAD_BLOCK;
        double total[HEAD_BLOCK] = {0};
#pragma omp parallel if ((long)N * HD > PAR_MIN)
        {
            double part[HEAD_BLOCK] = {0};
            long n0, n1;
            thread_share(N, &n0, &n1);
            for (long n = n0; n < n1; n++) {
                for (int h = hb; h < hb + nh; h++) {
                    float A = expf(A_log[h]);
                    size_t off = (size_t)n * HD + (size_t)h * D;
                    double s = 0.0;
                    for (int d = 0; d < D; d++) {
                        float sig, sp = softplus_sigmoid(a[off + d] + dt_bias[(size_t)h * D + d], &sig);
                        float gd = dg[off + d];
                        da[off + d] = -A * sig * gd;
                        s += (double)gd * (-A * sp);
                    }
                    part[h - hb] += s;
                }
            }
            int nt = omp_get_num_threads();
#pragma omp for ordered schedule(static, 1)
            for (int t = 0; t < nt; t++) {
#pragma omp ordered
                for (int j = 0; j < nh; j++) total[j] += part[j];
            }
        }
        for (int j = 0; j < nh; j++) dA_log[hb + j] += (float)total[j];
    }
    cpu_bias_backward(ddt_bias, da, N, (int)HD);
}
