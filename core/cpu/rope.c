/* Rotary position embedding, half-split pairs (channel i with i + rot/2), applied in place. */
#include "cpu_ops.h"

/* sign = +1 rotates by the position's angle (forward), -1 by its negative (backward: the
 * transpose of a rotation is its inverse). */
static void rope_apply(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                       const float *cos, const float *sin, int pos0, float sign) {
    int half = rot / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *c = cos + (size_t)(pos0 + t) * half, *s = sin + (size_t)(pos0 + t) * half;
            float *row = x + ((size_t)b * T + t) * stride;
            for (int h = 0; h < H; h++) {
                float *x1 = row + (size_t)h * head_stride + offset, *x2 = x1 + half;
#pragma omp simd
                for (int i = 0; i < half; i++) {
                    float a = x1[i], bb = x2[i], si = sign * s[i];
                    x1[i] = a * c[i] - bb * si;
                    x2[i] = bb * c[i] + a * si;
                }
            }
        }
    }
}

void cpu_rope_forward(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                      const float *cos, const float *sin, int pos0) {
    rope_apply(x, B, T, H, head_stride, stride, offset, rot, cos, sin, pos0, 1.0f);
}

void cpu_rope_backward(float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                       const float *cos, const float *sin, int pos0) {
    rope_apply(dx, B, T, H, head_stride, stride, offset, rot, cos, sin, pos0, -1.0f);
}
