/* Whole layers against flash-linear-attention's (fla.layers): KimiDeltaAttention, GatedDeltaNet
 * and MultiheadLatentAttention with RoPE and with NoPE, on the fixtures that
 * tests/reference/fla_layers.py wrote (fla's own layer code run in float64; format and how to
 * regenerate them: tests/reference/README_fla.md). With fla's weights loaded under the same
 * names, attnlab's layer must give fla's output, input gradient and every parameter's gradient,
 * in its chunkwise (chunks of 64 and 16) and recurrent training forms. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "core/io/safetensors.h"
#include "core/util.h"
#include "gradcheck.h"
#include "mixer_harness.h"
#include "test.h"

static const char *const FIXTURES = "tests/fixtures/fla";

/* fp32 against float64: every tensor within 2e-5 of its scale (the worst case, measured: see
 * the table in tests/reference/README_fla.md); a wrong wiring, scale or init is off by 1e-2 or more. */
static const double TOL = 2e-5;

enum { MAX_SETTINGS = 24 };
typedef struct {
    char text[MAX_SETTINGS][96];
    const char *list[MAX_SETTINGS + 1];
    int n;
} Settings;

static void add(Settings *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(Settings *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->text[s->n], sizeof s->text[0], fmt, ap);
    va_end(ap);
    s->list[s->n] = s->text[s->n];
    s->list[++s->n] = NULL;
}

/* fla's constructor argument, or its default when the fixture left it out */
static double arg(const cJSON *kw, const char *name, double fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kw, name);
    return cJSON_IsNumber(v) ? v->valuedouble : cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

/* attnlab's settings for the fla layer of a fixture (fla's defaults: fla/layers/kda.py,
 * gated_deltanet.py, mla.py); false with msg when the fixture is not one this test knows */
static bool settings_of(const StFile *f, int chunk, Settings *s, char *msg, size_t len) {
    const char *kind = st_meta(f, "kind"), *kwargs = st_meta(f, "constructor_kwargs");
    cJSON *kw = kwargs ? cJSON_Parse(kwargs) : NULL;
    if (!kind || !kw) return snprintf(msg, len, "%s: no kind or constructor_kwargs metadata", f->path), false;
    s->n = 0;
    s->list[0] = NULL;
    add(s, "model.mixer=%s", kind);
    add(s, "model.d_model=%d", (int)arg(kw, "hidden_size", 2048));
    /* fla's layers build their norms with eps 1e-5 (MLA's latent norms always) */
    add(s, "model.norm_eps=%g", arg(kw, "norm_eps", 1e-5));
    bool ok = true;
    if (strcmp(kind, "kda") == 0 || strcmp(kind, "gdn") == 0) {
        bool gdn = kind[0] == 'g';
        int head_dim = (int)arg(kw, "head_dim", gdn ? 256 : 128);
        add(s, "model.n_heads=%d", (int)arg(kw, "num_heads", gdn ? 6 : 16));
        add(s, "model.head_dim=%d", head_dim);
        add(s, "model.%s.head_dim=%d", kind, head_dim);
        add(s, "model.%s.expand_v=%g", kind, arg(kw, "expand_v", gdn ? 2 : 1));
        add(s, "model.%s.conv_size=%d", kind, (int)arg(kw, "conv_size", 4));
        add(s, "model.%s.short_conv=%s", kind, arg(kw, "use_short_conv", 1) ? "true" : "false");
        add(s, "model.%s.output_gate=%s", kind, !gdn || arg(kw, "use_gate", 1) ? "true" : "false");
        add(s, "model.%s.chunk_size=%d", kind, chunk);
    } else if (strcmp(kind, "mla") == 0) {
        const char *position = st_meta(f, "position");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(kw, "q_lora_rank");
        add(s, "model.n_heads=%d", (int)arg(kw, "num_heads", 16));
        add(s, "model.head_dim=%d", (int)arg(kw, "qk_nope_head_dim", 128));
        add(s, "model.mla.q_lora_rank=%d", cJSON_IsNumber(q) ? q->valueint : cJSON_IsNull(q) ? 0 : 1536);
        add(s, "model.mla.kv_lora_rank=%d", (int)arg(kw, "kv_lora_rank", 512));
        add(s, "model.mla.qk_nope_head_dim=%d", (int)arg(kw, "qk_nope_head_dim", 128));
        add(s, "model.mla.qk_rope_head_dim=%d", (int)arg(kw, "qk_rope_head_dim", 64));
        add(s, "model.mla.v_head_dim=%d", (int)arg(kw, "v_head_dim", 128));
        add(s, "model.rope_base=%g", arg(kw, "rope_theta", 10000));
        add(s, "model.mla.position=%s", position ? position : "rope");
    } else {
        snprintf(msg, len, "%s: unknown layer kind '%s'", f->path, kind);
        ok = false;
    }
    cJSON_Delete(kw);
    return ok;
}

static float *tensor(const StFile *f, const char *name, size_t count, char *msg, size_t len) {
    const StTensor *t = st_find(f, name);
    if (!t || t->count != count) {
        snprintf(msg, len, "%s: tensor '%s' %s (want %zu values)", f->path, name, t ? "has another size" : "is missing",
                 count);
        return NULL;
    }
    float *out = xmalloc(sizeof(float) * count);
    Error err;
    if (!st_get_f32(f, name, -1, NULL, out, &err)) {
        snprintf(msg, len, "%.400s", err.msg);
        free(out);
        return NULL;
    }
    return out;
}

/* Loads fla's parameters into the layer: attnlab's are named layers.0.mixer.<fla's name>; fla's
 * conv weights [D, 1, W] are attnlab's [D, W], the same values in the same order. Every fixture
 * parameter must be used. */
static bool load_weights(MixerCase *c, const StFile *f, char *msg, size_t len) {
    int in_file = 0;
    for (int i = 0; i < f->n_tensors; i++) in_file += strncmp(f->tensors[i].name, "param.", 6) == 0;
    if (in_file != c->ps.n)
        return snprintf(msg, len, "%s: %d fla parameters, the layer has %d", f->path, in_file, c->ps.n), false;
    for (int i = 0; i < c->ps.n; i++) {
        const ParamInfo *p = &c->ps.info[i];
        char name[160];
        snprintf(name, sizeof name, "param.%s", p->name + strlen("layers.0.mixer."));
        float *w = tensor(f, name, p->count, msg, len);
        if (!w) return false;
        memcpy(c->ps.w + p->offset, w, sizeof(float) * p->count);
        free(w);
    }
    return true;
}

/* max relative difference of got to the fixture's tensor `name` (INFINITY when it is missing) */
static double versus(const StFile *f, const char *name, const float *got, size_t count, char *msg, size_t len) {
    float *want = tensor(f, name, count, msg, len);
    if (!want) return INFINITY;
    double d = max_rel_diff(got, want, count, 1e-6);
    free(want);
    return d;
}

/* Runs one fixture at one chunk size; fills worst (largest difference) and what (its tensor). */
static bool check_fixture(const char *path, int chunk, double *worst, char *what, char *msg, size_t len) {
    StFile f;
    Error err;
    if (!st_read(&f, path, &err)) return snprintf(msg, len, "%.400s", err.msg), false;
    Settings s;
    MixerCase c;
    const char *base[] = {"model.n_layers=1", NULL};
    int B = atoi(st_meta(&f, "B") ? st_meta(&f, "B") : "0"), T = atoi(st_meta(&f, "T") ? st_meta(&f, "T") : "0");
    bool ok = B > 0 && T > 0;
    if (!ok) snprintf(msg, len, "%s: no B or T metadata", path);
    ok = ok && settings_of(&f, chunk, &s, msg, len) && mixer_case_init_over(&c, base, s.list, B, T, 1, msg, len) &&
         load_weights(&c, &f, msg, len);
    size_t n = (size_t)B * T * (ok ? c.C : 0);
    float *x = ok ? tensor(&f, "x", n, msg, len) : NULL, *dy = x ? tensor(&f, "dy", n, msg, len) : NULL;
    ok = ok && x && dy;
    if (ok) {
        memcpy(c.x, x, sizeof(float) * n);
        memcpy(c.R, dy, sizeof(float) * n);
        mixer_case_loss(&c); /* y = layer(x) */
        float *dx = new_zeros(n);
        params_zero_grad(&c.ps);
        c.mixer->ops->backward(c.mixer, c.be, c.x, c.R, dx, B, T);
        *worst = 0;
        struct {
            const char *name;
            const float *got;
            size_t count;
        } outs[2] = {{"y", c.y, n}, {"dx", dx, n}};
        for (int i = 0; i < 2 + c.ps.n && ok; i++) {
            char grad[160];
            const char *name = i < 2 ? outs[i].name : grad;
            if (i >= 2) snprintf(grad, sizeof grad, "grad.%s", c.ps.info[i - 2].name + strlen("layers.0.mixer."));
            const float *got = i < 2 ? outs[i].got : c.ps.g + c.ps.info[i - 2].offset;
            double d = versus(&f, name, got, i < 2 ? outs[i].count : c.ps.info[i - 2].count, msg, len);
            if (!isfinite(d) && d == INFINITY && msg[0]) ok = false;
            if (!(d <= *worst)) {
                *worst = d;
                snprintf(what, 160, "%s", name);
            }
        }
        free(dx);
    }
    free(x);
    free(dy);
    st_free(&f);
    return ok;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(test_layers_match_flash_linear_attention) {
    DIR *d = opendir(FIXTURES);
    CHECK(d, "no fixtures in %s (tests/reference/README_fla.md says how to make them)", FIXTURES);
    char *paths[64];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 64;)
        if (strstr(e->d_name, ".safetensors")) paths[n++] = xasprintf("%s/%s", FIXTURES, e->d_name);
    closedir(d);
    qsort(paths, (size_t)n, sizeof paths[0], by_name);
    int kinds[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        kinds[0] += strstr(paths[i], "fla_kda") != NULL;
        kinds[1] += strstr(paths[i], "fla_gdn") != NULL;
        kinds[2] += strstr(paths[i], "fla_mla") != NULL;
        const int chunks[] = {64, 16, 0};
        for (int k = 0; k < 3; k++) {
            if (strstr(paths[i], "fla_mla") && k > 0) break; /* no chunk size */
            double worst = 0;
            char what[160] = "", msg[512] = "";
            CHECK(check_fixture(paths[i], chunks[k], &worst, what, msg, sizeof msg), "%s", msg);
            printf("    %s chunk %d: worst %.2e (%s)\n", paths[i] + strlen(FIXTURES) + 1, chunks[k], worst, what);
            CHECK(worst <= TOL, "%s, chunk %d: %s differs from fla's by %.2e (tol %.0e)", paths[i], chunks[k], what, worst,
                  TOL);
        }
    }
    CHECK(kinds[0] >= 3 && kinds[1] >= 3 && kinds[2] >= 4, "fixtures: %d kda, %d gdn, %d mla", kinds[0], kinds[1],
          kinds[2]);
}
