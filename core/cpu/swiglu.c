/* SwiGLU activation on rows laid out [gate (F) | up (F)]: out = silu(gate) * up. */
#include "cpu_ops.h"
#include "fastmath.h"

void cpu_swiglu_forward(float *out, const float *gate_up, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gate_up + (size_t)n * 2 * F, *u = g + F;
        float *o = out + (size_t)n * F;
#pragma omp simd
        for (int i = 0; i < F; i++) o[i] = g[i] * fast_sigmoidf(g[i]) * u[i];
    }
}

/* d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g). */
void cpu_swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gate_up + (size_t)n * 2 * F, *u = g + F, *dy = dout + (size_t)n * F;
        float *dg = dgate_up + (size_t)n * 2 * F, *du = dg + F;
#pragma omp simd
        for (int i = 0; i < F; i++) {
            float s = fast_sigmoidf(g[i]);
            du[i] = dy[i] * g[i] * s;
            dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
    }
}
