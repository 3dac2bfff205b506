/* The short causal depthwise convolutions over q, k and v after their projections, as the
 * delta-rule layers (gdn, kda, dplr) and, optionally, linear attention have them: the three
 * weights, their decode tails and the three calls each way, kept in one place so that every layer
 * with them does the same. The backward stays with each layer: it sits inside the layer's own
 * path back from q, k and v (conv1d_backward with c->q etc.). */
#pragma once
#include "core/arena.h"
#include "core/backend.h"
#include "core/params.h"

typedef struct {
    int W, HK, HV;                   /* taps; the widths of q and k, and of v */
    Param q, k, v;                   /* [HK, W], [HK, W], [HV, W] */
    float *tail_q, *tail_k, *tail_v; /* decode: each sequence's last W-1 inputs [B, W-1, width] */
} ShortConv;

/* Adds layers.<layer>.mixer.{q,k,v}_conv1d.weight, N(0, std) as fla's models (not PyTorch's
 * U(+-1/sqrt(width))), at this point of the parameter table. */
void short_conv_create(ShortConv *c, ParamSet *ps, int layer, int HK, int HV, int W, float std);
/* q, k, v from their projections over B x T tokens; step: one token a sequence, through the tails. */
void short_conv_forward(const ShortConv *c, const Backend *be, float *q, float *k, float *v, const float *q_in,
                        const float *k_in, const float *v_in, int B, int T, bool step);
/* SiLU of q's, k's and v's convolutions over B x T tokens and, with l2, each of the H heads of q
 * and k L2-normalized (q_rn, k_rn [B T H]): one pass each (conv1d_silu_forward). */
void short_conv_silu_forward(const ShortConv *c, const Backend *be, float *q, float *k, float *v, float *q_rn,
                             float *k_rn, const float *q_in, const float *k_in, const float *v_in, int B, int T, int H,
                             bool l2, float eps);
/* One decode step of q, k and v through the convolutions, SiLU and, with l2, each of the H heads'
 * L2 norm (q_rn, k_rn [B * H]): what short_conv_forward, silu_forward and l2norm_forward make, as
 * one backend op (conv_silu_step: one launch on the GPU). */
void short_conv_silu_step(const ShortConv *c, const Backend *be, float *q, float *k, float *v, float *q_rn, float *k_rn,
                          const float *q_in, const float *k_in, const float *v_in, int B, int H, bool l2, float eps);
void short_conv_declare_decode(ShortConv *c, Arena *cache, int B);
void short_conv_decode_reset(const ShortConv *c, const Backend *be, int B);
/* The tails' floats a sequence (the decode cache beside the state). */
size_t short_conv_cache_floats(const ShortConv *c);
