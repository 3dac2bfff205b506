/* RoPE tables: angle of channel pair i at position p is p * base^(-2i/rot), computed in double. */
#include "rope_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const RopeTable *rope_cache_request(RopeCache *rc, int rot) {
    for (int i = 0; i < rc->n; i++)
        if (rc->tables[i].rot == rot) return &rc->tables[i];
    if (rc->n == ROPE_MAX_TABLES) die("internal: too many distinct rotary widths");
    if (rot <= 0 || rot % 2) die("internal: rotary width must be even and positive, got %d", rot);
    RopeTable *t = &rc->tables[rc->n++];
    memset(t, 0, sizeof *t);
    t->rot = rot;
    return t;
}

void rope_cache_fill(RopeCache *rc, int positions) {
    for (int i = 0; i < rc->n; i++) {
        RopeTable *t = &rc->tables[i];
        if (t->positions >= positions) continue;
        int half = t->rot / 2;
        size_t n = (size_t)positions * half;
        float *c = xmalloc(sizeof(float) * n), *s = xmalloc(sizeof(float) * n);
        for (int p = 0; p < positions; p++) {
            for (int j = 0; j < half; j++) {
                double angle = p * pow(rc->base, -2.0 * j / t->rot);
                c[(size_t)p * half + j] = (float)cos(angle);
                s[(size_t)p * half + j] = (float)sin(angle);
            }
        }
        if (t->cos) {
            rc->be->release(t->cos);
            rc->be->release(t->sin);
        } else {
            t->step_cos = rc->be->alloc(sizeof(float) * half);
            t->step_sin = rc->be->alloc(sizeof(float) * half);
        }
        t->cos = rc->be->alloc(sizeof(float) * n);
        t->sin = rc->be->alloc(sizeof(float) * n);
        rc->be->upload(t->cos, c, sizeof(float) * n);
        rc->be->upload(t->sin, s, sizeof(float) * n);
        t->positions = positions;
        free(c);
        free(s);
    }
}

void rope_cache_at(RopeCache *rc, long pos) {
    for (int i = 0; i < rc->n; i++) {
        RopeTable *t = &rc->tables[i];
        int half = t->rot / 2;
        if (pos < 0 || pos >= t->positions) die("internal: rotary step at position %ld of a table of %d", pos, t->positions);
        rc->be->copy(t->step_cos, t->cos + (size_t)pos * half, (size_t)half);
        rc->be->copy(t->step_sin, t->sin + (size_t)pos * half, (size_t)half);
    }
}

void rope_cache_free(RopeCache *rc) {
    for (int i = 0; i < rc->n; i++) {
        if (rc->tables[i].cos) {
            rc->be->release(rc->tables[i].cos);
            rc->be->release(rc->tables[i].sin);
            rc->be->release(rc->tables[i].step_cos);
            rc->be->release(rc->tables[i].step_sin);
        }
    }
    memset(rc, 0, sizeof *rc);
}
