/* Model assembly: builds the parameter table from the config, sizes the activation arena, and
 * runs forward and backward as a list of backend and module calls. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

Model *model_create(const ModelConfig *mc, const Backend *be) {
    Model *m = xcalloc(1, sizeof *m);
    m->cfg = *mc;
    m->be = be;
    m->V = mc->vocab_size;
    m->C = mc->d_model;
    m->L = mc->n_layers;
    m->F = config_d_ff(mc);
    m->rope.base = mc->rope_base;
    m->rope.be = be;
    float std = (float)mc->init_std, out_std = (float)(mc->init_std / sqrt(2.0 * mc->n_layers));

    ParamSet *ps = &m->params;
    params_matrix(ps, &m->wte, "wte", m->V, m->C, std);
    m->layers = xcalloc((size_t)m->L, sizeof(Layer));
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        char name[96];
        snprintf(name, sizeof name, "layers.%d.norm1", l);
        params_gain(ps, &layer->norm1, name, m->C);
        MixerSpec spec = {.model = mc, .layer = l, .rope = &m->rope};
        layer->mixer = mixer_create(mc->mixer, &spec, ps);
        if (!layer->mixer) die("model.mixer: unknown mixer '%s' (expected one of %s)", mc->mixer, mixer_names());
        snprintf(name, sizeof name, "layers.%d.norm2", l);
        params_gain(ps, &layer->norm2, name, m->C);
        mlp_create(&layer->mlp, ps, l, m->C, m->F, std, out_std);
    }
    params_gain(ps, &m->norm_f, "norm_f", m->C);
    if (!mc->tie_embeddings) params_matrix(ps, &m->head, "head", m->V, m->C, std);
    params_bind(ps, be);
    if (mc->tie_embeddings) m->head = m->wte;
    return m;
}

void model_init_params(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&m->params, &rng);
}

void model_reshape(Model *m, int B, int T) {
    /* a smaller batch fits in the buffers already there: every buffer scales with B*T and the
     * per-thread attention scratch with T */
    if ((size_t)B * T <= m->cap_tokens && T <= m->cap_T) {
        m->B = B;
        m->T = T;
        return;
    }
    arena_free(&m->acts);
    arena_free(&m->scratch);
    free(m->residual);
    m->B = m->cap_B = B;
    m->T = m->cap_T = T;
    m->cap_tokens = (size_t)B * T;
    size_t N = (size_t)B * T, NC = N * m->C;
    Arena *a = &m->acts, *s = &m->scratch;
    m->residual = xcalloc((size_t)m->L + 1, sizeof(float *));
    for (int l = 0; l <= m->L; l++) arena_floats(a, &m->residual[l], NC);
    arena_ints(a, &m->tokens, N);
    arena_ints(a, &m->targets, N);
    arena_floats(a, &m->ln_f, NC);
    arena_floats(a, &m->rstd_f, N);
    arena_floats(a, &m->dres, NC);
    arena_floats(a, &m->dln, NC);
    arena_declare(a, &m->xent_work, m->be->lm_head_xent_workspace((int)N, m->C, m->V));
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        arena_floats(a, &layer->ln1, NC);
        arena_floats(a, &layer->rstd1, N);
        arena_floats(a, &layer->mid, NC);
        arena_floats(a, &layer->ln2, NC);
        arena_floats(a, &layer->rstd2, N);
        /* scratch is live only inside one layer's call: every layer shares the same bytes */
        size_t mark = arena_mark(s);
        layer->mixer->ops->declare(layer->mixer, m->be, a, s, B, T);
        mlp_declare(&layer->mlp, a, s, (int)N);
        arena_rewind(s, mark);
    }
    arena_bind(a, m->be);
    arena_bind(s, m->be);
    rope_cache_fill(&m->rope, T);
}

XentStats model_forward(Model *m, const int *tokens, const int *targets, float grad_scale) {
    const Backend *be = m->be;
    int B = m->B, T = m->T, N = B * T, C = m->C;
    float eps = (float)m->cfg.norm_eps;
    be->upload(m->tokens, tokens, sizeof(int) * (size_t)N);
    be->upload(m->targets, targets, sizeof(int) * (size_t)N);
    be->embedding_forward(m->residual[0], m->tokens, m->wte.w, N, C);
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        const float *x = m->residual[l];
        float *out = m->residual[l + 1];
        be->rmsnorm_forward(layer->ln1, layer->rstd1, x, layer->norm1.w, N, C, eps);
        be->copy(layer->mid, x, (size_t)N * C);
        layer->mixer->ops->forward(layer->mixer, be, layer->ln1, layer->mid, B, T);
        be->rmsnorm_forward(layer->ln2, layer->rstd2, layer->mid, layer->norm2.w, N, C, eps);
        be->copy(out, layer->mid, (size_t)N * C);
        mlp_forward(&layer->mlp, be, layer->ln2, out, N);
    }
    be->rmsnorm_forward(m->ln_f, m->rstd_f, m->residual[m->L], m->norm_f.w, N, C, eps);
    bool train = grad_scale > 0.0f;
    return be->lm_head_xent(train ? m->dln : NULL, train ? m->head.g : NULL, m->ln_f, m->head.w, m->targets, N, C,
                            m->V, grad_scale, m->xent_work);
}

/* dres carries d(loss)/d(residual stream) down the layers; each norm's backward adds its
 * branch's contribution to it, which is the residual connection's backward. */
void model_backward(Model *m) {
    const Backend *be = m->be;
    int B = m->B, T = m->T, N = B * T, C = m->C;
    be->zero(m->dres, (size_t)N * C);
    be->rmsnorm_backward(m->dres, m->norm_f.g, m->dln, m->residual[m->L], m->norm_f.w, m->rstd_f, N, C);
    for (int l = m->L - 1; l >= 0; l--) {
        Layer *layer = &m->layers[l];
        mlp_backward(&layer->mlp, be, layer->ln2, m->dres, m->dln, N);
        be->rmsnorm_backward(m->dres, layer->norm2.g, m->dln, layer->mid, layer->norm2.w, layer->rstd2, N, C);
        layer->mixer->ops->backward(layer->mixer, be, layer->ln1, m->dres, m->dln, B, T);
        be->rmsnorm_backward(m->dres, layer->norm1.g, m->dln, m->residual[l], layer->norm1.w, layer->rstd1, N, C);
    }
    be->embedding_backward(m->wte.g, m->dres, m->tokens, N, C);
}

size_t model_param_count(const Model *m) {
    size_t n = 0;
    for (int i = 0; i < m->params.n; i++) n += m->params.info[i].count;
    return n;
}

double model_flops_per_token(const Model *m, int T) {
    double f = 2.0 * m->C * m->V; /* LM head */
    for (int l = 0; l < m->L; l++) {
        const Mixer *mx = m->layers[l].mixer;
        f += mx->ops->flops_per_token(mx, T);
        f += 2.0 * 3.0 * m->C * m->F; /* SwiGLU: gate, up, down */
    }
    return f;
}

void model_free(Model *m) {
    if (!m) return;
    arena_free(&m->acts);
    arena_free(&m->scratch);
    free(m->residual);
    for (int l = 0; l < m->L; l++) m->layers[l].mixer->ops->destroy(m->layers[l].mixer);
    free(m->layers);
    rope_cache_free(&m->rope);
    params_free(&m->params);
    free(m);
}
