/* Software prefetch spread over a computation. A chunk step of the delta rule queues the rows of
 * the [B, T, H, D] tensors it will write and those the next step will read, and requests a few
 * cache lines of them between its matrix products. Touched only when the elementwise passes
 * reach them, those rows (256 bytes out of every 1 KiB at H = 4, D = 64) came from memory at
 * about 10 GB/s per core and stalled the passes; requested early, the traffic overlaps the
 * arithmetic of the products. A hint only: nothing here changes a result. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

enum { PREFETCH_SETS = 8, LINE_FLOATS = 16 };

typedef struct {
    const float *base;
    size_t ld;
    int rows, width;
    bool write;
} PrefetchRows;

typedef struct {
    PrefetchRows set[PREFETCH_SETS];
    int n_sets, set_i, row, col; /* the next line to request */
} Prefetch;

static inline void prefetch_start(Prefetch *p) { p->n_sets = p->set_i = p->row = p->col = 0; }

/* Queues rows rows of width floats, ld floats apart, to be read or written. */
static inline void prefetch_add(Prefetch *p, const float *base, size_t ld, int rows, int width, bool write) {
    if (p->n_sets < PREFETCH_SETS && base && rows > 0 && width > 0)
        p->set[p->n_sets++] = (PrefetchRows){base, ld, rows, width, write};
}

/* Requests up to `lines` more cache lines of the queued rows. */
static inline void prefetch_lines(Prefetch *p, int lines) {
    for (; lines > 0 && p->set_i < p->n_sets; lines--) {
        const PrefetchRows *rs = &p->set[p->set_i];
        const float *at = rs->base + (size_t)p->row * rs->ld + p->col;
        if (rs->write) __builtin_prefetch(at, 1, 3);
        else __builtin_prefetch(at, 0, 3);
        if ((p->col += LINE_FLOATS) >= rs->width) {
            p->col = 0;
            if (++p->row == rs->rows) {
                p->row = 0;
                p->set_i++;
            }
        }
    }
}
