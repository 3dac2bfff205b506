/* attnlab export --format fla: every attnlab parameter lands, value for value, under fla's name
 * and shape (splits of the fused matrices, the convolutions' [D, 1, W]); config.json names fla's
 * model type and shapes; the reference logits are the model's. Whether fla computes the same
 * logits from the folder is checked where fla runs (tests/reference/fla_export_check.py). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/io/checkpoint.h"
#include "core/io/export_fla.h"
#include "core/io/safetensors.h"
#include "core/model.h"
#include "core/util.h"
#include "test.h"

#define SETTINGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* the fla tensor that holds row `row` of attnlab parameter p, and the row inside it */
static const StTensor *fla_rows_of(const StFile *f, const ParamInfo *p, long row, long *inner) {
    char name[192];
    int layer = -1;
    sscanf(p->name, "layers.%d.", &layer);
    const char *mixer = strstr(p->name, ".mixer.");
    *inner = row;
    if (mixer && strcmp(mixer, ".mixer.qkv_proj.weight") == 0) {
        const char *parts[3] = {"q", "k", "v"};
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.attn.%s_proj.weight", layer, parts[i]);
            const StTensor *t = st_find(f, name);
            if (!t || *inner < t->shape[0]) return t;
            *inner -= t->shape[0];
        }
        return NULL;
    }
    if (strstr(p->name, ".mlp.gate_up_proj.")) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.%s_proj.weight", layer, row < p->shape[0] / 2 ? "gate" : "up");
        if (row >= p->shape[0] / 2) *inner -= p->shape[0] / 2;
    } else if (mixer) {
        snprintf(name, sizeof name, "model.layers.%d.attn%s", layer, mixer + strlen(".mixer"));
    } else if (strstr(p->name, ".mixer_norm.")) {
        snprintf(name, sizeof name, "model.layers.%d.attn_norm.weight", layer);
    } else if (strcmp(p->name, "lm_head.weight") == 0) {
        snprintf(name, sizeof name, "%s", p->name);
    } else {
        snprintf(name, sizeof name, "model.%s", p->name);
    }
    return st_find(f, name);
}

static void check_export(const char *const *settings, const char *model_type) {
    Config c;
    config_defaults(&c);
    Error err;
    const char *base[] = {"model.d_model=48", "model.n_heads=3", "model.n_layers=4", "model.vocab_size=61", NULL};
    for (const char *const *s = base; *s; s++) CHECK(config_set(&c, *s, &err), "%s", err.msg);
    for (const char *const *s = settings; *s; s++) CHECK(config_set(&c, *s, &err), "%s", err.msg);
    CHECK(config_check(&c, &err), "%s", err.msg);
    Model *m = model_create(&c.model, backend_cpu());
    model_init_params(m, 3);
    char dir[] = "/tmp/attnlab_export_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp failed");
    char *ck = xasprintf("%s/ck.safetensors", dir), *out = xasprintf("%s/fla", dir);
    CheckpointState st = {.step = 1, .config_lua = config_to_lua(&c, "test")};
    rng_seed(&st.data_rng, 1);
    CHECK(checkpoint_save(ck, m, &st, &err), "%s", err.msg);
    bool ok = export_fla(ck, out, &err);
    char *wpath = xasprintf("%s/model.safetensors", out), *rpath = xasprintf("%s/reference_logits.safetensors", out);
    char *cpath = xasprintf("%s/config.json", out);
    StFile w, r;
    ok = ok && st_read(&w, wpath, &err) && st_read(&r, rpath, &err);
    size_t len;
    char *text = ok ? read_file(cpath, &len, &err) : NULL;
    remove_tree(dir);
    CHECK(ok && text, "%s", err.msg);
    cJSON *json = cJSON_Parse(text);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "model_type");
    CHECK(cJSON_IsString(type) && strcmp(type->valuestring, model_type) == 0, "model_type %s, expected %s",
          cJSON_IsString(type) ? type->valuestring : "?", model_type);
    /* every value of every parameter, once; nothing else in the file */
    size_t exported = 0;
    for (int i = 0; i < w.n_tensors; i++) exported += w.tensors[i].count;
    CHECK(exported <= m->params.total,
          "%zu values exported for %zu parameters", exported, m->params.total);
    size_t matched = 0;
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.info[i];
        long rows = p->shape[0], cols = (long)(p->count / (size_t)rows);
        for (long row = 0; row < rows; row++) {
            long inner;
            const StTensor *t = fla_rows_of(&w, p, row, &inner);
            CHECK(t && t->dtype == ST_F32 && t->count / (size_t)t->shape[0] == (size_t)cols, "%s row %ld: no fla tensor",
                  p->name, row);
            CHECK(memcmp(w.data + t->begin + sizeof(float) * (size_t)(inner * cols), m->params.w + p->offset + row * cols,
                         sizeof(float) * (size_t)cols) == 0,
                  "%s row %ld differs in %s", p->name, row, t->name);
            if (strstr(p->name, "_conv1d."))
                CHECK(t->ndim == 3 && t->shape[1] == 1 && t->shape[2] == cols, "%s: shape not [D, 1, W]", t->name);
            matched += (size_t)cols;
        }
    }
    CHECK(matched == exported, "%zu values matched, %zu exported", matched, exported);
    /* the reference logits are the model's on the stored ids */
    const StTensor *ids = st_find(&r, "input_ids"), *lg = st_find(&r, "logits");
    CHECK(ids && lg && ids->dtype == ST_I64 && ids->ndim == 2 && lg->shape[2] == m->V, "reference_logits shapes");
    int B = (int)ids->shape[0], T = (int)ids->shape[1], *tokens = xmalloc(sizeof(int) * B * T);
    const int64_t *id = (const int64_t *)(const void *)(r.data + ids->begin);
    for (int i = 0; i < B * T; i++) tokens[i] = (int)id[i];
    float *want = xmalloc(sizeof(float) * B * T * m->V);
    model_reshape(m, B, T);
    model_logits(m, tokens, want);
    CHECK(memcmp(r.data + lg->begin, want, sizeof(float) * B * T * m->V) == 0, "reference logits are not the model's");
    free(tokens);
    free(want);
    cJSON_Delete(json);
    free(text);
    st_free(&w);
    st_free(&r);
    model_free(m);
}

TEST(test_export_fla_kda_with_softmax_layers) {
    check_export(SETTINGS("model.layers=kda,kda,softmax,kda", "model.softmax.n_kv_heads=1", "model.kda.expand_v=2"),
                 "kda");
}
TEST(test_export_fla_gdn) {
    check_export(SETTINGS("model.mixer=gdn", "model.gdn.head_dim=8", "model.tie_embeddings=true"), "gated_deltanet");
}
TEST(test_export_fla_softmax) { check_export(SETTINGS("model.mixer=softmax"), "transformer"); }
