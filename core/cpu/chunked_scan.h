/* What the CPU's chunkwise cores with channel decays share: the delta rule of gdn and kda
 * (delta_rule.c) and the diagonal-plus-low-rank rule of dplr (dplr.c). Offsets in the
 * [B, T, H, X] layout, the per-thread buffer spacing, and the cumulative decays of a chunk with
 * the test that decides whether decay factors can be split through the chunk start. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

/* Offsets of token t of sequence b, head h, in the [B, T, H, X] layouts. */
static inline size_t row_index(const ScanShape *s, int b, int t, int h, int width) {
    return (((size_t)b * s->T + t) * s->H + h) * (size_t)width;
}

static inline int n_chunks(const ScanShape *s) { return (s->T + s->chunk - 1) / s->chunk; }

/* A decay factor exp(b_r - b_j) inside a chunk is split into exp(b_r) exp(-b_j) only when the
 * chunk's cumulative decays span at most FACTOR_LIMIT nats, where neither factor overflows. */
enum { FACTOR_LIMIT = 30 };

/* Floats from one buffer to the next: whole cache lines plus one, so that buffers of 4 KiB
 * multiples do not all start at the same address modulo 4 KiB, where a load from one right after
 * a store to another at the same offset stalls (4K aliasing; it tripled the elementwise loops). */
static inline size_t buffer_stride(size_t n) { return (n + 15) / 16 * 16 + 16; }

/* b_r = g_1 + ... + g_r over the n rows (ldg apart) of w channels of the gate, into b (row
 * stride gw); returns whether every channel's range over the chunk, start (0) included, is
 * within FACTOR_LIMIT (false for NaN: the comparisons below let a NaN into lo and hi). Called
 * with w = 16, the sums, minima and maxima stay in registers: carried through memory, each row
 * waited on the store of the row before. */
static inline __attribute__((always_inline)) bool cumulative_decays(float *b, int gw, const float *g, size_t ldg,
                                                                    int n, int w) {
    float acc[16] = {0}, lo[16] = {0}, hi[16] = {0};
    for (int r = 0; r < n; r++) {
        const float *restrict gr = g + r * ldg;
        float *restrict br = b + (size_t)r * gw;
#pragma omp simd
        for (int d = 0; d < w; d++) {
            acc[d] += gr[d];
            br[d] = acc[d];
            lo[d] = acc[d] >= lo[d] ? lo[d] : acc[d];
            hi[d] = acc[d] <= hi[d] ? hi[d] : acc[d];
        }
    }
    bool fits = true;
    for (int d = 0; d < w; d++) fits &= hi[d] - lo[d] <= (float)FACTOR_LIMIT;
    return fits;
}

/* cumulative_decays over all gw channels, 16 at a time */
static inline bool chunk_decays(float *b, int gw, const float *g, size_t ldg, int n) {
    bool fits = true;
    int d0 = 0;
    for (; d0 + 16 <= gw; d0 += 16) fits &= cumulative_decays(b + d0, gw, g + d0, ldg, n, 16);
    if (d0 < gw) fits &= cumulative_decays(b + d0, gw, g + d0, ldg, n, gw - d0);
    return fits;
}
