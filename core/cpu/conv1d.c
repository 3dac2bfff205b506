/* Causal depthwise conv1d over time (the short conv of gdn and kda), its backward and its decode step. */
#include <string.h>

#include "core/util.h"
#include "cpu_ops.h"

#define PAR_MIN 16384

/* Every output sums its taps from the oldest (i = 0) to the newest, starting from 0: the decode
 * step sums in the same order, so decoding reproduces the training forward. Taps that fall
 * before position 0 are skipped rather than multiplied by zero. */
void cpu_conv1d_forward(float *y, const float *x, const float *w, int B, int T, int C, int W) {
    long rows = (long)B * T;
#pragma omp parallel for schedule(static) if (rows * C * W > PAR_MIN)
    for (long r = 0; r < rows; r++) {
        int t = (int)(r % T);
        int i0 = W - 1 - t > 0 ? W - 1 - t : 0;
        const float *xr = x + r * C;
        float *yr = y + r * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int i = i0; i < W; i++) acc += w[(size_t)c * W + i] * xr[(long)(i - W + 1) * C + c];
            yr[c] = acc;
        }
    }
}

/* dx[b,s,c] = sum_i w[c,i] dy[b, s+W-1-i, c] over outputs inside the sequence;
 * dw[c,i] += sum_{b,t} dy[b,t,c] x[b,t-W+1+i,c]. For dw each thread owns a slice of channels and
 * reduces over (b, t) in order into double accumulators kept on the stack, tiled over
 * (taps x channels) so any W fits: deterministic, and independent of the thread count. */
void cpu_conv1d_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int B, int T, int C,
                         int W) {
    enum { ACC = 1024 };
    long rows = (long)B * T;
#pragma omp parallel if (rows * C * W > PAR_MIN)
    {
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            int s = (int)(r % T);
            int i0 = s + W - T > 0 ? s + W - T : 0;
            const float *dyr = dy + r * C;
            float *dxr = dx + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int i = i0; i < W; i++) acc += w[(size_t)c * W + i] * dyr[(long)(W - 1 - i) * C + c];
                dxr[c] = acc;
            }
        }

        long c0, c1;
        thread_share(C, &c0, &c1);
        int ib = W < ACC ? W : ACC; /* taps per tile */
        int cb = ACC / ib;          /* channels per tile */
        double acc[ACC];
        for (long cs = c0; cs < c1; cs += cb) {
            int nc = c1 - cs < cb ? (int)(c1 - cs) : cb;
            for (int is = 0; is < W; is += ib) {
                int ni = W - is < ib ? W - is : ib;
                for (int j = 0; j < ni * nc; j++) acc[j] = 0.0;
                for (int b = 0; b < B; b++)
                    for (int t = 0; t < T; t++) {
                        const float *dyr = dy + ((size_t)b * T + t) * C + cs;
                        for (int i = is; i < is + ni; i++) {
                            int src = t - W + 1 + i;
                            if (src < 0) continue;
                            const float *xr = x + ((size_t)b * T + src) * C + cs;
                            double *a = acc + (size_t)(i - is) * nc;
#pragma omp simd
                            for (int c = 0; c < nc; c++) a[c] += (double)dyr[c] * xr[c];
                        }
                    }
                for (int i = 0; i < ni; i++)
                    for (int c = 0; c < nc; c++) dw[(cs + c) * W + is + i] += (float)acc[(size_t)i * nc + c];
            }
        }
    }
}

/* The ops they stand for, in their order, the activation and the norm in place (the same numbers). */
void cpu_conv1d_silu_forward(float *y, float *rnorm, const float *x, const float *w, int B, int T, int C, int W, int D,
                             float eps) {
    if (rnorm && (D <= 0 || C % D)) die("conv1d_silu_forward: %d channels are not heads of %d", C, D);
    cpu_conv1d_forward(y, x, w, B, T, C, W);
    cpu_silu_forward(y, y, (size_t)B * T * C);
    if (rnorm) cpu_l2norm_forward(y, rnorm, y, B * T * (C / D), D, eps);
}

/* The ops it stands for (the same numbers): the convolution again, in dx for now; SiLU's gradient
 * at it, in dy's place; the convolution's backward from there. */
void cpu_conv1d_silu_backward(float *dx, float *dw, float *dy, const float *x, const float *w, int B, int T, int C,
                              int W) {
    cpu_conv1d_forward(dx, x, w, B, T, C, W);
    cpu_silu_backward(dy, dy, dx, (size_t)B * T * C);
    cpu_conv1d_backward(dx, dw, dy, x, w, B, T, C, W);
}

/* y may alias x: each channel reads its input before anything of it is written. */
void cpu_conv1d_step(float *y, float *state, const float *x, const float *w, int B, int C, int W) {
#pragma omp parallel for schedule(static) if ((long)B * C * W > PAR_MIN)
    for (int b = 0; b < B; b++) {
        float *st = state + (size_t)b * (W - 1) * C;
        const float *xb = x + (size_t)b * C;
        float *yb = y + (size_t)b * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float xc = xb[c], acc = 0.0f;
            for (int i = 0; i < W - 1; i++) acc += w[(size_t)c * W + i] * st[(size_t)i * C + c];
            acc += w[(size_t)c * W + W - 1] * xc;
            for (int i = 0; i + 1 < W - 1; i++) st[(size_t)i * C + c] = st[(size_t)(i + 1) * C + c];
            if (W > 1) st[(size_t)(W - 2) * C + c] = xc;
            yb[c] = acc;
        }
    }
}

/* The ops it stands for, in their order, each in place after the convolution (the same numbers). */
void cpu_conv_silu_step(int B, int H, int W, int n, const ConvStepInput *in, float eps) {
    for (int i = 0; i < n; i++) {
        const ConvStepInput *p = &in[i];
        size_t width = (size_t)H * p->D;
        cpu_conv1d_step(p->y, p->tail, p->x, p->w, B, (int)width, W);
        cpu_silu_forward(p->y, p->y, (size_t)B * width);
        if (p->l2) cpu_l2norm_forward(p->y, p->rnorm, p->y, B * H, p->D, eps);
    }
}
