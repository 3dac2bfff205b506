/* The parameter table and its four buffers (see params.h). */
#include "params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { ALIGN_FLOATS = 64 };

int params_add(ParamSet *ps, Param *slot, const char *name, int ndim, const long *shape, bool decay,
               ParamInit init, float init_std) {
    if (ps->w) die("internal: params_add after params_bind");
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 64;
        ps->info = xrealloc(ps->info, sizeof(ParamInfo) * (size_t)ps->cap);
    }
    ParamInfo *p = &ps->info[ps->n];
    memset(p, 0, sizeof *p);
    if (strlen(name) >= sizeof p->name) die("internal: parameter name too long: %s", name);
    strcpy(p->name, name);
    p->ndim = ndim;
    p->count = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->count *= (size_t)shape[i];
    }
    p->decay = decay;
    p->init = init;
    p->init_std = init_std;
    p->slot = slot;
    p->offset = ps->total;
    ps->total += (p->count + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    return ps->n++;
}

int params_matrix(ParamSet *ps, Param *slot, const char *name, long rows, long cols, float std) {
    long shape[2] = {rows, cols};
    return params_add(ps, slot, name, 2, shape, true, INIT_NORMAL, std);
}

int params_gain(ParamSet *ps, Param *slot, const char *name, long n) {
    return params_add(ps, slot, name, 1, &n, false, INIT_ONES, 0.0f);
}

int params_custom(ParamSet *ps, Param *slot, const char *name, int ndim, const long *shape, bool decay, ParamInitFn fn,
                  float a, float b) {
    int i = params_add(ps, slot, name, ndim, shape, decay, INIT_FN, 0.0f);
    ps->info[i].init_fn = fn;
    ps->info[i].init_a = a;
    ps->info[i].init_b = b;
    return i;
}

void init_log_uniform(float *w, size_t n, Rng *rng, float a, float b) {
    for (size_t i = 0; i < n; i++) w[i] = logf(a + (b - a) * (float)rng_uniform(rng));
}

void params_bind(ParamSet *ps, const Backend *be) {
    ps->be = be;
    size_t bytes = sizeof(float) * (ps->total ? ps->total : 1);
    ps->w = be->alloc(bytes);
    ps->g = be->alloc(bytes);
    ps->m = be->alloc(bytes);
    ps->v = be->alloc(bytes);
    for (int i = 0; i < ps->n; i++) {
        ps->info[i].slot->w = ps->w + ps->info[i].offset;
        ps->info[i].slot->g = ps->g + ps->info[i].offset;
    }
}

void params_init(ParamSet *ps, Rng *rng) {
    float *host = xmalloc(sizeof(float) * (ps->total ? ps->total : 1));
    ps->be->download(host, ps->w, sizeof(float) * ps->total);
    for (int i = 0; i < ps->n; i++) {
        ParamInfo *p = &ps->info[i];
        float *w = host + p->offset;
        switch (p->init) {
        case INIT_NORMAL: rng_fill_normal(rng, w, (long)p->count, p->init_std); break;
        case INIT_ONES:
            for (size_t j = 0; j < p->count; j++) w[j] = 1.0f;
            break;
        case INIT_ZEROS: memset(w, 0, sizeof(float) * p->count); break;
        case INIT_FN: p->init_fn(w, p->count, rng, p->init_a, p->init_b); break;
        }
    }
    ps->be->upload(ps->w, host, sizeof(float) * ps->total);
    free(host);
}

void params_zero_grad(ParamSet *ps) { ps->be->zero(ps->g, ps->total); }

const ParamInfo *params_find(const ParamSet *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->info[i].name, name) == 0) return &ps->info[i];
    return NULL;
}

void params_free(ParamSet *ps) {
    if (ps->w) {
        ps->be->release(ps->w);
        ps->be->release(ps->g);
        ps->be->release(ps->m);
        ps->be->release(ps->v);
    }
    free(ps->info);
    memset(ps, 0, sizeof *ps);
}
