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
    m->poison_layer = -1;
    m->V = mc->vocab_size;
    m->C = mc->d_model;
    m->L = mc->n_layers;
    m->F = config_d_ff(mc);
    m->rope.base = mc->rope_base;
    m->rope.be = be;
    float std = (float)mc->init_std, out_std = (float)config_out_init_std(mc);

    ParamSet *ps = &m->params;
    params_matrix(ps, &m->wte, "embeddings.weight", m->V, m->C, std);
    m->layers = xcalloc((size_t)m->L, sizeof(Layer));
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        char name[96];
        snprintf(name, sizeof name, "layers.%d.mixer_norm.weight", l);
        params_gain(ps, &layer->norm1, name, m->C);
        MixerSpec spec = {.model = mc, .layer = l, .rope = &m->rope};
        const char *mixer_name = config_layer_mixer(mc, l);
        layer->mixer = mixer_create(mixer_name, &spec, ps);
        if (!layer->mixer) die("layer %d: unknown mixer '%s' (expected one of %s)", l, mixer_name, mixer_names(MIXERS_ALL));
        if (!mc->mlp) continue;
        snprintf(name, sizeof name, "layers.%d.mlp_norm.weight", l);
        params_gain(ps, &layer->norm2, name, m->C);
        mlp_create(&layer->mlp, ps, l, m->C, m->F, std, out_std);
    }
    params_gain(ps, &m->norm_f, "norm.weight", m->C);
    if (!mc->tie_embeddings) params_matrix(ps, &m->head, "lm_head.weight", m->V, m->C, std);
    params_bind(ps, be);
    if (mc->tie_embeddings) m->head = m->wte;
    return m;
}

void model_init_params(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&m->params, &rng);
}

/* Forgets the recorded decode step: the buffers it reads are about to be made again. */
static void drop_decode_graph(Model *m) {
    if (m->decode_graph) m->be->graph_free(m->decode_graph);
    m->decode_graph = NULL;
    m->decode_steps = 0;
    m->decode_eager = false;
}

/* Sizes every buffer for B x T tokens. forward_only: a layer's activations are dead once the next
 * layer starts, so all layers share the same bytes (rewound like scratch) and the stream needs two
 * buffers, not L + 1; nothing the backward reads is kept. */
static void shape_buffers(Model *m, int B, int T, bool forward_only) {
    drop_decode_graph(m);
    arena_free(&m->acts);
    arena_free(&m->scratch);
    free(m->residual);
    m->B = m->cap_B = B;
    m->T = m->cap_T = T;
    m->cap_tokens = (size_t)B * T;
    m->forward_only = forward_only;
    size_t N = (size_t)B * T, NC = N * m->C;
    Arena *a = &m->acts, *s = &m->scratch;
    m->residual = xcalloc((size_t)m->L + 1, sizeof(float *));
    int streams = forward_only ? 2 : m->L + 1;
    for (int l = 0; l < streams; l++) arena_floats(a, &m->residual[l], NC);
    arena_ints(a, &m->tokens, N);
    arena_ints(a, &m->targets, N);
    arena_ints(a, &m->scored_rows, N);
    arena_floats(a, &m->normed, NC);
    arena_floats(a, &m->ln_f, NC);
    arena_floats(a, &m->rstd_f, N);
    m->dres = m->dln = NULL;
    if (!forward_only) {
        arena_floats(a, &m->dres, NC);
        arena_floats(a, &m->dln, NC);
    }
    arena_declare(a, &m->xent_work, m->be->lm_head_xent_workspace((int)N, m->C, m->V));
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        size_t acts_mark = arena_mark(a);
        arena_floats(a, &layer->rstd1, N);
        if (m->cfg.mlp) {
            arena_floats(a, &layer->mid, NC);
            arena_floats(a, &layer->rstd2, N);
        }
        /* scratch is live only inside one call of a mixer or an MLP (they run one after the
         * other, forward and backward): every layer's mixer and MLP share the same bytes */
        size_t mark = arena_mark(s);
        layer->mixer->ops->declare(layer->mixer, m->be, a, s, B, T);
        arena_rewind(s, mark);
        if (m->cfg.mlp) mlp_declare(&layer->mlp, m->be, a, s, (int)N);
        arena_rewind(s, mark);
        if (forward_only) arena_rewind(a, acts_mark);
    }
    arena_bind(a, m->be);
    arena_bind(s, m->be);
    for (int l = streams; l <= m->L; l++) m->residual[l] = m->residual[l % 2];
    rope_cache_fill(&m->rope, T);
}

static bool buffers_fit(const Model *m, int B, int T) { return (size_t)B * T <= m->cap_tokens && T <= m->cap_T; }

void model_reshape(Model *m, int B, int T) {
    /* a smaller batch fits in the buffers already there: every buffer scales with B*T and the
     * per-thread attention scratch with T */
    if (!m->forward_only && buffers_fit(m, B, T)) {
        m->B = B;
        m->T = T;
        return;
    }
    shape_buffers(m, B, T, false);
}

void model_reshape_forward(Model *m, int B, int T) {
    if (buffers_fit(m, B, T)) {
        m->B = B;
        m->T = T;
        return;
    }
    shape_buffers(m, B, T, true);
}

ModelShape model_shape(const Model *m) { return (ModelShape){m->B, m->T, m->forward_only}; }

void model_restore_shape(Model *m, ModelShape shape) {
    if (!shape.B) return;
    if (shape.forward_only) model_reshape_forward(m, shape.B, shape.T);
    else model_reshape(m, shape.B, shape.T);
}

int model_nonfinite_layer(const Model *m) {
    size_t n = (size_t)m->B * m->T * m->C;
    for (int l = 0; l < m->L; l++) /* a sum of squares is finite only if every value is */
        if (!isfinite(m->be->sum_squares(m->residual[l + 1], n))) return l;
    return -1;
}

/* The LM head and its loss on the rows that have a target (and, training, d(loss)/d(ln_f) in
 * dln). Tasks that score a few positions (MQAR its queries: 1/16 of the tokens at Zoology's
 * lengths) would spend most of a small model's step on logits no loss reads, so those rows are
 * gathered first, in order (the loss sums in the same order), and their gradient scattered back;
 * the embedding lookup is that row gather and its backward that scatter-add. The gathered rows go
 * to `normed`, free once the last layer has run, and their gradient to `dres`, free until
 * model_backward zeroes it. Every row scored (language modelling): no copies. */
static XentStats head_loss(Model *m, const int *targets, float grad_scale) {
    const Backend *be = m->be;
    int N = m->B * m->T, C = m->C, M = 0;
    bool train = grad_scale > 0.0f;
    int *rows = xmalloc(sizeof(int) * 2 * (size_t)N), *kept = rows + N;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) {
            rows[M] = i;
            kept[M++] = targets[i];
        }
    XentStats st = {0, 0, 0};
    if (M == N) {
        be->upload(m->targets, targets, sizeof(int) * (size_t)N);
        st = be->lm_head_xent(train ? m->dln : NULL, train ? m->head.g : NULL, m->ln_f, m->head.w, m->targets, N, C,
                              m->V, grad_scale, m->xent_work);
    } else {
        if (M > 0) {
            be->upload(m->scored_rows, rows, sizeof(int) * (size_t)M);
            be->upload(m->targets, kept, sizeof(int) * (size_t)M);
            be->embedding_forward(m->normed, m->scored_rows, m->ln_f, M, C);
            st = be->lm_head_xent(train ? m->dres : NULL, train ? m->head.g : NULL, m->normed, m->head.w, m->targets,
                                  M, C, m->V, grad_scale, m->xent_work);
        }
        if (train) {
            be->zero(m->dln, (size_t)N * C);
            if (M > 0) be->embedding_backward(m->dln, m->dres, m->scored_rows, M, C);
        }
    }
    free(rows);
    return st;
}

/* A block's norm into m->normed, held (hold_operand) for the products of the branch that reads
 * it: the GPU rounds it to bf16 in the norm's own pass, once for all of them (the mixer's
 * projections and the MLP's, forward and backward), instead of once a product. */
static void norm_for_branch(Model *m, float *rstd, const float *x, const float *w) {
    const Backend *be = m->be;
    int N = m->B * m->T, C = m->C;
    be->hold_operand(m->normed, (size_t)N * C);
    be->rmsnorm_forward(m->normed, rstd, x, w, N, C, (float)m->cfg.norm_eps);
}

XentStats model_forward(Model *m, const int *tokens, const int *targets, float grad_scale) {
    if (grad_scale > 0.0f && m->forward_only) die("model_forward: a training forward on buffers made for forwards alone");
    const Backend *be = m->be;
    int B = m->B, T = m->T, N = B * T, C = m->C;
    float eps = (float)m->cfg.norm_eps;
    be->upload(m->tokens, tokens, sizeof(int) * (size_t)N);
    be->embedding_forward(m->residual[0], m->tokens, m->wte.w, N, C);
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        const float *x = m->residual[l];
        float *out = m->residual[l + 1];
        norm_for_branch(m, layer->rstd1, x, layer->norm1.w);
        /* without the MLP the mixer adds straight into the layer's output */
        float *mixed = m->cfg.mlp ? layer->mid : out;
        be->copy(mixed, x, (size_t)N * C);
        layer->mixer->ops->forward(layer->mixer, be, m->normed, mixed, B, T);
        if (m->cfg.mlp) {
            norm_for_branch(m, layer->rstd2, layer->mid, layer->norm2.w);
            be->copy(out, layer->mid, (size_t)N * C);
            mlp_forward(&layer->mlp, be, m->normed, out, N);
        }
        if (l == m->poison_layer) {
            float nan = NAN;
            be->upload(out, &nan, sizeof nan);
        }
    }
    be->hold_operand(NULL, 0); /* the head writes normed's rows itself (scored rows) */
    be->rmsnorm_forward(m->ln_f, m->rstd_f, m->residual[m->L], m->norm_f.w, N, C, eps);
    return head_loss(m, targets, grad_scale);
}

static void gradients_ready(Model *m, const float *from) {
    if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, (size_t)(from - m->params.g));
}

/* dres carries d(loss)/d(residual stream) down the layers; each norm's backward adds its
 * branch's contribution to it, which is the residual connection's backward. A norm's output is
 * computed again (by the forward's own kernel, so bit for bit) just before the branch that reads
 * it runs backward. */
void model_backward(Model *m) {
    if (m->forward_only) die("model_backward: the buffers were made for forwards alone (model_reshape_forward)");
    const Backend *be = m->be;
    int B = m->B, T = m->T, N = B * T, C = m->C;
    be->zero(m->dres, (size_t)N * C);
    be->rmsnorm_backward(m->dres, m->norm_f.g, m->dln, m->residual[m->L], m->norm_f.w, m->rstd_f, N, C);
    /* the parameter table is embedding, layers bottom up, final norm, head: what the backward
     * has finished is always a tail of the buffer */
    gradients_ready(m, m->norm_f.g);
    for (int l = m->L - 1; l >= 0; l--) {
        Layer *layer = &m->layers[l];
        if (m->cfg.mlp) {
            norm_for_branch(m, layer->rstd2, layer->mid, layer->norm2.w);
            mlp_backward(&layer->mlp, be, m->normed, m->dres, m->dln, N);
            be->rmsnorm_backward(m->dres, layer->norm2.g, m->dln, layer->mid, layer->norm2.w, layer->rstd2, N, C);
        }
        norm_for_branch(m, layer->rstd1, m->residual[l], layer->norm1.w);
        layer->mixer->ops->backward(layer->mixer, be, m->normed, m->dres, m->dln, B, T);
        be->rmsnorm_backward(m->dres, layer->norm1.g, m->dln, m->residual[l], layer->norm1.w, layer->rstd1, N, C);
        gradients_ready(m, layer->norm1.g); /* a layer's first parameter */
    }
    be->hold_operand(NULL, 0);
    be->embedding_backward(m->wte.g, m->dres, m->tokens, N, C);
    gradients_ready(m, m->params.g);
}

void model_logits(Model *m, const int *tokens, float *logits) {
    size_t N = (size_t)m->B * m->T;
    int *no_targets = xmalloc(sizeof(int) * N);
    for (size_t i = 0; i < N; i++) no_targets[i] = -1;
    model_forward(m, tokens, no_targets, 0.0f);
    free(no_targets);
    float *dev = m->be->alloc(sizeof(float) * N * m->V);
    m->be->gemm(false, true, (int)N, m->V, m->C, 1.0f, m->ln_f, m->C, m->head.w, m->C, 0.0f, dev, m->V);
    m->be->download(logits, dev, sizeof(float) * N * m->V);
    m->be->release(dev);
}

void model_decode_begin(Model *m, int B, long max_context) {
    if ((size_t)B > m->cap_tokens) model_reshape_forward(m, B, 1);
    drop_decode_graph(m);
    arena_free(&m->decode_cache);
    arena_free(&m->decode_scratch);
    arena_ints(&m->decode_scratch, &m->decode_at, 2); /* read by every layer: below their shared scratch */
    for (int l = 0; l < m->L; l++) {
        Mixer *mx = m->layers[l].mixer;
        size_t mark = arena_mark(&m->decode_scratch);
        mx->ops->declare_decode(mx, m->be, &m->decode_cache, &m->decode_scratch, B, max_context);
        arena_rewind(&m->decode_scratch, mark);
    }
    arena_floats(&m->decode_scratch, &m->decode_logits, (size_t)B * m->V);
    if (m->cfg.mlp) arena_floats(&m->decode_scratch, &m->decode_act, (size_t)B * m->F);
    arena_bind(&m->decode_cache, m->be);
    arena_bind(&m->decode_scratch, m->be);
    if (max_context > INT32_MAX) die("decode: a context of %ld tokens is too long", max_context);
    rope_cache_fill(&m->rope, (int)max_context);
    m->be->decode_weights(NULL, 0, true);
    m->be->decode_weights(m->params.w, m->params.total, true); /* the weights as they are now */
    for (int l = 0; l < m->L; l++) /* after the copy: a mixer may add the weights it derives */
        m->layers[l].mixer->ops->decode_reset(m->layers[l].mixer, m->be, B);
    m->decode_B = B;
    m->decode_context = max_context;
}

/* The forward of one position per sequence, with the block buffers used for B rows: everything
 * between the uploads and the download, which reads the position only through `at`. */
static void decode_body(Model *m, const DecodeAt *at) {
    const Backend *be = m->be;
    int B = m->decode_B, C = m->C;
    float eps = (float)m->cfg.norm_eps;
    float *x = m->residual[0];
    be->embedding_forward(x, m->tokens, m->wte.w, B, C);
    for (int l = 0; l < m->L; l++) {
        Layer *layer = &m->layers[l];
        /* the stream is updated in place (no backward keeps the block's middle): two copies a
         * layer fewer, which at one token are launches, not bytes; and the norms go into the
         * products that read them, where the mixer can take its input that way */
        const RowNorm norm1 = {layer->norm1.w, eps}, norm2 = {layer->norm2.w, eps};
        if (layer->mixer->ops->decode_takes_norm) {
            layer->mixer->ops->decode_step(layer->mixer, be, x, &norm1, x, B, at);
        } else {
            be->rmsnorm_forward(m->normed, layer->rstd1, x, layer->norm1.w, B, C, eps);
            layer->mixer->ops->decode_step(layer->mixer, be, m->normed, NULL, x, B, at);
        }
        if (!m->cfg.mlp) continue;
        mlp_decode_step(&layer->mlp, be, x, &norm2, m->decode_act, x, B);
    }
    const RowNorm norm_f = {m->norm_f.w, eps};
    const LinearOut logits = {m->head.w, m->decode_logits, m->V, LINEAR_SET};
    be->linear_group(x, &norm_f, B, C, 1, &logits);
}

/* The first step of a decode_begin runs as it is (lazy allocations happen there); the second is
 * recorded as a graph where the backend can (the GPU), and every later one replays it. */
void model_decode_step(Model *m, const int *tokens, long pos, float *logits) {
    const Backend *be = m->be;
    int B = m->decode_B;
    if (pos < 0 || pos >= m->decode_context)
        die("decode: position %ld is outside the context of %ld", pos, m->decode_context);
    be->upload(m->tokens, tokens, sizeof(int) * (size_t)B);
    int pos_len[2] = {(int)pos, (int)pos + 1};
    be->upload(m->decode_at, pos_len, sizeof pos_len);
    rope_cache_at(&m->rope, pos);
    DecodeAt at = {pos, m->decode_at};
    be->decode_weights(m->params.w, m->params.total, false); /* the products read decode_begin's copy */
    if (!m->decode_graph && !m->decode_eager && m->decode_steps >= 1) {
        if (be->graph_begin()) {
            decode_body(m, &at);
            m->decode_graph = be->graph_end();
        }
        m->decode_eager = !m->decode_graph;
    }
    if (m->decode_graph) be->graph_launch(m->decode_graph);
    else decode_body(m, &at);
    be->decode_weights(NULL, 0, false);
    m->decode_steps++;
    be->download(logits, m->decode_logits, sizeof(float) * (size_t)B * m->V);
}

size_t model_cache_bytes(const Model *m, long context) {
    size_t total = 0;
    for (int l = 0; l < m->L; l++) total += m->layers[l].mixer->ops->cache_bytes(m->layers[l].mixer, context);
    return total;
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
        if (m->cfg.mlp) f += 2.0 * 3.0 * m->C * m->F; /* SwiGLU: gate, up, down */
    }
    return f;
}

void model_free(Model *m) {
    if (!m) return;
    drop_decode_graph(m);
    if (m->decode_B) m->be->decode_weights(NULL, 0, true); /* its decode's weight copies */
    arena_free(&m->decode_cache);
    arena_free(&m->decode_scratch);
    arena_free(&m->acts);
    arena_free(&m->scratch);
    free(m->residual);
    for (int l = 0; l < m->L; l++) m->layers[l].mixer->ops->destroy(m->layers[l].mixer);
    free(m->layers);
    rope_cache_free(&m->rope);
    params_free(&m->params);
    free(m);
}
