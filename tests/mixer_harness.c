/* The single-mixer test harness (see mixer_harness.h). */
#include "mixer_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "core/util.h"
#include "gradcheck.h"

bool mixer_case_init(MixerCase *c, const char *const *settings, int B, int T, unsigned seed, char *msg, size_t len) {
    const char *base[] = {TEST_DIMENSIONS, "model.n_layers=1", "model.init_std=0.3", NULL};
    return mixer_case_init_over(c, base, settings, B, T, seed, msg, len);
}

bool mixer_case_init_over(MixerCase *c, const char *const *base, const char *const *settings, int B, int T,
                          unsigned seed, char *msg, size_t len) {
    memset(c, 0, sizeof *c);
    config_defaults(&c->cfg);
    Error err;
    for (const char *const *s = base; *s; s++)
        if (!config_set(&c->cfg, *s, &err)) return snprintf(msg, len, "%s", err.msg), false;
    for (const char *const *s = settings; s && *s; s++)
        if (!config_set(&c->cfg, *s, &err)) return snprintf(msg, len, "%s", err.msg), false;
    if (!config_check(&c->cfg, &err)) return snprintf(msg, len, "%s", err.msg), false;
    c->be = backend_cpu();
    c->B = B;
    c->T = T;
    c->C = c->cfg.model.d_model;
    c->rope.base = c->cfg.model.rope_base;
    c->rope.be = c->be;
    MixerSpec spec = {.model = &c->cfg.model, .layer = 0, .rope = &c->rope};
    c->mixer = mixer_create(config_layer_mixer(&c->cfg.model, 0), &spec, &c->ps);
    params_bind(&c->ps, c->be);
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&c->ps, &rng);
    c->mixer->ops->declare(c->mixer, c->be, &c->acts, &c->scratch, B, T);
    c->mixer->ops->declare_decode(c->mixer, c->be, &c->cache, &c->step_scratch, B, T);
    arena_bind(&c->acts, c->be);
    arena_bind(&c->scratch, c->be);
    arena_bind(&c->cache, c->be);
    arena_bind(&c->step_scratch, c->be);
    rope_cache_fill(&c->rope, T);
    size_t n = (size_t)B * T * c->C;
    c->x = new_normal(n, 1.0f, &rng);
    c->y = new_zeros(n);
    c->R = new_normal(n, 1.0f, &rng);
    return true;
}

double mixer_case_loss(void *p) {
    MixerCase *c = p;
    size_t n = (size_t)c->B * c->T * c->C;
    memset(c->y, 0, sizeof(float) * n);
    c->mixer->ops->forward(c->mixer, c->be, c->x, c->y, c->B, c->T);
    return dot_loss(c->y, c->R, n);
}

/* one forward and backward from zeroed gradients into dx and the parameters' g */
static void forward_backward(MixerCase *c, float *dx, bool spoil_scratch) {
    size_t n = (size_t)c->B * c->T * c->C;
    memset(dx, 0, sizeof(float) * n);
    params_zero_grad(&c->ps);
    mixer_case_loss(c);
    if (spoil_scratch) memset(c->scratch.base, 0xff, c->scratch.peak); /* all NaN */
    c->mixer->ops->backward(c->mixer, c->be, c->x, c->R, dx, c->B, c->T);
}

bool mixer_case_gradcheck(MixerCase *c, unsigned seed, char *msg, size_t len) {
    Rng rng;
    rng_seed(&rng, seed);
    size_t n = (size_t)c->B * c->T * c->C;
    float *dx = new_zeros(n);
    forward_backward(c, dx, false);
    double e = gradcheck(mixer_case_loss, c, c->x, dx, n, 200, 1e-2f, &rng);
    free(dx);
    if (!(e < GRAD_TOL)) return snprintf(msg, len, "dx relative error %.2e", e), false;
    for (int i = 0; i < c->ps.n; i++) {
        ParamInfo *p = &c->ps.info[i];
        double ep = gradcheck(mixer_case_loss, c, p->slot->w, p->slot->g, p->count, 100, 1e-2f, &rng);
        if (!(ep < GRAD_TOL)) return snprintf(msg, len, "%s relative error %.2e", p->name, ep), false;
    }
    return true;
}

bool mixer_case_backward_reads_no_scratch(MixerCase *c, char *msg, size_t len) {
    size_t n = (size_t)c->B * c->T * c->C, np = c->ps.total;
    float *dx = new_zeros(n), *dx_spoiled = new_zeros(n), *g = new_zeros(np);
    forward_backward(c, dx, false);
    memcpy(g, c->ps.g, sizeof(float) * np);
    forward_backward(c, dx_spoiled, true);
    bool same_dx = memcmp(dx, dx_spoiled, sizeof(float) * n) == 0;
    int odd = -1; /* the first parameter whose gradient differs */
    for (int i = 0; i < c->ps.n && odd < 0; i++) {
        const ParamInfo *p = &c->ps.info[i];
        if (memcmp(g + p->offset, c->ps.g + p->offset, sizeof(float) * p->count) != 0) odd = i;
    }
    free(dx);
    free(dx_spoiled);
    free(g);
    if (!same_dx) return snprintf(msg, len, "dx changes when the scratch is overwritten between forward and backward"), false;
    if (odd >= 0)
        return snprintf(msg, len, "%s's gradient changes when the scratch is overwritten between forward and backward",
                        c->ps.info[odd].name), false;
    return true;
}

bool mixer_case_decode_matches(MixerCase *c, double tol, char *msg, size_t len) {
    mixer_case_loss(c); /* y = full forward */
    int B = c->B, T = c->T, C = c->C;
    float *xt = new_zeros((size_t)B * C), *yt = new_zeros((size_t)B * C);
    c->mixer->ops->decode_reset(c->mixer, c->be, B);
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < (size_t)B * T * C; i++) scale = worst_of(scale, fabs(c->y[i]));
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) memcpy(xt + (size_t)b * C, c->x + ((size_t)b * T + t) * C, sizeof(float) * C);
        memset(yt, 0, sizeof(float) * B * C);
        int pos_len[2] = {t, t + 1}; /* the CPU's backend memory is the host's */
        rope_cache_at(&c->rope, t);
        DecodeAt at = {t, pos_len};
        c->mixer->ops->decode_step(c->mixer, c->be, xt, NULL, yt, B, &at);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < C; j++)
                worst = worst_of(worst, fabs(yt[(size_t)b * C + j] - c->y[((size_t)b * T + t) * C + j]) / scale);
    }
    free(xt);
    free(yt);
    if (!(worst <= tol)) return snprintf(msg, len, "decode differs from the forward by %.2e (tol %.1e)", worst, tol), false;
    return true;
}
