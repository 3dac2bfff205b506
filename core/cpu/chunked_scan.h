/* What the CPU's chunkwise cores with channel decays share: the delta rule of gdn and kda
 * (delta_rule.c) and the diagonal-plus-low-rank rule of dplr (dplr.c). Offsets in the
 * [B, T, H, X] layout, the per-thread buffers and what is saved for the backward, and the
 * cumulative decays of a chunk with the test that decides whether decay factors can be split
 * through the chunk start. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/backend.h"
#include "cpu_ops.h"

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

/* A core's per-thread buffers, LIST(X) with X(name, floats) in terms of the chunk size C, K,
 * CK = C K, CV = C V, CC = C C, KV = K V and SLOT = slot_floats(s) (a chunk's saved floats), as
 * the fields of Type: defines `static size_t floats_fn(const ScanShape *)`, the floats one thread
 * takes, and `static Type take_fn(const ScanShape *, float *base)`, its buffers carved from base. */
#define CHUNK_BUFFER_SIZES(s, slot_floats)                                                                            \
    size_t C = (size_t)(s)->chunk, K = (s)->K, CK = C * K, CV = C * (s)->V, CC = C * C, KV = K * (s)->V;               \
    size_t SLOT = slot_floats(s);                                                                                     \
    (void)CK, (void)CV, (void)CC, (void)KV, (void)SLOT
#define CHUNK_BUFFER_COUNT(name, count) total += buffer_stride(count);
#define CHUNK_BUFFER_TAKE(name, count)                                                                                \
    c.name = base;                                                                                                    \
    base += buffer_stride(count);
#define CHUNK_BUFFER_FUNCTIONS(Type, LIST, slot_floats, floats_fn, take_fn)                                           \
    static size_t floats_fn(const ScanShape *s) {                                                                     \
        CHUNK_BUFFER_SIZES(s, slot_floats);                                                                           \
        size_t total = 0;                                                                                             \
        LIST(CHUNK_BUFFER_COUNT)                                                                                      \
        return total;                                                                                                 \
    }                                                                                                                 \
    static Type take_fn(const ScanShape *s, float *base) {                                                            \
        CHUNK_BUFFER_SIZES(s, slot_floats);                                                                           \
        Type c;                                                                                                       \
        LIST(CHUNK_BUFFER_TAKE)                                                                                       \
        return c;                                                                                                     \
    }

/* What a core keeps for its backward: a slot per chunk, or in the recurrent form every token's
 * start state. */
static inline size_t chunked_saved_floats(const ScanShape *s, size_t slot) {
    if (s->chunk) return (size_t)s->B * s->H * n_chunks(s) * slot;
    return (size_t)s->B * s->H * s->T * s->K * s->V;
}

/* S = head bh's state of states [B H, K, V] (an initial state, or a final state's gradient), or
 * zeros when there is none */
static inline void state_or_zeros(float *S, const float *states, int bh, size_t KV) {
    if (states) memcpy(S, states + (size_t)bh * KV, sizeof(float) * KV);
    else memset(S, 0, sizeof(float) * KV);
}

/* the workspace of per-thread buffers of the given floats, one set per thread */
static inline size_t per_thread_bytes(size_t floats) { return sizeof(float) * floats * (size_t)cpu_threads(); }

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
