/* The run's activation arena (see arena.h). */
#include "arena.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { ALIGN = 256 }; /* bytes: cache lines on the CPU, coalesced access on the GPU */

void arena_declare(Arena *a, void *slot, size_t bytes) {
    if (a->base) die("internal: arena_declare after arena_bind");
    if (a->n_slots == a->cap_slots) {
        a->cap_slots = a->cap_slots ? 2 * a->cap_slots : 64;
        a->slots = xrealloc(a->slots, sizeof(ArenaSlot) * (size_t)a->cap_slots);
    }
    a->slots[a->n_slots++] = (ArenaSlot){slot, a->top};
    size_t rounded = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (rounded < bytes || a->top + rounded < a->top) die("activation memory size overflows");
    a->top += rounded;
    if (a->top > a->peak) a->peak = a->top;
}

size_t arena_mark(const Arena *a) { return a->top; }

void arena_rewind(Arena *a, size_t mark) { a->top = mark; }

void arena_bind(Arena *a, const Backend *be) {
    a->be = be;
    a->base = be->alloc(a->peak ? a->peak : ALIGN);
    for (int i = 0; i < a->n_slots; i++) {
        void *p = (char *)a->base + a->slots[i].offset;
        memcpy(a->slots[i].slot, &p, sizeof p); /* the slot is a T** of some pointer type */
    }
}

void arena_free(Arena *a) {
    if (a->base) a->be->release(a->base);
    free(a->slots);
    memset(a, 0, sizeof *a);
}
