/* `attnlab op NAME --in IN.safetensors --out OUT.safetensors`: one mixer core run on tensors
 * from a file, in the common public layout, so its numbers can be compared with any other
 * implementation. Names, shapes and dtypes are checked before anything runs. */
#include "op_harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "mixer.h"
#include "safetensors.h"

/* An op is a mixer's core (MixerOps.op_core), named after the mixer; the two delta-rule cores
 * come first in OpCore, so kind <= OP_CORE_DELTA_HEAD_GATE means "a delta rule". */
typedef OpCore OpKind;

/* The tensors an op takes; the optional ones may be absent. */
static const char *const KDA_INPUTS[] = {"q", "k", "v", "g", "beta", "initial_state", "do", "dfinal_state", "scale", NULL};
static const char *const LINEAR_INPUTS[] = {"q", "k", "v", "initial_state", "do", "dfinal_state", "scale", NULL};
static const char *const SOFTMAX_INPUTS[] = {"q", "k", "v", "do", "scale", NULL};

/* the registry's mixers that have a core of their own */
const char *op_names(void) {
    static char names[256];
    size_t n = 0;
    for (int i = 0; i < mixer_count(); i++)
        if (mixer_at(i)->op_core != OP_CORE_NONE)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? "|" : "", mixer_at(i)->name);
    return names;
}

static bool op_kind(const char *name, OpKind *kind) {
    const MixerOps *ops = mixer_lookup(name);
    if (!ops || ops->op_core == OP_CORE_NONE) return false;
    *kind = ops->op_core;
    return true;
}

static const char *const *inputs_of(OpKind k) {
    return k == OP_CORE_LINEAR ? LINEAR_INPUTS : k == OP_CORE_SOFTMAX ? SOFTMAX_INPUTS : KDA_INPUTS;
}

static void shape_text(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++) n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

/* A host copy of one tensor, as float32, after checking its shape. */
static float *load(const StFile *f, const char *name, int ndim, const int64_t *shape, const char *dims, Error *err) {
    const StTensor *t = st_find(f, name);
    if (!t) return NULL;
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[96], got[96];
        shape_text(want, sizeof want, ndim, shape);
        shape_text(got, sizeof got, t->ndim, t->shape);
        error_set(err, "%s: tensor '%s' has shape %s, expected %s = %s", f->path, name, got, dims, want);
        return NULL;
    }
    float *out = xmalloc(sizeof(float) * (t->count ? t->count : 1));
    if (!st_get_f32(f, name, ndim, shape, out, err)) {
        free(out);
        return NULL;
    }
    return out;
}

/* The backend buffers of one run, released together at the end. */
typedef struct {
    const Backend *be;
    void *ptr[32];
    int n;
} Buffers;

static void *take(Buffers *b, size_t bytes) {
    if (b->n == 32) die("internal: op harness buffer table full");
    return b->ptr[b->n++] = b->be->alloc(bytes ? bytes : 1);
}

/* Copies host data (or zeros when host is NULL) into a new backend buffer. */
static float *to_backend(Buffers *b, const float *host, size_t n) {
    float *d = take(b, sizeof(float) * n);
    if (host) b->be->upload(d, host, sizeof(float) * n);
    return d;
}

typedef struct {
    const char *name;
    float *dev;
    int ndim;
    int64_t shape[4];
} Output;

bool op_run(const char *name, const char *in_path, const char *out_path, const OpOptions *opt, Error *err) {
    OpKind kind;
    if (!op_kind(name, &kind)) return error_set(err, "op: unknown op '%s' (expected one of %s)", name, op_names());
    StFile f;
    if (!st_read(&f, in_path, err)) return false;
    bool ok = false;
    float *h[9] = {0}; /* q k v g beta initial_state do dfinal_state scale, host */
    Output outs[9];
    int n_out = 0;
    const Backend *be = opt->backend;
    Buffers bufs = {.be = be};
    /* every tensor must be one the op takes */
    const char *const *allowed = inputs_of(kind);
    for (int i = 0; i < f.n_tensors; i++) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++) known |= strcmp(*a, f.tensors[i].name) == 0;
        if (!known) {
            error_set(err, "%s: unexpected tensor '%s' (op %s takes %s)", in_path, f.tensors[i].name, name,
                      kind == OP_CORE_LINEAR    ? "q, k, v, initial_state?, do?, dfinal_state?, scale?"
                      : kind == OP_CORE_SOFTMAX ? "q, k, v, do?, scale?"
                                           : "q, k, v, g, beta, initial_state?, do?, dfinal_state?, scale?");
            goto done;
        }
    }
    const StTensor *tq = st_find(&f, "q"), *tk = st_find(&f, "k"), *tv = st_find(&f, "v");
    const char *missing = !tq ? "q" : !tk ? "k" : !tv ? "v" : NULL;
    if (!missing && kind <= OP_CORE_DELTA_HEAD_GATE) missing = !st_find(&f, "g") ? "g" : !st_find(&f, "beta") ? "beta" : NULL;
    if (missing) {
        error_set(err, "%s: missing tensor '%s'", in_path, missing);
        goto done;
    }
    if (tq->ndim != 4 || tk->ndim != 4 || tv->ndim != 4) {
        error_set(err, "%s: q, k and v must have 4 dimensions [B, T, heads, channels], got %d, %d and %d", in_path,
                  tq->ndim, tk->ndim, tv->ndim);
        goto done;
    }
    int64_t B = tq->shape[0], T = tq->shape[1], H = tq->shape[2], K = tq->shape[3];
    int64_t Hkv = kind == OP_CORE_SOFTMAX ? tk->shape[2] : H, V = tv->shape[3];
    if (B < 1 || T < 1 || H < 1 || K < 1 || V < 1 || Hkv < 1 || B * T * H > (1 << 28) || K > 4096 || V > 4096) {
        error_set(err, "%s: q and v shapes [%lld, %lld, %lld, %lld] and [.., %lld] are empty or too large", in_path,
                  (long long)B, (long long)T, (long long)H, (long long)K, (long long)V);
        goto done;
    }
    if (H % Hkv) {
        error_set(err, "%s: q has %lld heads, not a multiple of k's %lld", in_path, (long long)H, (long long)Hkv);
        goto done;
    }
    int64_t s_q[4] = {B, T, H, K}, s_k[4] = {B, T, Hkv, K}, s_v[4] = {B, T, Hkv, V}, s_o[4] = {B, T, H, V};
    int64_t s_gk[4] = {B, T, H, K}, s_state[4] = {B, H, K, V};
    bool have_do = st_find(&f, "do") != NULL;
    if ((h[0] = load(&f, "q", 4, s_q, "[B, T, H, K]", err)) == NULL) goto done;
    if ((h[1] = load(&f, "k", 4, s_k, "[B, T, H, K]", err)) == NULL) goto done;
    if ((h[2] = load(&f, "v", 4, s_v, "[B, T, H, V]", err)) == NULL) goto done;
    if (kind == OP_CORE_DELTA_CHANNEL_GATE && (h[3] = load(&f, "g", 4, s_gk, "[B, T, H, K] (a log decay per key channel)", err)) == NULL)
        goto done;
    if (kind == OP_CORE_DELTA_HEAD_GATE && (h[3] = load(&f, "g", 3, s_gk, "[B, T, H] (a log decay per head)", err)) == NULL) goto done;
    if (kind <= OP_CORE_DELTA_HEAD_GATE && (h[4] = load(&f, "beta", 3, s_gk, "[B, T, H]", err)) == NULL) goto done;
    if (kind != OP_CORE_SOFTMAX && st_find(&f, "initial_state") &&
        (h[5] = load(&f, "initial_state", 4, s_state, "[B, H, K, V]", err)) == NULL)
        goto done;
    if (have_do && (h[6] = load(&f, "do", 4, s_o, "[B, T, H, V]", err)) == NULL) goto done;
    if (kind != OP_CORE_SOFTMAX && st_find(&f, "dfinal_state") &&
        (h[7] = load(&f, "dfinal_state", 4, s_state, "[B, H, K, V]", err)) == NULL)
        goto done;
    float scale = 1.0f / sqrtf((float)K);
    const StTensor *ts = st_find(&f, "scale");
    if (ts) {
        if (ts->count != 1) {
            error_set(err, "%s: tensor 'scale' must hold one value, has %zu", in_path, ts->count);
            goto done;
        }
        h[8] = load(&f, "scale", ts->ndim, ts->shape, "a scalar", err);
        if (!h[8]) goto done;
        scale = h[8][0];
    }
    size_t nq = (size_t)(B * T * H * K), nk = (size_t)(B * T * Hkv * K), nv = (size_t)(B * T * Hkv * V),
           no = (size_t)(B * T * H * V), ns = (size_t)(B * H * K * V);
    size_t ng = kind == OP_CORE_DELTA_CHANNEL_GATE ? nq : (size_t)(B * T * H), nb = (size_t)(B * T * H);
    if (kind <= OP_CORE_DELTA_HEAD_GATE)
        for (size_t i = 0; i < ng; i++)
            if (!(h[3][i] <= 0.0f)) {
                error_set(err, "%s: tensor 'g' holds log-space decays, which must be <= 0; element %zu is %g", in_path, i,
                          h[3][i]);
                goto done;
            }

    float *q = to_backend(&bufs, h[0], nq), *k = to_backend(&bufs, h[1], nk), *v = to_backend(&bufs, h[2], nv);
    float *o = to_backend(&bufs, NULL, no);
    outs[n_out++] = (Output){"o", o, 4, {B, T, H, V}};
    if (kind == OP_CORE_SOFTMAX) {
        AttnShape s = {(int)B, (int)T, (int)H, (int)Hkv, (int)K, (int)V, H * K, Hkv * K, Hkv * V, H * V, scale};
        float *lse = to_backend(&bufs, NULL, (size_t)(B * H * T)), *work = take(&bufs, be->attention_workspace(&s));
        be->attention_forward(&s, o, lse, q, k, v, work);
        if (have_do) {
            float *d_o = to_backend(&bufs, h[6], no), *dq = to_backend(&bufs, NULL, nq), *dk = to_backend(&bufs, NULL, nk),
                  *dv = to_backend(&bufs, NULL, nv);
            be->attention_backward(&s, dq, dk, dv, d_o, q, k, v, o, lse, work);
            outs[n_out++] = (Output){"dq", dq, 4, {B, T, H, K}};
            outs[n_out++] = (Output){"dk", dk, 4, {B, T, Hkv, K}};
            outs[n_out++] = (Output){"dv", dv, 4, {B, T, Hkv, V}};
        }
    } else {
        ScanShape s = {(int)B, (int)T, (int)H, (int)K, (int)V, scale, opt->chunk, kind == OP_CORE_DELTA_CHANNEL_GATE};
        bool delta = kind != OP_CORE_LINEAR;
        float *h0 = h[5] ? to_backend(&bufs, h[5], ns) : NULL, *final = to_backend(&bufs, NULL, ns);
        float *g = delta ? to_backend(&bufs, h[3], ng) : NULL, *beta = delta ? to_backend(&bufs, h[4], nb) : NULL;
        size_t saved_n = delta ? be->delta_rule_saved(&s) : be->linear_attn_saved(&s);
        float *saved = to_backend(&bufs, NULL, saved_n);
        float *work = take(&bufs, delta ? be->delta_rule_workspace(&s) : be->linear_attn_workspace(&s));
        if (delta) be->delta_rule_forward(&s, o, final, saved, q, k, v, g, beta, h0, work);
        else be->linear_attn_forward(&s, o, final, saved, q, k, v, h0, work);
        outs[n_out++] = (Output){"final_state", final, 4, {B, H, K, V}};
        if (have_do) {
            float *d_o = to_backend(&bufs, h[6], no), *dht = h[7] ? to_backend(&bufs, h[7], ns) : NULL;
            float *dq = to_backend(&bufs, NULL, nq), *dk = to_backend(&bufs, NULL, nk), *dv = to_backend(&bufs, NULL, nv);
            float *dh0 = to_backend(&bufs, NULL, ns);
            if (delta) {
                float *dg = to_backend(&bufs, NULL, ng), *dbeta = to_backend(&bufs, NULL, nb);
                be->delta_rule_backward(&s, dq, dk, dv, dg, dbeta, dh0, dht, d_o, q, k, v, g, beta, saved, work);
                outs[n_out++] = (Output){"dg", dg, kind == OP_CORE_DELTA_CHANNEL_GATE ? 4 : 3, {B, T, H, K}};
                outs[n_out++] = (Output){"dbeta", dbeta, 3, {B, T, H, 0}};
            } else {
                be->linear_attn_backward(&s, dq, dk, dv, dh0, dht, d_o, q, k, v, saved, work);
            }
            outs[n_out++] = (Output){"dq", dq, 4, {B, T, H, K}};
            outs[n_out++] = (Output){"dk", dk, 4, {B, T, H, K}};
            outs[n_out++] = (Output){"dv", dv, 4, {B, T, H, V}};
            if (h0) outs[n_out++] = (Output){"dinitial_state", dh0, 4, {B, H, K, V}};
        }
    }
    /* bring the outputs home and write them */
    StWriter *w = st_writer_new();
    float *host[9];
    for (int i = 0; i < n_out; i++) {
        size_t n = 1;
        for (int d = 0; d < outs[i].ndim; d++) n *= (size_t)outs[i].shape[d];
        host[i] = xmalloc(sizeof(float) * n);
        be->download(host[i], outs[i].dev, sizeof(float) * n);
        st_writer_add(w, outs[i].name, ST_F32, outs[i].ndim, outs[i].shape, host[i]);
    }
    char meta[64];
    snprintf(meta, sizeof meta, "%s (%s, chunk %d)", name, be->name, opt->chunk);
    st_writer_meta(w, "attnlab_op", meta);
    ok = st_writer_save(w, out_path, err);
    st_writer_free(w);
    for (int i = 0; i < n_out; i++) free(host[i]);
done:
    for (int i = 0; i < bufs.n; i++) be->release(bufs.ptr[i]);
    for (int i = 0; i < 9; i++) free(h[i]);
    st_free(&f);
    return ok;
}
