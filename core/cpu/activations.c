/* Elementwise activations: SiLU, sigmoid, the output gate a * act(z), linear attention's feature maps. */
#include "cpu_ops.h"
#include "fastmath.h"

/* Below this many elements a parallel region costs more than the loop. */
#define PAR_MIN 32768

void cpu_silu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * fast_sigmoidf(x[i]);
}

/* d silu(x)/dx = s (1 + x (1 - s)) with s = sigmoid(x). */
void cpu_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float s = fast_sigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void cpu_sigmoid_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = fast_sigmoidf(x[i]);
}

/* From the output, so callers need not keep the pre-activation. */
void cpu_sigmoid_backward(float *dx, const float *dy, const float *y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

/* The activation is chosen outside the loops so each loop stays branch-free and vectorizes. */
void cpu_gate_forward(float *y, const float *a, const float *z, size_t n, GateAct act) {
    if (act == ACT_SILU) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = a[i] * z[i] * fast_sigmoidf(z[i]);
    } else {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = a[i] * fast_sigmoidf(z[i]);
    }
}

/* Both gradients go through locals before either store, so da may alias dy (in-place backward). */
void cpu_gate_backward(float *da, float *dz, const float *dy, const float *a, const float *z, size_t n,
                       GateAct act) {
    if (act == ACT_SILU) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float s = fast_sigmoidf(z[i]), g = dy[i];
            float ga = g * z[i] * s;
            float gz = g * a[i] * s * (1.0f + z[i] * (1.0f - s));
            da[i] = ga;
            dz[i] = gz;
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float s = fast_sigmoidf(z[i]), g = dy[i];
            float ga = g * s;
            float gz = g * a[i] * s * (1.0f - s);
            da[i] = ga;
            dz[i] = gz;
        }
    }
}

/* elu(x) + 1 is x + 1 for x > 0 and exp(x) below: positive everywhere, as linear attention's
 * normalizer-free kernel trick wants. */
void cpu_feature_map_forward(float *y, const float *x, size_t n, FeatureMap f) {
    switch (f) {
    case FEATURE_IDENTITY:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        break;
    case FEATURE_ELU1:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] + 1.0f : fast_expf(x[i]);
        break;
    case FEATURE_RELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    }
}

void cpu_feature_map_backward(float *dx, const float *dy, const float *x, size_t n, FeatureMap f) {
    switch (f) {
    case FEATURE_IDENTITY:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = dy[i];
        break;
    case FEATURE_ELU1:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * fast_expf(x[i]);
        break;
    case FEATURE_RELU:
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    }
}
