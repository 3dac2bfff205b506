/* The layer shared by gdn, kda and dplr (shared/spec/attention.md; dplr in the README): projections,
 * short causal convolution with SiLU, L2-normalized q and k, beta = sigmoid, log-space decay gate,
 * the gated delta rule core (or, for dplr, the diagonal-plus-low-rank core), per-head RMSNorm with
 * an output gate, output projection. gdn and kda differ in the decay gate (one value per head from
 * a full projection, or one per key channel from a low-rank projection) and the output gate (SiLU
 * of a full projection, or sigmoid of a low-rank one with a bias); dplr is kda with the vector that
 * reads the state untied from the decay: a learned low-rank sigmoid read gate. variants/gdn.c,
 * kda.c and dplr.c only choose. */
#pragma once
#include "core/mixer.h"

struct cJSON;

/* their sections, model.gdn, model.kda and model.dplr: the same switches */
typedef struct {
    int head_dim;    /* key channels per head; 0: the model's head_dim */
    double expand_v; /* value channels per head = head_dim * expand_v (fla's expand_v) */
    int chunk_size;  /* 0: the recurrent form */
    bool short_conv;
    int conv_size;
    bool output_gate;
    bool qk_norm;
    char *position;
    int gate_rank; /* kda, dplr: rank of the low-rank gates; 0: the value head dimension */
} DeltaConfig;

/* the fields both take; fla's default value width differs (expand_v 2 for gdn, 1 for kda) */
#define DELTA_FIELDS(expand_v_default)                                                                          \
    MIXER_INT("head_dim", DeltaConfig, head_dim, "0", 0, 4096, "key channels per head; 0: model.head_dim"),      \
        MIXER_NUM("expand_v", DeltaConfig, expand_v, expand_v_default, 0.0625, 64,                               \
                  "value channels per head = head_dim * expand_v (fla's expand_v)"),                            \
        MIXER_INT("chunk_size", DeltaConfig, chunk_size, "64", 0, 4096,                                         \
                  "rows per chunk of the chunkwise training form; 0: train with the recurrent form"),           \
        MIXER_BOOL("short_conv", DeltaConfig, short_conv, "true",                                               \
                   "causal depthwise convolution (then SiLU) on q, k, v; off: SiLU only"),                      \
        MIXER_INT("conv_size", DeltaConfig, conv_size, "4", 2, 64, "kernel width of the short convolution"),    \
        MIXER_BOOL("output_gate", DeltaConfig, output_gate, "true", "gate the normalized output; off: RMSNorm only"), \
        MIXER_BOOL("qk_norm", DeltaConfig, qk_norm, "true", "L2-normalize q and k per head"),                   \
        MIXER_ENUM("position", DeltaConfig, position, "nope", MIXER_POSITION, "rotary embedding on q and k, or none")

/* the low-rank gates' rank (kda, dplr) */
#define DELTA_GATE_RANK_FIELD                                                                                   \
    MIXER_INT("gate_rank", DeltaConfig, gate_rank, "0", 0, 65536,                                               \
              "rank of the low-rank gate projections (decay, output and dplr's read gate); 0: the value head dimension")

/* key and value channels per head */
typedef struct {
    int k, v;
} DeltaDims;
DeltaDims delta_layer_dims(const ModelConfig *m, const DeltaConfig *c);

/* What sets gdn, kda and dplr apart (MixerOps.variant; their files choose). */
typedef struct {
    bool channel_decay;  /* one log decay per key channel (kda), else one per head (gdn) */
    bool low_rank;       /* the decay and output gates through rank-R projections, the output gate with a
                          * bias (kda); else full projections without bias (gdn) */
    GateAct out_gate;    /* the output gate's activation: ACT_SIGMOID (kda), ACT_SILU (gdn) */
    float A_min;         /* A = exp(A_log) starts in U(A_min, 16): kda 1, gdn 1e-4 (fla's 0 has log -inf) */
    bool read_gate;      /* dplr: the state is read through a = k sigmoid(r), r a low-rank projection with a
                          * bias, and written along b = -beta k, v' = beta v, in the dplr core; else (gdn,
                          * kda) the delta rule, whose read vector is the decayed key exp(g) k */
} DeltaGates;

/* the section's rules: an even key width under RoPE, a whole value width */
bool delta_layer_check(const MixerOps *self, const ModelConfig *m, const void *cfg, const char *src, Error *err);
const char *delta_layer_position(const void *cfg);
/* fla's GatedDeltaNet and KimiDeltaAttention: what they lack of this config, their config.json fields */
bool delta_layer_fla_check(const MixerOps *self, const ModelConfig *m, const void *cfg, Error *err);
void delta_layer_fla_config(const MixerOps *self, struct cJSON *o, const ModelConfig *m, const void *cfg);

Mixer *delta_layer_create(const MixerSpec *spec, ParamSet *ps);
void delta_layer_declare(Mixer *m, const Backend *be, Arena *acts, Arena *scratch, int B, int T);
void delta_layer_forward(Mixer *m, const Backend *be, const float *x, float *y, int B, int T);
void delta_layer_backward(Mixer *m, const Backend *be, const float *x, const float *dy, float *dx, int B, int T);
void delta_layer_declare_decode(Mixer *m, const Backend *be, Arena *cache, Arena *scratch, int B, long max_context);
void delta_layer_decode_reset(Mixer *m, const Backend *be, int B);
void delta_layer_decode_step(Mixer *m, const Backend *be, const float *x, const RowNorm *x_norm, float *y, int B,
                             const DecodeAt *at);
double delta_layer_flops(const Mixer *m, int T);
size_t delta_layer_cache_bytes(const Mixer *m, long context);
void delta_layer_destroy(Mixer *m);

/* the MixerOps entries gdn, kda and dplr share */
#define DELTA_LAYER_OPS                                                                                             \
    .linear_time = true, .check = delta_layer_check,                                                                \
    .position = delta_layer_position, .create = delta_layer_create, .declare = delta_layer_declare,                 \
    .forward = delta_layer_forward, .backward = delta_layer_backward, .declare_decode = delta_layer_declare_decode, \
    .decode_reset = delta_layer_decode_reset, .decode_step = delta_layer_decode_step, .decode_takes_norm = true,    \
    .flops_per_token = delta_layer_flops, .cache_bytes = delta_layer_cache_bytes, .destroy = delta_layer_destroy
