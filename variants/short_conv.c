/* The short convolutions over q, k and v (short_conv.h). */
#include "short_conv.h"

#include <stdio.h>

void short_conv_create(ShortConv *c, ParamSet *ps, int layer, int HK, int HV, int W, float std) {
    *c = (ShortConv){.W = W, .HK = HK, .HV = HV};
    Param *slots[] = {&c->q, &c->k, &c->v};
    const char *names[] = {"q_conv1d.weight", "k_conv1d.weight", "v_conv1d.weight"};
    for (int i = 0; i < 3; i++) {
        char name[96];
        snprintf(name, sizeof name, "layers.%d.mixer.%s", layer, names[i]);
        params_matrix(ps, slots[i], name, i < 2 ? HK : HV, W, std);
    }
}

void short_conv_forward(const ShortConv *c, const Backend *be, float *q, float *k, float *v, const float *q_in,
                        const float *k_in, const float *v_in, int B, int T, bool step) {
    if (step) {
        be->conv1d_step(q, c->tail_q, q_in, c->q.w, B, c->HK, c->W);
        be->conv1d_step(k, c->tail_k, k_in, c->k.w, B, c->HK, c->W);
        be->conv1d_step(v, c->tail_v, v_in, c->v.w, B, c->HV, c->W);
    } else {
        be->conv1d_forward(q, q_in, c->q.w, B, T, c->HK, c->W);
        be->conv1d_forward(k, k_in, c->k.w, B, T, c->HK, c->W);
        be->conv1d_forward(v, v_in, c->v.w, B, T, c->HV, c->W);
    }
}

void short_conv_silu_forward(const ShortConv *c, const Backend *be, float *q, float *k, float *v, float *q_rn,
                             float *k_rn, const float *q_in, const float *k_in, const float *v_in, int B, int T, int H,
                             bool l2, float eps) {
    int D = c->HK / H;
    be->conv1d_silu_forward(q, l2 ? q_rn : NULL, q_in, c->q.w, B, T, c->HK, c->W, D, eps);
    be->conv1d_silu_forward(k, l2 ? k_rn : NULL, k_in, c->k.w, B, T, c->HK, c->W, D, eps);
    be->conv1d_silu_forward(v, NULL, v_in, c->v.w, B, T, c->HV, c->W, c->HV / H, eps);
}

void short_conv_silu_step(const ShortConv *c, const Backend *be, float *q, float *k, float *v, float *q_rn, float *k_rn,
                          const float *q_in, const float *k_in, const float *v_in, int B, int H, bool l2, float eps) {
    ConvStepInput in[3] = {
        {q, q_rn, c->tail_q, q_in, c->q.w, c->HK / H, l2},
        {k, k_rn, c->tail_k, k_in, c->k.w, c->HK / H, l2},
        {v, NULL, c->tail_v, v_in, c->v.w, c->HV / H, false},
    };
    be->conv_silu_step(B, H, c->W, 3, in, eps);
}

void short_conv_declare_decode(ShortConv *c, Arena *cache, int B) {
    size_t tail = (size_t)B * (c->W - 1);
    arena_floats(cache, &c->tail_q, tail * c->HK);
    arena_floats(cache, &c->tail_k, tail * c->HK);
    arena_floats(cache, &c->tail_v, tail * c->HV);
}

void short_conv_decode_reset(const ShortConv *c, const Backend *be, int B) {
    size_t tail = (size_t)B * (c->W - 1);
    be->zero(c->tail_q, tail * c->HK);
    be->zero(c->tail_k, tail * c->HK);
    be->zero(c->tail_v, tail * c->HV);
}

size_t short_conv_cache_floats(const ShortConv *c) { return (size_t)(c->W - 1) * (2 * c->HK + c->HV); }
