/* Software prefetch spread over a computation. A chunk step of the delta rule queues the rows of
 * the [B, T, H, D] tensors it will write and those the next step will read, and requests a few
 * cache lines of them after each of its matrix products. Touched only when the elementwise
 * passes reach them, those rows (256 bytes out of every 1 KiB at H = 4, D = 64) came from memory
 * at about 10 GB/s per core and stalled the passes; requested early, the traffic overlaps the
 * arithmetic of the products. The requests go to L2 in groups of PREFETCH_GAP_LINES: on the
 * development machine 64 such requests in a row take 0.17 us, 256 held the core 3.8 us. A
 * backward step of KDA at K = V = 64 queues 2,048 lines and has 38 products to follow. Rows
 * about to be written are requested the same way: a line that no other core holds arrives
 * exclusive, so the store needs no second request. A hint only: nothing here changes a result. */
#pragma once
#include <stddef.h>

enum { PREFETCH_SETS = 8, LINE_FLOATS = 16, PREFETCH_GAP_LINES = 64 };

typedef struct {
    const float *base;
    size_t ld;
    int rows, width;
} PrefetchRows;

typedef struct {
    PrefetchRows set[PREFETCH_SETS];
    int n_sets, set_i, row, col; /* the next line to request */
} Prefetch;

static inline void prefetch_start(Prefetch *p) { p->n_sets = p->set_i = p->row = p->col = 0; }

/* Queues rows rows of width floats, ld floats apart. */
static inline void prefetch_add(Prefetch *p, const float *base, size_t ld, int rows, int width) {
    if (p->n_sets < PREFETCH_SETS && base && rows > 0 && width > 0)
        p->set[p->n_sets++] = (PrefetchRows){base, ld, rows, width};
}

/* Requests up to `lines` more cache lines of the queued rows (none when p is NULL). */
static inline void prefetch_lines(Prefetch *p, int lines) {
    for (; p && lines > 0 && p->set_i < p->n_sets; lines--) {
        const PrefetchRows *rs = &p->set[p->set_i];
        __builtin_prefetch(rs->base + (size_t)p->row * rs->ld + p->col, 0, 2); /* to L2 */
        if ((p->col += LINE_FLOATS) >= rs->width) {
            p->col = 0;
            if (++p->row == rs->rows) {
                p->row = 0;
                p->set_i++;
            }
        }
    }
}
