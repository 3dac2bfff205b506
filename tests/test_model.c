/* Gradient checks of the modules (MLP, the softmax mixer) and of the whole model, parameter by
 * parameter, against finite differences of the loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/mixer.h"
#include "core/mlp.h"
#include "core/model.h"
#include "core/util.h"
#include "gradcheck.h"
#include "test.h"

/* ---- a module harness: x -> y += module(x), loss = sum(y * R) ---- */

typedef struct {
    const Backend *be;
    int B, T, C;
    float *x, *y, *R;
    Mlp *mlp;
    Mixer *mixer;
} ModCase;

static double mod_loss(void *p) {
    ModCase *c = p;
    size_t n = (size_t)c->B * c->T * c->C;
    memset(c->y, 0, sizeof(float) * n);
    if (c->mlp) mlp_forward(c->mlp, c->be, c->x, c->y, c->B * c->T);
    else c->mixer->ops->forward(c->mixer, c->be, c->x, c->y, c->B, c->T);
    return dot_loss(c->y, c->R, n);
}

static void mod_backward(ModCase *c, float *dx) {
    mod_loss(c);
    if (c->mlp) mlp_backward(c->mlp, c->be, c->x, c->R, dx, c->B * c->T);
    else c->mixer->ops->backward(c->mixer, c->be, c->x, c->R, dx, c->B, c->T);
}

/* Checks d/dx and d/d(every parameter) of a module whose params are in ps. */
static void check_module(ModCase *c, ParamSet *ps, Rng *rng, const char *what) {
    size_t n = (size_t)c->B * c->T * c->C;
    float *dx = new_zeros(n);
    params_zero_grad(ps);
    mod_backward(c, dx);
    double e = gradcheck(mod_loss, c, c->x, dx, n, 300, 1e-2f, rng);
    CHECK(e < GRAD_TOL, "%s: dx relative error %.2e", what, e);
    for (int i = 0; i < ps->n; i++) {
        ParamInfo *p = &ps->info[i];
        double ep = gradcheck(mod_loss, c, p->slot->w, p->slot->g, p->count, 200, 1e-2f, rng);
        CHECK(ep < GRAD_TOL, "%s: %s relative error %.2e", what, p->name, ep);
    }
}

static ModCase mod_case(int B, int T, int C, Rng *rng) {
    ModCase c = {backend_cpu(), B, T, C, NULL, NULL, NULL, NULL, NULL};
    size_t n = (size_t)B * T * C;
    c.x = new_normal(n, 1.0f, rng);
    c.y = new_zeros(n);
    c.R = new_normal(n, 1.0f, rng);
    return c;
}

TEST(test_mlp_gradient) {
    Rng rng;
    rng_seed(&rng, 21);
    ModCase c = mod_case(2, 3, 8, &rng);
    ParamSet ps = {0};
    Mlp mlp;
    mlp_create(&mlp, &ps, 0, c.C, 12, 0.3f, 0.3f);
    params_bind(&ps, c.be);
    params_init(&ps, &rng);
    Arena acts = {0}, scratch = {0};
    mlp_declare(&mlp, &acts, &scratch, c.B * c.T);
    arena_bind(&acts, c.be);
    arena_bind(&scratch, c.be);
    c.mlp = &mlp;
    check_module(&c, &ps, &rng, "mlp");
}

static void check_softmax_mixer(const char *position, int n_kv_heads, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    Config cfg;
    config_defaults(&cfg);
    cfg.model.d_model = 16;
    cfg.model.n_heads = 4;
    cfg.model.n_layers = 1;
    cfg.model.init_std = 0.3;
    cfg.model.softmax.n_kv_heads = n_kv_heads;
    free(cfg.model.softmax.position);
    cfg.model.softmax.position = xstrdup(position);
    ModCase c = mod_case(2, 11, cfg.model.d_model, &rng);
    ParamSet ps = {0};
    RopeCache rope = {.base = 10000, .be = c.be};
    MixerSpec spec = {.model = &cfg.model, .layer = 0, .rope = &rope};
    Mixer *mx = mixer_create("softmax", &spec, &ps);
    params_bind(&ps, c.be);
    params_init(&ps, &rng);
    Arena acts = {0}, scratch = {0};
    mx->ops->declare(mx, c.be, &acts, &scratch, c.B, c.T);
    arena_bind(&acts, c.be);
    arena_bind(&scratch, c.be);
    rope_cache_fill(&rope, c.T);
    c.mixer = mx;
    char what[64];
    snprintf(what, sizeof what, "softmax %s kv%d", position, n_kv_heads);
    check_module(&c, &ps, &rng, what);
}

TEST(test_softmax_mixer_rope_gradient) { check_softmax_mixer("rope", 0, 22); }
TEST(test_softmax_mixer_nope_gqa_gradient) { check_softmax_mixer("nope", 2, 23); }

/* ---- the whole model ---- */

typedef struct {
    Model *m;
    int *tokens, *targets;
} ModelCase;

static double model_loss(void *p) {
    ModelCase *c = p;
    return model_forward(c->m, c->tokens, c->targets, 0.0f).loss_sum;
}

static void check_model(bool tie, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    Config cfg;
    config_defaults(&cfg);
    cfg.model.vocab_size = 11;
    cfg.model.d_model = 16;
    cfg.model.n_heads = 2;
    cfg.model.n_layers = 2;
    cfg.model.d_ff = 24;
    cfg.model.init_std = 0.3;
    cfg.model.tie_embeddings = tie;
    Model *m = model_create(&cfg.model, backend_cpu());
    int B = 2, T = 5;
    model_reshape(m, B, T);
    model_init_params(m, seed);
    ModelCase c = {m, xmalloc(sizeof(int) * B * T), xmalloc(sizeof(int) * B * T)};
    for (int i = 0; i < B * T; i++) {
        c.tokens[i] = (int)rng_below(&rng, 11);
        c.targets[i] = i % 4 == 3 ? -1 : (int)rng_below(&rng, 11);
    }
    params_zero_grad(&m->params);
    model_forward(m, c.tokens, c.targets, 1.0f);
    model_backward(m);
    for (int i = 0; i < m->params.n; i++) {
        ParamInfo *p = &m->params.info[i];
        double e = gradcheck(model_loss, &c, p->slot->w, p->slot->g, p->count, 60, 1e-2f, &rng);
        CHECK(e < GRAD_TOL, "model (tied %d): %s relative error %.2e", tie, p->name, e);
    }
    /* two micro-batches with halved scale add up to one full gradient */
    float *full = xmalloc(sizeof(float) * m->params.total);
    memcpy(full, m->params.g, sizeof(float) * m->params.total);
    params_zero_grad(&m->params);
    for (int rep = 0; rep < 2; rep++) {
        model_forward(m, c.tokens, c.targets, 0.5f);
        model_backward(m);
    }
    for (size_t i = 0; i < m->params.total; i++)
        CHECK_NEAR(m->params.g[i], full[i], 1e-6 + 1e-5 * fabs(full[i]), "accumulated gradient");
    model_free(m);
}

TEST(test_model_gradient_untied) { check_model(false, 31); }
TEST(test_model_gradient_tied) { check_model(true, 32); }
