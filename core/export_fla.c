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
#include "rng.h"
#include "safetensors.h"

enum { CHECK_B = 2, CHECK_T = 100 }; /* the reference logits: T above fla's chunk of 64, not a multiple */

/* What the model is made of, for fla's model type. */
typedef struct {
    const char *linear;   /* "kda", "gdn" or NULL */
    bool softmax;         /* some layers are softmax attention */
    const DeltaConfig *dc; /* the linear-time mixer's section */
} Layout;

/* Checks that fla has this model; fills the layout, or err with the first thing it lacks. */
static bool exportable(const ModelConfig *m, Layout *lay, Error *err) {
    memset(lay, 0, sizeof *lay);
    if (!m->mlp) return error_set(err, "model.mlp = false: fla's models always have an MLP in each block");
    for (int l = 0; l < m->n_layers; l++) {
        const char *name = config_layer_mixer(m, l);
        if (strcmp(name, "softmax") == 0) {
            lay->softmax = true;
        } else if (strcmp(name, "kda") == 0 || strcmp(name, "gdn") == 0) {
            if (lay->linear && strcmp(lay->linear, name) != 0)
                return error_set(err, "layers of both kda and gdn: a fla model has one linear-time layer type");
            lay->linear = name;
        } else {
            return error_set(err, "layer %d is %s: fla's kda and gated_deltanet models take only softmax attention "
                                  "besides their own layers (no mla, no linear)", l, name);
        }
    }
    if (lay->softmax) {
        if (strcmp(m->softmax.position, "rope") != 0)
            return error_set(err, "model.softmax.position = '%s': fla's attention always uses RoPE", m->softmax.position);
        if (config_head_dim(m) * m->n_heads != m->d_model)
            return error_set(err, "softmax heads of %d x %d channels in d_model %d: fla's attention has head_dim = "
                                  "hidden_size / num_heads", m->n_heads, config_head_dim(m), m->d_model);
    }
    if (lay->linear) {
        const DeltaConfig *d = strcmp(lay->linear, "kda") == 0 ? &m->kda : &m->gdn;
        bool kda = d == &m->kda;
        lay->dc = d;
        if (!d->qk_norm) return error_set(err, "model.%s.qk_norm = false: fla always L2-normalizes q and k", lay->linear);
        if (strcmp(d->position, "nope") != 0)
            return error_set(err, "model.%s.position = '%s': fla's %s has no rotary embedding", lay->linear, d->position,
                             lay->linear);
        if (kda && !d->output_gate) return error_set(err, "model.kda.output_gate = false: fla's KDA is always gated");
        if (kda && m->kda.gate_rank && m->kda.gate_rank != config_delta_dims(m, d).v)
            return error_set(err, "model.kda.gate_rank = %d: fla's KDA gates have the value head width (%d)",
                             m->kda.gate_rank, config_delta_dims(m, d).v);
    }
    return true;
}

static void add_false(cJSON *o, const char *const *names) {
    for (; *names; names++) cJSON_AddFalseToObject(o, *names);
}

/* fla's config.json for the model (FLA_MAPPING.md c.1 to c.3). */
static cJSON *fla_config(const ModelConfig *m, const Layout *lay) {
    cJSON *o = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(o, "architectures");
    const char *type = !lay->linear ? "transformer" : strcmp(lay->linear, "kda") == 0 ? "kda" : "gated_deltanet";
    const char *cls = !lay->linear ? "TransformerForCausalLM" : lay->linear[0] == 'k' ? "KDAForCausalLM"
                                                                                     : "GatedDeltaNetForCausalLM";
    cJSON_AddStringToObject(o, "model_type", type);
    cJSON_AddItemToArray(arch, cJSON_CreateString(cls));
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
    int kv = m->softmax.n_kv_heads ? m->softmax.n_kv_heads : m->n_heads;
    if (!lay->linear) {
        cJSON_AddNumberToObject(o, "num_kv_heads", kv);
        cJSON_AddNumberToObject(o, "rope_theta", m->rope_base);
        cJSON_AddNullToObject(o, "window_size");
        const char *off[] = {"qkv_bias", "qk_norm", NULL};
        add_false(o, off);
        return o;
    }
    DeltaDims d = config_delta_dims(m, lay->dc);
    cJSON_AddStringToObject(o, "attn_mode", "chunk");
    cJSON_AddNumberToObject(o, "head_dim", d.k);
    cJSON_AddNumberToObject(o, "expand_v", (double)d.v / d.k);
    cJSON_AddNullToObject(o, "num_v_heads");
    cJSON_AddBoolToObject(o, "use_short_conv", lay->dc->short_conv);
    cJSON_AddNumberToObject(o, "conv_size", lay->dc->conv_size);
    cJSON_AddFalseToObject(o, "allow_neg_eigval");
    if (lay->linear[0] == 'k') {
        cJSON_AddFalseToObject(o, "safe_gate");
        cJSON_AddNullToObject(o, "lower_bound");
    } else {
        cJSON_AddBoolToObject(o, "use_gate", lay->dc->output_gate);
    }
    if (!lay->softmax) {
        cJSON_AddNullToObject(o, "attn");
        return o;
    }
    cJSON *attn = cJSON_AddObjectToObject(o, "attn"), *layers = cJSON_AddArrayToObject(attn, "layers");
    for (int l = 0; l < m->n_layers; l++)
        if (strcmp(config_layer_mixer(m, l), "softmax") == 0) cJSON_AddItemToArray(layers, cJSON_CreateNumber(l));
    cJSON_AddNumberToObject(attn, "num_heads", m->n_heads);
    cJSON_AddNumberToObject(attn, "num_kv_heads", kv);
    cJSON_AddFalseToObject(attn, "qkv_bias");
    cJSON_AddNullToObject(attn, "window_size");
    cJSON_AddNumberToObject(attn, "rope_theta", m->rope_base);
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

/* fla's tensors for one attnlab parameter (host copy w). */
static void map_param(Pieces *ps, const ModelConfig *m, const ParamInfo *p, const float *w) {
    long rows = p->shape[0], cols = p->ndim > 1 ? p->shape[1] : 0;
    const char *mixer = strstr(p->name, ".mixer."), *mlp = strstr(p->name, ".mlp.gate_up_proj.");
    int layer = -1;
    sscanf(p->name, "layers.%d.", &layer);
    if (mixer && strstr(mixer, "_conv1d.")) {
        piece(ps, xasprintf("model.layers.%d.attn%s", layer, mixer + strlen(".mixer")), w, rows, cols, true);
    } else if (mixer && strcmp(mixer, ".mixer.qkv_proj.weight") == 0) { /* rows [q (H D) | k (Hkv D) | v (Hkv D)] */
        long D = config_head_dim(m), q = (long)m->n_heads * D, kv = (rows - q) / 2;
        piece(ps, xasprintf("model.layers.%d.attn.q_proj.weight", layer), w, q, cols, false);
        piece(ps, xasprintf("model.layers.%d.attn.k_proj.weight", layer), w + q * cols, kv, cols, false);
        piece(ps, xasprintf("model.layers.%d.attn.v_proj.weight", layer), w + (q + kv) * cols, kv, cols, false);
    } else if (mixer) {
        piece(ps, xasprintf("model.layers.%d.attn%s", layer, mixer + strlen(".mixer")), w, rows, cols, false);
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
    model_reshape(m, CHECK_B, CHECK_T);
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
