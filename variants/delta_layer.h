/* The layer shared by gdn and kda (shared/spec/attention.md): projections, short causal
 * convolution with SiLU, L2-normalized q and k, beta = sigmoid, log-space decay gate, the gated
 * delta rule core, per-head RMSNorm with an output gate, output projection. gdn and kda differ in
 * the decay gate (one value per head from a full projection, or one per key channel from a
 * low-rank projection) and the output gate (SiLU of a full projection, or sigmoid of a low-rank
 * one with a bias); variants/gdn.c and variants/kda.c only choose. */
#pragma once
#include "core/mixer.h"

Mixer *delta_layer_create(const MixerSpec *spec, ParamSet *ps, bool kda);
void delta_layer_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T);
void delta_layer_forward(Mixer *m, const Backend *be, const float *x, float *y, int B, int T);
void delta_layer_backward(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T);
void delta_layer_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context);
void delta_layer_decode_reset(Mixer *m, const Backend *be, int B);
void delta_layer_decode_step(Mixer *m, const Backend *be, const float *x, float *y, int B, long pos);
double delta_layer_flops(const Mixer *m, int T);
size_t delta_layer_cache_bytes(const Mixer *m, long context);
void delta_layer_destroy(Mixer *m);
