/* dplr: a diagonal-plus-low-rank transition (fla's generalized delta rule; RWKV-7 is a member):
 * kda's layer with the state read through its own learned gate instead of the decay. With k the
 * L2-normalized key, beta and the channel-wise log decay g as kda's, and r = (x W_a1) W_a2 + b_a,
 *   S_t = (diag(exp(g_t)) + b_t a_t^T) S_{t-1} + k_t v'_t^T,  a = sigmoid(r) k,  b = -beta k,  v' = beta v,
 * so kda is the case sigmoid(r) = exp(g). The layer is shared with gdn and kda
 * (variants/delta_layer.c); the core is core/cpu/dplr.c (and core/cuda/dplr.cu). */
#include "delta_layer.h"

static const Field dplr_fields[] = {DELTA_FIELDS("1"), DELTA_GATE_RANK_FIELD};

static const DeltaGates dplr_gates = {
    .channel_decay = true, .low_rank = true, .out_gate = ACT_SIGMOID, .A_min = 1.0f, .read_gate = true};

const MixerOps mixer_dplr = {
    .name = "dplr",
    MIXER_SECTION(dplr_fields, DeltaConfig),
    .variant = &dplr_gates,
    .op_core = OP_CORE_DPLR,
    DELTA_LAYER_OPS,
};
