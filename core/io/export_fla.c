/* attnlab export CHECKPOINT --format fla OUT_DIR (see export_fla.h). The names, shapes and
 * config fields follow flash-linear-attention's models (tests/reference/FLA_MAPPING.md, section
 * c): attnlab's parameters already carry fla's module names, so the mapping is a prefix, the
 * short convolutions' [D, W] -> [D, 1, W], and the split of the two fused matrices (softmax's
 * qkv_proj, the MLP's gate_up_proj). */
#include "export_fla.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "core/mixer.h"
#include "core/rng.h"
#include "safetensors.h"

enum { CHECK_B = 2, CHECK_T = 100 }; /* the reference logits: T above fla's chunk of 64, not a multiple */

/* What the model is made of, for fla's model type: its main mixer (the one whose model class fla
 * uses; attention only when every layer is attention) and the attention mixer of fla's `attn`
 * layers inside another model, if any. */
typedef struct {
    const MixerOps *main, *attn;
} Layout;

/* Checks that fla has this model; fills the layout, or err with the first thing fla lacks. */
static bool exportable(const ModelConfig *m, Layout *lay, Error *err) {
    memset(lay, 0, sizeof *lay);
    if (!m->mlp) return error_set(err, "model.mlp = false: fla's models always have an MLP in each block");
    for (int l = 0; l < m->n_layers; l++) {
        const MixerOps *ops = mixer_lookup(config_layer_mixer(m, l));
        if (!ops->fla) return error_set(err, "layer %d is %s, which fla's models do not have", l, ops->name);
        const MixerOps **slot = ops->fla->attn ? &lay->attn : &lay->main;
        if (*slot && *slot != ops)
            return error_set(err, "layers of both %s and %s: a fla model has one layer type (and attention)",
                             (*slot)->name, ops->name);
        *slot = ops;
    }
    if (!lay->main) lay->main = lay->attn, lay->attn = NULL;
    const MixerOps *used[2] = {lay->main, lay->attn};
    for (int i = 0; i < 2; i++)
        if (used[i] && used[i]->fla->check && !used[i]->fla->check(used[i], m, mixer_config(m, used[i]), err))
            return false;
    return true;
}

static void add_false(cJSON *o, const char *const *names) {
    for (; *names; names++) cJSON_AddFalseToObject(o, *names);
}

/* fla's config.json for the model (tests/reference/FLA_MAPPING.md, section c). */
static cJSON *fla_config(const ModelConfig *m, const Layout *lay) {
    cJSON *o = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddStringToObject(o, "model_type", lay->main->fla->model_type);
    cJSON_AddItemToArray(arch, cJSON_CreateString(lay->main->fla->architecture));
    cJSON_AddNumberToObject(o, "hidden_size", m->d_model);
    cJSON_AddNumberToObject(o, "num_hidden_layers", m->n_layers);
    cJSON_AddNumberToObject(o, "num_heads", m->n_heads);
    cJSON_AddNumberToObject(o, "vocab_size", m->vocab_size);
    cJSON_AddNumberToObject(o, "intermediate_size", config_d_ff(m));
    cJSON_AddStringToObject(o, "hidden_act", "swish");
    cJSON_AddNumberToObject(o, "norm_eps", m->norm_eps);
    cJSON_AddNumberToObject(o, "initializer_range", m->init_std);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", m->tie_embeddings);
    cJSON_AddNumberToObject(o, "max_position_embeddings", 1 << 20);
    cJSON_AddNullToObject(o, "pad_token_id");
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    const char *unfused[] = {"fuse_norm", "fuse_swiglu", "fuse_cross_entropy", "fuse_linear_cross_entropy", "use_l2warp",
                             NULL};
    add_false(o, unfused);
    lay->main->fla->config(lay->main, o, m, mixer_config(m, lay->main));
    if (lay->main->fla->attn) return o; /* a model of attention layers only */
    if (!lay->attn) {
        cJSON_AddNullToObject(o, "attn");
        return o;
    }
    cJSON *attn = cJSON_AddObjectToObject(o, "attn"), *layers = cJSON_AddArrayToObject(attn, "layers");
    for (int l = 0; l < m->n_layers; l++)
        if (strcmp(config_layer_mixer(m, l), lay->attn->name) == 0) cJSON_AddItemToArray(layers, cJSON_CreateNumber(l));
    cJSON_AddNumberToObject(attn, "num_heads", m->n_heads);
    lay->attn->fla->attn_config(lay->attn, attn, m, mixer_config(m, lay->attn));
    return o;
}

/* One tensor of the export: a block of rows of an attnlab parameter under fla's name. */
typedef struct {
    char *name;
    int ndim;
    int64_t shape[3];
    const float *data;
} Piece;

typedef struct {
    Piece *p;
    int n, cap;
} Pieces;

static void piece(Pieces *ps, char *name, const float *data, long rows, long cols, bool conv) {
    if (ps->n == ps->cap) ps->p = xrealloc(ps->p, sizeof(Piece) * (size_t)(ps->cap = ps->cap ? 2 * ps->cap : 64));
    Piece *p = &ps->p[ps->n++];
    p->name = name;
    p->data = data;
    p->ndim = conv ? 3 : cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = conv ? 1 : cols;
    p->shape[2] = cols;
}

/* fla's tensors for one attnlab parameter (host copy w): its name under model., the mixer as
 * `attn` and its norm as `attn_norm`, a fused matrix split as the mixer says, the short
 * convolutions [D, W] as fla's Conv1d weights [D, 1, W]. */
static void map_param(Pieces *ps, const ModelConfig *m, const ParamInfo *p, const float *w) {
    long rows = p->shape[0], cols = p->ndim > 1 ? p->shape[1] : 0;
    const char *mixer = strstr(p->name, ".mixer."), *mlp = strstr(p->name, ".mlp.gate_up_proj.");
    int layer = -1;
    sscanf(p->name, "layers.%d.", &layer);
    if (mixer) {
        const char *leaf = mixer + strlen(".mixer."), *names[8];
        const MixerOps *ops = mixer_lookup(config_layer_mixer(m, layer));
        long part[8];
        int n = ops->fla->split ? ops->fla->split(ops, m, mixer_config(m, ops), leaf, names, part) : 0;
        long row = 0;
        for (int i = 0; i < n; row += part[i++])
            piece(ps, xasprintf("model.layers.%d.attn.%s", layer, names[i]), w + row * cols, part[i], cols, false);
        if (!n)
            piece(ps, xasprintf("model.layers.%d.attn.%s", layer, leaf), w, rows, cols, strstr(leaf, "_conv1d.") != NULL);
    } else if (mlp) { /* rows [gate (F) | up (F)] */
        piece(ps, xasprintf("model.layers.%d.mlp.gate_proj.weight", layer), w, rows / 2, cols, false);
        piece(ps, xasprintf("model.layers.%d.mlp.up_proj.weight", layer), w + rows / 2 * cols, rows / 2, cols, false);
    } else if (strstr(p->name, ".mixer_norm.")) {
        piece(ps, xasprintf("model.layers.%d.attn_norm.weight", layer), w, rows, 0, false);
    } else if (strcmp(p->name, "lm_head.weight") == 0) {
        piece(ps, xstrdup(p->name), w, rows, cols, false);
    } else { /* embeddings, the final norm, mlp_norm, mlp.down_proj: fla's name under model. */
        piece(ps, xasprintf("model.%s", p->name), w, rows, cols, false);
    }
}

static bool write_weights(const char *path, const Model *m, const float *w, Error *err) {
    Pieces ps = {0};
    for (int i = 0; i < m->params.n; i++)
        map_param(&ps, &m->cfg, &m->params.info[i], w + m->params.info[i].offset);
    StWriter *sw = st_writer_new();
    st_writer_meta(sw, "format", "pt");
    for (int i = 0; i < ps.n; i++) st_writer_add(sw, ps.p[i].name, ST_F32, ps.p[i].ndim, ps.p[i].shape, ps.p[i].data);
    bool ok = st_writer_save(sw, path, err);
    st_writer_free(sw);
    for (int i = 0; i < ps.n; i++) free(ps.p[i].name);
    free(ps.p);
    return ok;
}

/* attnlab's logits on fixed random tokens, for the check on fla's side. */
static bool write_reference_logits(const char *path, Model *m, Error *err) {
    model_reshape_forward(m, CHECK_B, CHECK_T);
    int n = CHECK_B * CHECK_T, *tokens = xmalloc(sizeof(int) * (size_t)n);
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)n);
    Rng rng;
    rng_seed(&rng, 20261128);
    for (int i = 0; i < n; i++) ids[i] = tokens[i] = (int)rng_below(&rng, (uint64_t)m->V);
    float *logits = xmalloc(sizeof(float) * (size_t)n * m->V);
    model_logits(m, tokens, logits);
    StWriter *sw = st_writer_new();
    int64_t shape_ids[2] = {CHECK_B, CHECK_T}, shape_logits[3] = {CHECK_B, CHECK_T, m->V};
    st_writer_add(sw, "input_ids", ST_I64, 2, shape_ids, ids);
    st_writer_add(sw, "logits", ST_F32, 3, shape_logits, logits);
    bool ok = st_writer_save(sw, path, err);
    st_writer_free(sw);
    free(tokens);
    free(ids);
    free(logits);
    return ok;
}

bool export_fla(const char *checkpoint, const char *out_dir, Error *err) {
    CheckpointState st;
    if (!checkpoint_load(checkpoint, NULL, &st, err)) return false;
    Config c;
    bool ok = config_load_string(&c, st.config_lua, checkpoint, NULL, 0, err);
    checkpoint_state_free(&st);
    if (!ok) return false;
    Layout lay;
    if (!exportable(&c.model, &lay, err)) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        config_free(&c);
        return error_set(err, "%s: cannot export to fla: %s", checkpoint, why);
    }
    if (path_exists(out_dir)) {
        config_free(&c);
        return error_set(err, "%s already exists; export writes a new folder", out_dir);
    }
    Model *m = model_create(&c.model, backend_cpu());
    ok = checkpoint_load(checkpoint, m, &st, err);
    checkpoint_state_free(&st);
    /* everything goes to a temporary folder renamed at the end: no half-written export */
    char *tmp = xasprintf("%s.tmp.%d", out_dir, (int)getpid());
    char *cfg_path = xasprintf("%s/config.json", tmp), *w_path = xasprintf("%s/model.safetensors", tmp),
         *ref_path = xasprintf("%s/reference_logits.safetensors", tmp);
    if (ok && mkdir(tmp, 0777) != 0) ok = error_set(err, "cannot create '%s'", tmp);
    if (ok) {
        cJSON *json = fla_config(&c.model, &lay);
        char *text = cJSON_Print(json);
        size_t len = strlen(text);
        text = xrealloc(text, len + 2);
        strcpy(text + len, "\n");
        write_file_atomic(cfg_path, text, len + 1);
        free(text);
        cJSON_Delete(json);
        ok = write_weights(w_path, m, m->params.w, err) && write_reference_logits(ref_path, m, err);
    }
    if (ok && rename(tmp, out_dir) != 0) ok = error_set(err, "cannot rename '%s' to '%s'", tmp, out_dir);
    if (!ok) remove_tree(tmp);
    free(tmp);
    free(cfg_path);
    free(w_path);
    free(ref_path);
    model_free(m);
    config_free(&c);
    return ok;
}
