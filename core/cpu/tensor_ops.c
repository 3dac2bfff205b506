/* Bias add and its column-sum backward, rows scaled by a value each (dplr's beta on its written
 * vectors), the strided 2-D row copy used to slice fused buffers, and decode's cache rows. */
#include <stdlib.h>

#include "cpu_ops.h"

#define PAR_MIN 32768

void cpu_bias_forward(float *y, const float *bias, int rows, int C) {
#pragma omp parallel for schedule(static) if ((long)rows * C > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] += bias[c];
    }
}

/* Each thread owns a slice of columns and sums every row of it in row order, in double through a
 * block of stack accumulators: the bits do not depend on the thread count, and a sum over
 * hundreds of thousands of rows keeps its precision. */
void cpu_bias_backward(float *dbias, const float *dy, int rows, int C) {
    enum { BLOCK = 256 };
#pragma omp parallel if ((long)rows * C > PAR_MIN)
    {
        long c0, c1;
        thread_share(C, &c0, &c1);
        for (long cs = c0; cs < c1; cs += BLOCK) {
            int nc = c1 - cs < BLOCK ? (int)(c1 - cs) : BLOCK;
            double acc[BLOCK];
            for (int j = 0; j < nc; j++) acc[j] = 0.0;
            for (int r = 0; r < rows; r++) {
                const float *d = dy + (size_t)r * C + cs;
#pragma omp simd
                for (int j = 0; j < nc; j++) acc[j] += d[j];
            }
            for (int j = 0; j < nc; j++) dbias[cs + j] += (float)acc[j];
        }
    }
}

void cpu_copy_heads(float *dst, long dst_stride, long dst_head_stride, const float *src, long src_stride,
                    long src_head_stride, int rows, int heads, int cols, bool accumulate) {
#pragma omp parallel for schedule(static) if ((long)rows * heads * cols > PAR_MIN)
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++) { /* heads in order: a shared dst block sums them in order */
            float *d = dst + r * dst_stride + h * dst_head_stride;
            const float *s = src + r * src_stride + h * src_head_stride;
            if (accumulate) {
#pragma omp simd
                for (int c = 0; c < cols; c++) d[c] += s[c];
            } else {
#pragma omp simd
                for (int c = 0; c < cols; c++) d[c] = s[c];
            }
        }
}

void cpu_copy_rows(float *dst, long dst_stride, const float *src, long src_stride, int rows, int cols,
                   bool accumulate) {
    cpu_copy_heads(dst, dst_stride, 0, src, src_stride, 0, rows, 1, cols, accumulate);
}

void cpu_cache_write(float *cache, long seq_stride, long row_stride, const int *pos, const float *src,
                     long src_stride, int B, int cols) {
    cpu_copy_rows(cache + (size_t)*pos * row_stride, seq_stride, src, src_stride, B, cols, false);
}

/* the norm into a buffer of the call's own, then the two writes: the numbers of the ops apart */
void cpu_cache_write_normed(float *cache, long seq_stride, const int *pos, const float *a, int na, const RowNorm *norm,
                            const float *b, int nb, int B) {
    float *normed = cpu_rmsnorm_copy(a, norm, B, na);
    cpu_cache_write(cache, seq_stride, na + nb, pos, normed, na, B, na);
    cpu_cache_write(cache + na, seq_stride, na + nb, pos, b, nb, B, nb);
    free(normed);
}

void cpu_row_scale_forward(float *y, const float *x, const float *s, int rows, int D, float alpha) {
#pragma omp parallel for schedule(static) if ((long)rows * D > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float f = alpha * s[r], *yr = y + (size_t)r * D;
        const float *xr = x + (size_t)r * D;
#pragma omp simd
        for (int c = 0; c < D; c++) yr[c] = f * xr[c];
    }
}

/* A row's ds is its own sum, finished before dx overwrites dy (they may be one buffer). */
void cpu_row_scale_backward(float *dx, float *ds, const float *dy, const float *x, const float *s, int rows, int D,
                            float alpha, bool accumulate) {
#pragma omp parallel for schedule(static) if ((long)rows * D > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *dyr = dy + (size_t)r * D, *xr = x + (size_t)r * D;
        float *dxr = dx + (size_t)r * D, acc = 0.0f, f = alpha * s[r];
#pragma omp simd reduction(+ : acc)
        for (int c = 0; c < D; c++) acc += dyr[c] * xr[c];
        ds[r] += alpha * acc;
        if (accumulate) {
#pragma omp simd
            for (int c = 0; c < D; c++) dxr[c] += f * dyr[c];
        } else {
#pragma omp simd
            for (int c = 0; c < D; c++) dxr[c] = f * dyr[c];
        }
    }
}
