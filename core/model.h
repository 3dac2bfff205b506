/* The language model: token embedding -> n_layers blocks (RMSNorm -> mixer -> residual,
 * RMSNorm -> SwiGLU MLP -> residual; the second half only with model.mlp) -> final RMSNorm ->
 * LM head fused with cross-entropy.
 * Parameters live in one ParamSet; activations in one arena sized for a batch shape. */
#pragma once
#include <stdbool.h>

#include "arena.h"
#include "backend.h"
#include "core/config/config.h"
#include "mixer.h"
#include "mlp.h"
#include "params.h"
#include "rope_table.h"

typedef struct {
    Param norm1, norm2; /* norm2 and mlp only with model.mlp */
    Mixer *mixer;
    Mlp mlp;
    /* kept for the backward (mid, rstd2: MLP); the norms' outputs are recomputed there from the
     * stream and rstd, which costs an elementwise pass and saves two [B*T, C] buffers a layer */
    float *rstd1, *mid, *rstd2;
} Layer;

typedef struct Model {
    ModelConfig cfg; /* a shallow copy; strings belong to the Config */
    const Backend *be;
    int V, C, L, F;
    ParamSet params;
    Param wte, head, norm_f; /* head.w == wte.w when tied */
    Layer *layers;
    RopeCache rope;

    /* shape-dependent state, rebuilt by model_reshape */
    int B, T;                    /* the current batch shape */
    int cap_B, cap_T;            /* the shape the buffers were sized for */
    size_t cap_tokens;
    bool forward_only; /* the buffers model_reshape_forward made: no backward, no training forward */
    Arena acts, scratch;
    float **residual; /* L + 1 buffers [B*T, C]: the stream entering each layer, then the output
                       * (forward_only: two, alternating) */
    float *normed; /* [B*T, C]: the RMSNorm output feeding the current layer's mixer or MLP (at decode,
                    * only a mixer's without decode_takes_norm: the others fold the norm in) */
    float *ln_f, *rstd_f;
    int *tokens, *targets; /* targets: those of the scored rows, in order (head_loss) */
    int *scored_rows;      /* [B*T]: which rows of ln_f have a target, when not all do */
    float *dres, *dln, *xent_work;

    /* generation: every layer's cache for decode_B sequences of up to decode_context tokens */
    int decode_B;
    long decode_context;
    Arena decode_cache, decode_scratch;
    float *decode_logits; /* [decode_B, V] */
    float *decode_act;    /* [decode_B, F]: a step's MLP activations, layer after layer */
    int *decode_at;       /* backend memory: {pos, pos + 1} of the current step (DecodeAt) */
    /* the step replayed as one graph (GPU): recorded at the second step of a decode_begin, once
     * the first has made every lazy allocation; dropped when any buffer it reads is made again */
    void *decode_graph;
    long decode_steps;
    bool decode_eager; /* the backend could not record the step: run it as it is */

    int poison_layer; /* fault injection (tests): the layer whose output the forward makes NaN; -1 off */
    /* data-parallel training: model_backward calls it each time the gradients from float
     * `ready_from` of the parameter buffer to its end are final (the head's and final norm's, then
     * each layer's from the top, then 0 once the embedding's are); NULL: off */
    void (*grads_ready)(void *ctx, size_t ready_from);
    void *grads_ready_ctx;
} Model;

/* Builds the model for `be`; dies with a message naming the config field if a part is unknown. */
Model *model_create(const ModelConfig *mc, const Backend *be);
void model_init_params(Model *m, uint64_t seed);
/* Sizes activations for batches of B sequences of T tokens; reuses the buffers when the shape
 * fits in the one they were made for (B*T and T no larger). */
void model_reshape(Model *m, int B, int T);
/* The same for forwards alone (evaluation, logits, prefill, decode): reuses any buffers the shape
 * fits in, else makes ones where every layer's activations share the same bytes and the stream
 * alternates between two buffers, about 1/n_layers of the training shape's memory. A training
 * forward or model_backward on them dies; model_reshape makes training buffers again. */
void model_reshape_forward(Model *m, int B, int T);
/* A model's batch shape and kind of buffers, to put back after a pass at another shape
 * (evaluation during training); B = 0 before the first reshape, which model_restore_shape skips. */
typedef struct {
    int B, T;
    bool forward_only;
} ModelShape;
ModelShape model_shape(const Model *m);
void model_restore_shape(Model *m, ModelShape shape);

/* Runs the model on B*T tokens (host arrays) and returns the loss statistics. With
 * grad_scale > 0 it also computes the gradient of grad_scale * (summed loss) and leaves it
 * ready for model_backward, which adds all parameter gradients. */
XentStats model_forward(Model *m, const int *tokens, const int *targets, float grad_scale);
void model_backward(Model *m);

/* Logits of every position, [B*T, V] on the host, for tokens [B*T] (the model must be shaped B x T). */
void model_logits(Model *m, const int *tokens, float *logits);

/* Generation. decode_begin sizes every layer's cache (KV cache or recurrent state) for B
 * sequences of up to max_context tokens and empties it; decode_step feeds one token per
 * sequence at position pos (0, 1, 2, ... in order) and writes the next-token logits [B, V]
 * (host). The block-level buffers of the activation arena are reused, so a training step
 * after decoding needs no special care; decoding after a training step needs a decode_begin,
 * which takes the weights as they are then (the GPU's bf16 copy of them). */
void model_decode_begin(Model *m, int B, long max_context);
void model_decode_step(Model *m, const int *tokens, long pos, float *logits);
/* Decode cache bytes per sequence after `context` tokens, summed over layers. */
size_t model_cache_bytes(const Model *m, long context);

size_t model_param_count(const Model *m);
/* Forward FLOPs per token at context T (2 per multiply-add); a training step is about 3x. */
double model_flops_per_token(const Model *m, int T);
void model_free(Model *m);

/* After a forward whose loss was not finite: the first layer whose output holds a NaN or an
 * infinity, or -1 when every layer's output is finite (the final norm or the head then made it). */
int model_nonfinite_layer(const Model *m);
