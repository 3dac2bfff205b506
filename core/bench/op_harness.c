/* `attnlab op NAME --in IN.safetensors --out OUT.safetensors`: one mixer core run on tensors
 * from a file, in the common public layout, so its numbers can be compared with any other
 * implementation. Names, shapes and dtypes are checked before anything runs. */
#include "op_harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/io/safetensors.h"
#include "core/mixer.h"

/* An op is a mixer's core (MixerOps.op_core), named after the mixer; the two delta-rule cores
 * come first in OpCore, so kind <= OP_CORE_DELTA_HEAD_GATE means "a delta rule". dplr's tensors
 * are named as fla's dplr op names them (a, b, gk). */
typedef OpCore OpKind;

/* The tensors an op takes; the optional ones may be absent. */
static const char *const KDA_INPUTS[] = {"q", "k", "v", "g", "beta", "initial_state", "do", "dfinal_state", "scale", NULL};
static const char *const DPLR_INPUTS[] = {"q", "k", "v", "a", "b", "gk", "initial_state", "do", "dfinal_state", "scale",
                                          NULL};
static const char *const LINEAR_INPUTS[] = {"q", "k", "v", "initial_state", "do", "dfinal_state", "scale", NULL};
static const char *const SOFTMAX_INPUTS[] = {"q", "k", "v", "do", "scale", NULL};

enum { MAX_OUTPUTS = 12 };

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
    return k == OP_CORE_LINEAR ? LINEAR_INPUTS : k == OP_CORE_SOFTMAX ? SOFTMAX_INPUTS : k == OP_CORE_DPLR ? DPLR_INPUTS
                                                                                                          : KDA_INPUTS;
}

/* the name of the log decay: g for the delta rule, gk for dplr (fla's names) */
static const char *decay_name(OpKind k) { return k == OP_CORE_DPLR ? "gk" : "g"; }

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

/* One call's inputs: the sizes q, k and v give, and host copies (float32) of every tensor. */
typedef struct {
    OpKind kind;
    int64_t B, T, H, Hkv, K, V;
    size_t nq, nk, nv, no, ns, ng, nb; /* element counts: q, k, v, o, a state, the decay, beta */
    float scale;
    bool have_do;
    float *h[11]; /* q k v g (dplr: gk) beta initial_state do dfinal_state scale a b, host */
} OpInputs;

/* The outputs on the backend, in the order they are written. */
typedef struct {
    Output o[MAX_OUTPUTS];
    int n;
} Outputs;

/* every tensor must be one the op takes */
static bool check_names(const StFile *f, OpKind kind, const char *name, const char *in_path, Error *err) {
    const char *const *allowed = inputs_of(kind);
    for (int i = 0; i < f->n_tensors; i++) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++) known |= strcmp(*a, f->tensors[i].name) == 0;
        if (!known)
            return error_set(err, "%s: unexpected tensor '%s' (op %s takes %s)", in_path, f->tensors[i].name, name,
                             kind == OP_CORE_LINEAR    ? "q, k, v, initial_state?, do?, dfinal_state?, scale?"
                             : kind == OP_CORE_SOFTMAX ? "q, k, v, do?, scale?"
                             : kind == OP_CORE_DPLR    ? "q, k, v, a, b, gk, initial_state?, do?, dfinal_state?, scale?"
                                                       : "q, k, v, g, beta, initial_state?, do?, dfinal_state?, scale?");
    }
    return true;
}

/* The sizes, from q, k and v, after checking that the op's required tensors are there. */
static bool read_sizes(const StFile *f, OpInputs *in, const char *in_path, Error *err) {
    OpKind kind = in->kind;
    const StTensor *tq = st_find(f, "q"), *tk = st_find(f, "k"), *tv = st_find(f, "v");
    const char *missing = !tq ? "q" : !tk ? "k" : !tv ? "v" : NULL;
    if (!missing && kind <= OP_CORE_DELTA_HEAD_GATE) missing = !st_find(f, "g") ? "g" : !st_find(f, "beta") ? "beta" : NULL;
    if (!missing && kind == OP_CORE_DPLR)
        missing = !st_find(f, "a") ? "a" : !st_find(f, "b") ? "b" : !st_find(f, "gk") ? "gk" : NULL;
    if (missing) return error_set(err, "%s: missing tensor '%s'", in_path, missing);
    if (tq->ndim != 4 || tk->ndim != 4 || tv->ndim != 4)
        return error_set(err, "%s: q, k and v must have 4 dimensions [B, T, heads, channels], got %d, %d and %d",
                         in_path, tq->ndim, tk->ndim, tv->ndim);
    int64_t B = tq->shape[0], T = tq->shape[1], H = tq->shape[2], K = tq->shape[3];
    int64_t Hkv = kind == OP_CORE_SOFTMAX ? tk->shape[2] : H, V = tv->shape[3];
    if (B < 1 || T < 1 || H < 1 || K < 1 || V < 1 || Hkv < 1 || B * T * H > (1 << 28) || K > 4096 || V > 4096)
        return error_set(err, "%s: q and v shapes [%lld, %lld, %lld, %lld] and [.., %lld] are empty or too large",
                         in_path, (long long)B, (long long)T, (long long)H, (long long)K, (long long)V);
    if (H % Hkv)
        return error_set(err, "%s: q has %lld heads, not a multiple of k's %lld", in_path, (long long)H,
                         (long long)Hkv);
    *in = (OpInputs){.kind = kind, .B = B, .T = T, .H = H, .Hkv = Hkv, .K = K, .V = V};
    in->nq = (size_t)(B * T * H * K), in->nk = (size_t)(B * T * Hkv * K), in->nv = (size_t)(B * T * Hkv * V);
    in->no = (size_t)(B * T * H * V), in->ns = (size_t)(B * H * K * V);
    bool per_channel = kind == OP_CORE_DELTA_CHANNEL_GATE || kind == OP_CORE_DPLR;
    in->ng = per_channel ? in->nq : (size_t)(B * T * H), in->nb = (size_t)(B * T * H);
    return true;
}

/* Host copies of the tensors, each checked against the shape the sizes give. */
static bool load_tensors(const StFile *f, OpInputs *in, Error *err) {
    OpKind kind = in->kind;
    int64_t B = in->B, T = in->T, H = in->H, Hkv = in->Hkv, K = in->K, V = in->V;
    int64_t s_q[4] = {B, T, H, K}, s_k[4] = {B, T, Hkv, K}, s_v[4] = {B, T, Hkv, V}, s_o[4] = {B, T, H, V};
    int64_t s_gk[4] = {B, T, H, K}, s_state[4] = {B, H, K, V};
    float **h = in->h;
    in->have_do = st_find(f, "do") != NULL;
    if ((h[0] = load(f, "q", 4, s_q, "[B, T, H, K]", err)) == NULL) return false;
    if ((h[1] = load(f, "k", 4, s_k, "[B, T, H, K]", err)) == NULL) return false;
    if ((h[2] = load(f, "v", 4, s_v, "[B, T, H, V]", err)) == NULL) return false;
    if (kind == OP_CORE_DELTA_CHANNEL_GATE && (h[3] = load(f, "g", 4, s_gk, "[B, T, H, K] (a log decay per key channel)", err)) == NULL)
        return false;
    if (kind == OP_CORE_DELTA_HEAD_GATE && (h[3] = load(f, "g", 3, s_gk, "[B, T, H] (a log decay per head)", err)) == NULL)
        return false;
    if (kind <= OP_CORE_DELTA_HEAD_GATE && (h[4] = load(f, "beta", 3, s_gk, "[B, T, H]", err)) == NULL) return false;
    if (kind == OP_CORE_DPLR) {
        if ((h[9] = load(f, "a", 4, s_q, "[B, T, H, K]", err)) == NULL) return false;
        if ((h[10] = load(f, "b", 4, s_q, "[B, T, H, K]", err)) == NULL) return false;
        if ((h[3] = load(f, "gk", 4, s_gk, "[B, T, H, K] (a log decay per key channel)", err)) == NULL) return false;
    }
    if (kind != OP_CORE_SOFTMAX && st_find(f, "initial_state") &&
        (h[5] = load(f, "initial_state", 4, s_state, "[B, H, K, V]", err)) == NULL)
        return false;
    if (in->have_do && (h[6] = load(f, "do", 4, s_o, "[B, T, H, V]", err)) == NULL) return false;
    if (kind != OP_CORE_SOFTMAX && st_find(f, "dfinal_state") &&
        (h[7] = load(f, "dfinal_state", 4, s_state, "[B, H, K, V]", err)) == NULL)
        return false;
    return true;
}

/* The attention scale: the tensor 'scale' when given, else 1/sqrt(K). */
static bool read_scale(const StFile *f, OpInputs *in, const char *in_path, Error *err) {
    in->scale = 1.0f / sqrtf((float)in->K);
    const StTensor *ts = st_find(f, "scale");
    if (!ts) return true;
    if (ts->count != 1) return error_set(err, "%s: tensor 'scale' must hold one value, has %zu", in_path, ts->count);
    in->h[8] = load(f, "scale", ts->ndim, ts->shape, "a scalar", err);
    if (!in->h[8]) return false;
    in->scale = in->h[8][0];
    return true;
}

static bool check_decays(const OpInputs *in, const char *in_path, Error *err) {
    if (in->kind <= OP_CORE_DELTA_HEAD_GATE || in->kind == OP_CORE_DPLR)
        for (size_t i = 0; i < in->ng; i++)
            if (!(in->h[3][i] <= 0.0f))
                return error_set(err, "%s: tensor '%s' holds log-space decays, which must be <= 0; element %zu is %g",
                                 in_path, decay_name(in->kind), i, in->h[3][i]);
    return true;
}

/* q, k and v on the backend, and o, the first output. */
typedef struct {
    float *q, *k, *v, *o;
} Qkvo;

static Qkvo upload_qkv(const OpInputs *in, Buffers *b, Outputs *out) {
    Qkvo t;
    t.q = to_backend(b, in->h[0], in->nq);
    t.k = to_backend(b, in->h[1], in->nk);
    t.v = to_backend(b, in->h[2], in->nv);
    t.o = to_backend(b, NULL, in->no);
    out->o[out->n++] = (Output){"o", t.o, 4, {in->B, in->T, in->H, in->V}};
    return t;
}

static void run_softmax(const OpInputs *in, Buffers *b, Outputs *out) {
    const Backend *be = b->be;
    int64_t B = in->B, T = in->T, H = in->H, Hkv = in->Hkv, K = in->K, V = in->V;
    Qkvo t = upload_qkv(in, b, out);
    AttnShape s = {.B = (int)B, .T = (int)T, .H = (int)H, .Hkv = (int)Hkv, .Dk = (int)K, .Dv = (int)V,
                   .q_stride = H * K, .k_stride = Hkv * K, .v_stride = Hkv * V, .o_stride = H * V,
                   .scale = in->scale};
    float *lse = to_backend(b, NULL, (size_t)(B * H * T)), *work = take(b, be->attention_workspace(&s));
    void *saved = take(b, be->attention_saved(&s));
    be->attention_forward(&s, t.o, lse, saved, t.q, t.k, NULL, t.v, work);
    if (!in->have_do) return;
    float *d_o = to_backend(b, in->h[6], in->no), *dq = to_backend(b, NULL, in->nq), *dk = to_backend(b, NULL, in->nk),
          *dv = to_backend(b, NULL, in->nv);
    be->attention_backward(&s, dq, dk, NULL, dv, d_o, t.q, t.k, NULL, t.v, t.o, lse, saved, work);
    out->o[out->n++] = (Output){"dq", dq, 4, {B, T, H, K}};
    out->o[out->n++] = (Output){"dk", dk, 4, {B, T, Hkv, K}};
    out->o[out->n++] = (Output){"dv", dv, 4, {B, T, Hkv, V}};
}

/* the linear-time cores: the chunked recurrence forward, and with 'do' its backward. */
static void run_scan(const OpInputs *in, Buffers *b, int chunk, Outputs *out) {
    const Backend *be = b->be;
    int64_t B = in->B, T = in->T, H = in->H, K = in->K, V = in->V;
    size_t nq = in->nq, ns = in->ns, ng = in->ng, nb = in->nb;
    float *const *h = in->h;
    Qkvo t = upload_qkv(in, b, out);
    bool dplr = in->kind == OP_CORE_DPLR, delta = in->kind <= OP_CORE_DELTA_HEAD_GATE;
    bool per_channel = dplr || in->kind == OP_CORE_DELTA_CHANNEL_GATE;
    ScanShape s = {(int)B, (int)T, (int)H, (int)K, (int)V, in->scale, chunk, per_channel};
    float *h0 = h[5] ? to_backend(b, h[5], ns) : NULL, *final = to_backend(b, NULL, ns);
    float *g = delta || dplr ? to_backend(b, h[3], ng) : NULL, *beta = delta ? to_backend(b, h[4], nb) : NULL;
    float *a = dplr ? to_backend(b, h[9], nq) : NULL, *bw = dplr ? to_backend(b, h[10], nq) : NULL;
    size_t saved_n = dplr ? be->dplr_saved(&s) : delta ? be->delta_rule_saved(&s) : be->linear_attn_saved(&s);
    float *saved = to_backend(b, NULL, saved_n);
    float *work = take(b, dplr    ? be->dplr_workspace(&s)
                          : delta ? be->delta_rule_workspace(&s)
                                  : be->linear_attn_workspace(&s));
    if (dplr) be->dplr_forward(&s, t.o, final, saved, t.q, t.k, t.v, a, bw, g, h0, work);
    else if (delta) be->delta_rule_forward(&s, t.o, final, saved, t.q, t.k, t.v, g, beta, h0, work);
    else be->linear_attn_forward(&s, t.o, final, saved, t.q, t.k, t.v, h0, work);
    out->o[out->n++] = (Output){"final_state", final, 4, {B, H, K, V}};
    if (!in->have_do) return;
    float *d_o = to_backend(b, h[6], in->no), *dht = h[7] ? to_backend(b, h[7], ns) : NULL;
    float *dq = to_backend(b, NULL, nq), *dk = to_backend(b, NULL, in->nk), *dv = to_backend(b, NULL, in->nv);
    float *dh0 = to_backend(b, NULL, ns);
    if (dplr) {
        float *da = to_backend(b, NULL, nq), *db = to_backend(b, NULL, nq), *dgk = to_backend(b, NULL, ng);
        be->dplr_backward(&s, dq, dk, dv, da, db, dgk, dh0, dht, d_o, t.q, t.k, t.v, a, bw, g, saved, work);
        out->o[out->n++] = (Output){"da", da, 4, {B, T, H, K}};
        out->o[out->n++] = (Output){"db", db, 4, {B, T, H, K}};
        out->o[out->n++] = (Output){"dgk", dgk, 4, {B, T, H, K}};
    } else if (delta) {
        float *dg = to_backend(b, NULL, ng), *dbeta = to_backend(b, NULL, nb);
        be->delta_rule_backward(&s, dq, dk, dv, dg, dbeta, dh0, dht, d_o, t.q, t.k, t.v, g, beta, saved, work);
        out->o[out->n++] = (Output){"dg", dg, in->kind == OP_CORE_DELTA_CHANNEL_GATE ? 4 : 3, {B, T, H, K}};
        out->o[out->n++] = (Output){"dbeta", dbeta, 3, {B, T, H, 0}};
    } else {
        be->linear_attn_backward(&s, dq, dk, dv, dh0, dht, d_o, t.q, t.k, t.v, saved, work);
    }
    out->o[out->n++] = (Output){"dq", dq, 4, {B, T, H, K}};
    out->o[out->n++] = (Output){"dk", dk, 4, {B, T, H, K}};
    out->o[out->n++] = (Output){"dv", dv, 4, {B, T, H, V}};
    if (h0) out->o[out->n++] = (Output){"dinitial_state", dh0, 4, {B, H, K, V}};
}

/* bring the outputs home and write them */
static bool write_outputs(const Outputs *out, const char *name, const OpOptions *opt, const char *out_path,
                          Error *err) {
    const Backend *be = opt->backend;
    StWriter *w = st_writer_new();
    float *host[MAX_OUTPUTS];
    for (int i = 0; i < out->n; i++) {
        const Output *o = &out->o[i];
        size_t n = 1;
        for (int d = 0; d < o->ndim; d++) n *= (size_t)o->shape[d];
        host[i] = xmalloc(sizeof(float) * n);
        be->download(host[i], o->dev, sizeof(float) * n);
        st_writer_add(w, o->name, ST_F32, o->ndim, o->shape, host[i]);
    }
    char meta[64];
    snprintf(meta, sizeof meta, "%s (%s, chunk %d)", name, be->name, opt->chunk);
    st_writer_meta(w, "attnlab_op", meta);
    bool ok = st_writer_save(w, out_path, err);
    st_writer_free(w);
    for (int i = 0; i < out->n; i++) free(host[i]);
    return ok;
}

bool op_run(const char *name, const char *in_path, const char *out_path, const OpOptions *opt, Error *err) {
    OpInputs in = {0};
    if (!op_kind(name, &in.kind)) return error_set(err, "op: unknown op '%s' (expected one of %s)", name, op_names());
    StFile f;
    if (!st_read(&f, in_path, err)) return false;
    Buffers bufs = {.be = opt->backend};
    bool ok = check_names(&f, in.kind, name, in_path, err) && read_sizes(&f, &in, in_path, err) &&
              load_tensors(&f, &in, err) && read_scale(&f, &in, in_path, err) && check_decays(&in, in_path, err);
    if (ok) {
        Outputs out = {0};
        if (in.kind == OP_CORE_SOFTMAX) run_softmax(&in, &bufs, &out);
        else run_scan(&in, &bufs, opt->chunk, &out);
        ok = write_outputs(&out, name, opt, out_path, err);
    }
    for (int i = 0; i < bufs.n; i++) bufs.be->release(bufs.ptr[i]);
    for (int i = 0; i < 11; i++) free(in.h[i]);
    st_free(&f);
    return ok;
}
