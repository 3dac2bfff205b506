/* Checkpoint files (see checkpoint.h). */
#include "checkpoint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

enum { FORMAT_VERSION = 1 };
static const char *const PREFIX[3] = {"param.", "adam_m.", "adam_v."};

static float *buffer_of(const ParamSet *ps, int which) { return which == 0 ? ps->w : which == 1 ? ps->m : ps->v; }

bool checkpoint_save(const char *path, const Model *m, const CheckpointState *st, Error *err) {
    const ParamSet *ps = &m->params;
    float *host[3];
    for (int k = 0; k < 3; k++) {
        host[k] = xmalloc(sizeof(float) * (ps->total ? ps->total : 1));
        ps->be->download(host[k], buffer_of(ps, k), sizeof(float) * ps->total);
    }
    StWriter *w = st_writer_new();
    char **names = xcalloc((size_t)ps->n * 3, sizeof(char *));
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < ps->n; i++) {
            const ParamInfo *p = &ps->info[i];
            int64_t shape[4];
            for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
            names[k * ps->n + i] = xasprintf("%s%s", PREFIX[k], p->name);
            st_writer_add(w, names[k * ps->n + i], ST_F32, p->ndim, shape, host[k] + p->offset);
        }
    }
    char buf[64], rng_hex[65];
    snprintf(buf, sizeof buf, "%d", FORMAT_VERSION);
    st_writer_meta(w, "attnlab_checkpoint", buf);
    snprintf(buf, sizeof buf, "%d", st->step);
    st_writer_meta(w, "step", buf);
    rng_to_hex(&st->data_rng, rng_hex);
    st_writer_meta(w, "data_rng", rng_hex);
    snprintf(buf, sizeof buf, "%.17g", st->train_seconds);
    st_writer_meta(w, "train_seconds", buf);
    snprintf(buf, sizeof buf, "%.17g", st->wall_seconds);
    st_writer_meta(w, "wall_seconds", buf);
    snprintf(buf, sizeof buf, "%.17g", st->tokens_seen);
    st_writer_meta(w, "tokens_seen", buf);
    st_writer_meta(w, "config", st->config_lua);
    bool ok = st_writer_save(w, path, err);
    st_writer_free(w);
    for (int i = 0; i < ps->n * 3; i++) free(names[i]);
    free(names);
    for (int k = 0; k < 3; k++) free(host[k]);
    return ok;
}

static bool meta_double(const StFile *f, const char *key, double *out, Error *err) {
    const char *s = st_meta(f, key);
    if (!s || !parse_double(s, out))
        return error_set(err, "%s: not an attnlab checkpoint: metadata '%s' is missing or not a number", f->path, key);
    if (!isfinite(*out) || *out < 0)
        return error_set(err, "%s: metadata '%s' is not a finite number >= 0", f->path, key);
    return true;
}

bool checkpoint_load(const char *path, Model *m, CheckpointState *st, Error *err) {
    memset(st, 0, sizeof *st);
    StFile f;
    if (!st_read(&f, path, err)) return false;
    bool ok = checkpoint_from_file(&f, m, st, err);
    st_free(&f);
    return ok;
}

bool checkpoint_read_step(const char *path, int *step, Error *err) {
    StFile f;
    if (!st_read_header(&f, path, err)) return false;
    double value;
    bool ok = meta_double(&f, "step", &value, err);
    if (ok && (value > 1e9 || value != floor(value)))
        ok = error_set(err, "%s: metadata 'step' is not a valid step count", path);
    if (ok) *step = (int)value;
    st_free(&f);
    return ok;
}

bool checkpoint_from_file(const StFile *file, Model *m, CheckpointState *st, Error *err) {
    memset(st, 0, sizeof *st);
    const StFile *f = file;
    const char *path = f->path;
    bool ok = false;
    double version, step;
    const char *rng = st_meta(f, "data_rng"), *config = st_meta(f, "config");
    if (!meta_double(f, "attnlab_checkpoint", &version, err)) goto done;
    if (version != FORMAT_VERSION) {
        error_set(err, "%s: checkpoint format %g, this attnlab reads format %d", path, version, FORMAT_VERSION);
        goto done;
    }
    if (!meta_double(f, "step", &step, err) || !meta_double(f, "train_seconds", &st->train_seconds, err) ||
        !meta_double(f, "wall_seconds", &st->wall_seconds, err) ||
        !meta_double(f, "tokens_seen", &st->tokens_seen, err))
        goto done;
    if (step > 1e9 || step != floor(step)) {
        error_set(err, "%s: metadata 'step' is not a valid step count", path);
        goto done;
    }
    st->step = (int)step;
    if (!rng || !rng_from_hex(&st->data_rng, rng)) {
        error_set(err, "%s: metadata 'data_rng' is missing or malformed", path);
        goto done;
    }
    if (!config) {
        error_set(err, "%s: metadata 'config' is missing", path);
        goto done;
    }
    st->config_lua = xstrdup(config);
    if (m) {
        const ParamSet *ps = &m->params;
        float *host = xmalloc(sizeof(float) * (ps->total ? ps->total : 1));
        for (int k = 0; k < 3; k++) {
            memset(host, 0, sizeof(float) * ps->total);
            for (int i = 0; i < ps->n; i++) {
                const ParamInfo *p = &ps->info[i];
                int64_t shape[4];
                for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
                char name[128];
                snprintf(name, sizeof name, "%s%s", PREFIX[k], p->name);
                if (!st_get_f32(f, name, p->ndim, shape, host + p->offset, err)) {
                    free(host);
                    goto done;
                }
            }
            ps->be->upload(buffer_of(ps, k), host, sizeof(float) * ps->total);
        }
        free(host);
    }
    ok = true;
done:
    if (!ok) checkpoint_state_free(st);
    return ok;
}

void checkpoint_state_free(CheckpointState *st) {
    free(st->config_lua);
    st->config_lua = NULL;
}
