/* Gradient checks of the modules (MLP, the softmax mixer) and of the whole model, parameter by
 * parameter, against finite differences of the loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "compare.h"
#include "core/config/config.h"
#include "core/mixer.h"
#include "core/mlp.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/util.h"
#include "gradcheck.h"
#include "test.h"
#include "test_dimensions.h"

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
    mlp_declare(&mlp, c.be, &acts, &scratch, c.B * c.T);
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
    cfg.model.d_model = 30; /* 4 heads of 6: 24 channels, not d_model's 30 */
    cfg.model.n_heads = 4;
    cfg.model.head_dim = 6;
    cfg.model.n_layers = 1;
    cfg.model.init_std = 0.3;
    char kv[64], pos[64];
    snprintf(kv, sizeof kv, "model.softmax.n_kv_heads=%d", n_kv_heads);
    snprintf(pos, sizeof pos, "model.softmax.position=%s", position);
    Error err;
    if (!config_set(&cfg, kv, &err) || !config_set(&cfg, pos, &err)) die("%s", err.msg);
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

/* A tiny model (vocabulary 17, the mixer harness's dimensions, MLP 28 wide, 2 layers) with the
 * given settings. */
static Model *tiny_model(const char *const *settings, unsigned seed, Config *cfg) {
    config_defaults(cfg);
    const char *base[] = {TEST_DIMENSIONS, "model.vocab_size=17", "model.n_layers=2", "model.d_ff=28",
                          "model.init_std=0.3", NULL};
    Error err;
    for (const char *const *s = base; *s; s++)
        if (!config_set(cfg, *s, &err)) die("%s", err.msg);
    for (const char *const *s = settings; s && *s; s++)
        if (!config_set(cfg, *s, &err)) die("%s", err.msg);
    if (!config_check(cfg, &err)) die("%s", err.msg);
    Model *m = model_create(&cfg->model, backend_cpu());
    model_init_params(m, seed);
    return m;
}

static void check_model(const char *const *settings, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    Config cfg;
    Model *m = tiny_model(settings, seed, &cfg);
    int B = 2, T = 5;
    model_reshape(m, B, T);
    ModelCase c = {m, xmalloc(sizeof(int) * B * T), xmalloc(sizeof(int) * B * T)};
    for (int i = 0; i < B * T; i++) {
        c.tokens[i] = (int)rng_below(&rng, (uint64_t)m->V);
        c.targets[i] = i % 4 == 3 ? -1 : (int)rng_below(&rng, (uint64_t)m->V);
    }
    params_zero_grad(&m->params);
    model_forward(m, c.tokens, c.targets, 1.0f);
    model_backward(m);
    for (int i = 0; i < m->params.n; i++) {
        ParamInfo *p = &m->params.info[i];
        double e = gradcheck(model_loss, &c, p->slot->w, p->slot->g, p->count, 60, 1e-2f, &rng);
        CHECK(e < GRAD_TOL, "model (%s): %s relative error %.2e", settings[0], p->name, e);
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

#define SETTINGS(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST(test_model_gradient_untied) { check_model(SETTINGS("model.tie_embeddings=false"), 31); }
TEST(test_model_gradient_tied) { check_model(SETTINGS("model.tie_embeddings=true"), 32); }
TEST(test_model_gradient_hybrid_kda_mla) {
    check_model(SETTINGS("model.hybrid.ratio=1:1", "model.hybrid.linear=kda", "model.hybrid.full=mla",
                         "model.mla.position=nope"),
                33);
}
TEST(test_model_gradient_gdn_softmax_linear) {
    check_model(SETTINGS("model.layers=gdn,linear,softmax", "model.n_layers=3"), 34);
}
TEST(test_model_gradient_without_mlp) {
    check_model(SETTINGS("model.mlp=false", "model.hybrid.ratio=1:1", "model.hybrid.linear=gdn",
                         "model.hybrid.full=softmax"),
                35);
}

/* model.mlp = false removes each block's second half (mlp_norm and the SwiGLU MLP) and nothing else */
TEST(test_model_without_mlp_drops_exactly_the_mlp_and_its_norm) {
    Config a, b;
    Model *with = tiny_model(SETTINGS("model.mlp=true"), 1, &a), *without = tiny_model(SETTINGS("model.mlp=false"), 1, &b);
    size_t C = (size_t)with->C, F = (size_t)with->F, L = (size_t)with->L;
    size_t dropped = model_param_count(with) - model_param_count(without);
    CHECK(dropped == L * (3 * C * F + C), "dropped %zu parameters, expected %zu layers x (3 x %zu x %zu + %zu)", dropped, L,
          C, F, C);
    for (int i = 0; i < without->params.n; i++)
        CHECK(!strstr(without->params.info[i].name, "mlp"),
              "parameter %s in a model without MLP", without->params.info[i].name);
    double flops = model_flops_per_token(with, 8) - model_flops_per_token(without, 8);
    CHECK(flops == 6.0 * L * C * F, "forward FLOPs per token dropped by %g, expected %g", flops, 6.0 * L * C * F);
    model_free(with);
    model_free(without);
    config_free(&a);
    config_free(&b);
}

/* ---- generation: decoding token by token gives the full forward's logits at every position ---- */

static void check_decode(const char *const *settings, unsigned seed) {
    Config cfg;
    Model *m = tiny_model(settings, seed, &cfg);
    int B = 2, T = 9, V = m->V;
    model_reshape(m, B, T);
    Rng rng;
    rng_seed(&rng, seed);
    int *tokens = xmalloc(sizeof(int) * B * T), *step = xmalloc(sizeof(int) * B);
    for (int i = 0; i < B * T; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)V);
    float *full = xmalloc(sizeof(float) * B * T * V), *logits = xmalloc(sizeof(float) * B * V);
    model_logits(m, tokens, full);
    model_decode_begin(m, B, T);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) step[b] = tokens[b * T + t];
        model_decode_step(m, step, t, logits);
        for (int b = 0; b < B; b++)
            worst = worst_of(worst, max_abs_diff(logits + (size_t)b * V, full + ((size_t)b * T + t) * V, V));
    }
    /* Logits are O(1). Decode and forward are different algorithms for the linear-time mixers
     * (recurrent vs chunkwise), so they agree to fp32 rounding, about 1e-6 for one layer, and
     * the difference grows with depth: three linear-time layers measured 1.0e-5 at -O2 and
     * 2.9e-5 in the sanitizer build, whose code generation differs. A wrong cache or position
     * is off by 1e-2 or more. Hence 2e-5 per layer; one-layer models are tested below. */
    double tol = 2e-5 * m->L;
    CHECK(worst < tol, "model (%s): decode logits differ from the forward by %.2e (tolerance %.0e)", settings[0], worst, tol);
    /* decoding again after a reset gives the same numbers (the caches start empty) */
    model_decode_begin(m, B, T);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) step[b] = tokens[b * T + t];
        model_decode_step(m, step, t, logits);
    }
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++)
            CHECK_NEAR(logits[b * V + v], full[((size_t)b * T + T - 1) * V + v], tol, "logits after a restart");
    model_free(m);
}

TEST(test_decode_matches_forward_softmax_model) { check_decode(SETTINGS("model.mixer=softmax"), 41); }
TEST(test_decode_matches_forward_hybrid_kda_mla) {
    check_decode(SETTINGS("model.hybrid.ratio=3:1", "model.n_layers=4", "model.mla.position=nope"), 42);
}
TEST(test_decode_matches_forward_hybrid_gdn_softmax_rope) {
    check_decode(SETTINGS("model.hybrid.ratio=1:1", "model.hybrid.linear=gdn", "model.hybrid.full=softmax",
                          "model.gdn.position=rope"),
                 43);
}
TEST(test_decode_matches_forward_without_mlp) {
    check_decode(SETTINGS("model.mlp=false", "model.hybrid.ratio=1:1", "model.hybrid.linear=kda",
                          "model.hybrid.full=softmax"),
                 48);
}
TEST(test_decode_matches_forward_all_linear) {
    check_decode(SETTINGS("model.layers=linear,kda,gdn", "model.n_layers=3", "model.mla.position=rope"), 44);
}

/* ---- the hybrid layout rule ---- */

static void layout_of(const char *const *settings, char *out) {
    Config cfg;
    config_defaults(&cfg);
    Error err;
    for (const char *const *s = settings; *s; s++)
        if (!config_set(&cfg, *s, &err)) die("%s", err.msg);
    if (!config_check(&cfg, &err)) die("%s", err.msg);
    out[0] = '\0';
    for (int l = 0; l < cfg.model.n_layers; l++) {
        strcat(out, config_layer_mixer(&cfg.model, l));
        if (l + 1 < cfg.model.n_layers) strcat(out, ",");
    }
}

TEST(test_hybrid_ratio_lays_out_layers_from_the_bottom) {
    char got[512];
    layout_of(SETTINGS("model.hybrid.ratio=3:1", "model.n_layers=8"), got);
    CHECK(strcmp(got, "kda,kda,kda,mla,kda,kda,kda,mla") == 0, "3:1 x 8: %s", got);
    /* a depth that is not a multiple of the period ends inside it, linear layers first */
    layout_of(SETTINGS("model.hybrid.ratio=3:1", "model.n_layers=6"), got);
    CHECK(strcmp(got, "kda,kda,kda,mla,kda,kda") == 0, "3:1 x 6: %s", got);
    layout_of(SETTINGS("model.hybrid.ratio=0:1", "model.n_layers=3"), got);
    CHECK(strcmp(got, "mla,mla,mla") == 0, "0:1: %s", got);
    layout_of(SETTINGS("model.hybrid.ratio=1:0", "model.n_layers=3", "model.hybrid.linear=gdn"), got);
    CHECK(strcmp(got, "gdn,gdn,gdn") == 0, "1:0: %s", got);
    layout_of(SETTINGS("model.hybrid.ratio=1:2", "model.n_layers=5", "model.hybrid.full=softmax"), got);
    CHECK(strcmp(got, "kda,softmax,softmax,kda,softmax") == 0, "1:2 x 5: %s", got);
    layout_of(SETTINGS("model.layers=linear,mla,gdn", "model.n_layers=3"), got);
    CHECK(strcmp(got, "linear,mla,gdn") == 0, "explicit: %s", got);
    layout_of(SETTINGS("model.mixer=gdn", "model.n_layers=2"), got);
    CHECK(strcmp(got, "gdn,gdn") == 0, "one mixer: %s", got);
}

TEST(test_hybrid_cache_is_a_quarter_of_mla_at_long_context) {
    /* 3:1 keeps MLA's latent cache in one layer of four; the others hold a fixed state */
    Config a, b;
    Model *full = tiny_model(SETTINGS("model.mixer=mla", "model.n_layers=8", "model.mla.position=nope"), 1, &a);
    Model *hybrid = tiny_model(SETTINGS("model.hybrid.ratio=3:1", "model.n_layers=8", "model.mla.position=nope"), 1, &b);
    long ctx = 1 << 20;
    double ratio = (double)model_cache_bytes(hybrid, ctx) / model_cache_bytes(full, ctx);
    CHECK(ratio > 0.25 && ratio < 0.2501, "hybrid/full cache at 1M tokens: %.5f", ratio);
    model_free(full);
    model_free(hybrid);
}
TEST(test_decode_matches_forward_one_linear_layer) { check_decode(SETTINGS("model.layers=linear", "model.n_layers=1"), 45); }
TEST(test_decode_matches_forward_one_kda_layer) { check_decode(SETTINGS("model.layers=kda", "model.n_layers=1"), 46); }
TEST(test_decode_matches_forward_one_gdn_layer) { check_decode(SETTINGS("model.layers=gdn", "model.n_layers=1"), 47); }
TEST(test_decode_matches_forward_hybrid_dplr_mla) {
    check_decode(SETTINGS("model.hybrid.ratio=1:1", "model.n_layers=2", "model.hybrid.linear=dplr",
                          "model.mla.position=nope"),
                 49);
}

/* ---- buffers for forwards alone (model_reshape_forward) ---- */

#define EVERY_MIXER "model.layers=softmax,mla,linear,gdn,kda,dplr", "model.n_layers=6"

/* A layer's mixer and MLP run one after the other, forward and backward, so they share the scratch:
 * the model's is the larger of its mixers' and its MLP's workspace, not their sum. */
TEST(test_model_mixers_and_mlps_share_the_scratch) {
    Config a, b;
    Model *with = tiny_model(SETTINGS(EVERY_MIXER, "model.mlp=true"), 1, &a),
          *without = tiny_model(SETTINGS(EVERY_MIXER, "model.mlp=false"), 1, &b);
    const int B = 2, T = 70;
    model_reshape(with, B, T);
    model_reshape(without, B, T);
    size_t mlp = (with->be->mlp_workspace(B * T, with->C, with->F) + 255) / 256 * 256;
    size_t expected = without->scratch.peak > mlp ? without->scratch.peak : mlp;
    CHECK(with->scratch.peak == expected, "scratch %zu bytes, expected %zu: the largest of the mixers' %zu and the MLP's %zu",
          with->scratch.peak, expected, without->scratch.peak, mlp);
    model_free(with);
    model_free(without);
    config_free(&a);
    config_free(&b);
}

/* Every mixer's forward, run on buffers all layers share, gives the training buffers' numbers
 * exactly (the same arithmetic, other addresses), in far less memory; and a model that went
 * through them trains on afterwards as one that never did. */
TEST(test_model_forward_only_buffers_give_the_same_numbers_in_less_memory) {
    Config ca, cb;
    Model *train = tiny_model(SETTINGS(EVERY_MIXER), 51, &ca), *fwd = tiny_model(SETTINGS(EVERY_MIXER), 51, &cb);
    const int B = 2, T = 70, V = train->V; /* T past one 64-token chunk */
    model_reshape(train, B, T);
    model_reshape_forward(fwd, B, T);
    CHECK(!train->forward_only && fwd->forward_only, "buffer kinds: training %d, forward-only %d", train->forward_only,
          fwd->forward_only);
    CHECK(fwd->acts.peak * 3 < train->acts.peak, "forward-only activations %zu bytes against training %zu",
          fwd->acts.peak, train->acts.peak);
    Rng rng;
    rng_seed(&rng, 52);
    int *tokens = xmalloc(sizeof(int) * B * T), *targets = xmalloc(sizeof(int) * B * T);
    for (int i = 0; i < B * T; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)V), targets[i] = (i * 7) % V;
    float *la = xmalloc(sizeof(float) * B * T * V), *lb = xmalloc(sizeof(float) * B * T * V);
    model_logits(train, tokens, la);
    model_logits(fwd, tokens, lb);
    CHECK(memcmp(la, lb, sizeof(float) * B * T * V) == 0, "logits differ: largest difference %.3e",
          max_abs_diff(la, lb, (size_t)B * T * V));
    XentStats sa = model_forward(train, tokens, targets, 0.0f), sb = model_forward(fwd, tokens, targets, 0.0f);
    CHECK(sa.loss_sum == sb.loss_sum && sa.n_correct == sb.n_correct, "loss %.9g against %.9g", sa.loss_sum, sb.loss_sum);
    /* a pass that fits the training buffers keeps them */
    model_reshape_forward(train, 1, T);
    CHECK(!train->forward_only && train->B == 1, "a fitting forward shape replaced the training buffers");
    /* back to training: the same gradients as the model that never left its buffers */
    model_reshape(train, B, T);
    model_reshape(fwd, B, T);
    CHECK(!fwd->forward_only, "model_reshape kept forward-only buffers");
    params_zero_grad(&train->params);
    params_zero_grad(&fwd->params);
    model_forward(train, tokens, targets, 1.0f);
    model_backward(train);
    model_forward(fwd, tokens, targets, 1.0f);
    model_backward(fwd);
    CHECK(memcmp(train->params.g, fwd->params.g, sizeof(float) * train->params.total) == 0,
          "gradients differ after the forward-only pass");
    free(tokens);
    free(targets);
    free(la);
    free(lb);
    model_free(train);
    model_free(fwd);
    config_free(&ca);
    config_free(&cb);
}

/* ---- the head on the scored rows alone ---- */

/* Rows without a target skip the LM head (head_loss gathers the others): the loss, hits and
 * count are those of the scored rows' own logits, computed here from the full logits; and a batch
 * with no target at all scores nothing and leaves every gradient at zero. */
TEST(test_model_loss_covers_exactly_the_scored_rows) {
    Config cfg;
    Model *m = tiny_model(SETTINGS("model.hybrid.ratio=1:1"), 61, &cfg);
    const int B = 2, T = 9, N = B * T, V = m->V;
    model_reshape(m, B, T);
    Rng rng;
    rng_seed(&rng, 62);
    int *tokens = xmalloc(sizeof(int) * N), *targets = xmalloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)V), targets[i] = -1;
    float *logits = xmalloc(sizeof(float) * N * V);
    model_logits(m, tokens, logits);
    double want = 0;
    long hits = 0, scored = 0;
    for (int i = 0; i < N; i++) {
        if (i % 3 != 1) continue; /* the first and last rows unscored, so the gather must move rows */
        const float *l = logits + (size_t)i * V;
        int arg = 0;
        for (int j = 1; j < V; j++)
            if (l[j] > l[arg]) arg = j;
        targets[i] = i % 2 ? arg : (arg + 1 + i) % V; /* some hits, some misses */
        double sum = 0;
        for (int j = 0; j < V; j++) sum += exp((double)l[j] - l[arg]);
        want += l[arg] + log(sum) - l[targets[i]];
        hits += targets[i] == arg, scored++;
    }
    XentStats st = model_forward(m, tokens, targets, 0.0f);
    CHECK(st.n_targets == scored && st.n_correct == hits, "scored %ld, hits %ld; expected %ld and %ld", st.n_targets,
          st.n_correct, scored, hits);
    CHECK_NEAR(st.loss_sum, want, 1e-5 * want, "loss of the scored rows");
    for (int i = 0; i < N; i++) targets[i] = -1;
    for (size_t i = 0; i < m->params.total; i++) m->params.g[i] = 1.0f; /* must be left as they are */
    st = model_forward(m, tokens, targets, 1.0f);
    model_backward(m);
    CHECK(st.n_targets == 0 && st.loss_sum == 0, "no target: %ld scored, loss %g", st.n_targets, st.loss_sum);
    size_t moved = 0;
    for (size_t i = 0; i < m->params.total; i++) moved += m->params.g[i] != 1.0f;
    CHECK(moved == 0, "a batch without targets changed %zu gradient entries", moved);
    free(tokens), free(targets), free(logits);
    model_free(m);
}

/* hold_operand's contract, checked by the CPU under ATTNLAB_CHECK_HELD (which the test runner sets,
 * so every model test above keeps it): the norm that writes the held operand may, a later write
 * may not, and the process stops naming the element. */
static void write_while_held(void) {
    setenv("ATTNLAB_CHECK_HELD", "1", 1);
    const Backend *be = backend_cpu();
    float in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1}, x[8], rstd[2];
    be->hold_operand(x, 8);
    be->rmsnorm_forward(x, rstd, in, w, 2, 4, 1e-5f);
    be->hold_operand(NULL, 0); /* unchanged since the norm: no complaint */
    be->hold_operand(x, 8);
    be->rmsnorm_forward(x, rstd, in, w, 2, 4, 1e-5f);
    x[5] += 1.0f;
    be->hold_operand(NULL, 0);
}

TEST(test_hold_operand_check_stops_a_write_while_held) {
    char err[512];
    int status = test_run_child(write_while_held, 60, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "child status %d (expected exit 1)", status);
    CHECK(strstr(err, "hold_operand: the held operand (8 floats) changed at element 5 before its release"),
          "stderr: %s", err);
}
