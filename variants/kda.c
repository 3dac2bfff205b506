/* kda: Kimi Delta Attention (Kimi Linear report): one log-space decay per key channel from a
 * low-rank projection, sigmoid low-rank output gate with a bias. The layer itself is shared with
 * gdn: variants/delta_layer.c. */
#include "core/io/export_fla.h"
#include "delta_layer.h"

static const Field kda_fields[] = {
    DELTA_FIELDS("1"),
    DELTA_GATE_RANK_FIELD,
};

static const DeltaGates kda_gates = {.channel_decay = true, .low_rank = true, .out_gate = ACT_SIGMOID, .A_min = 1.0f};

static const FlaExport kda_fla = {
    .model_type = "kda", .architecture = "KDAForCausalLM", .check = delta_layer_fla_check, .config = delta_layer_fla_config};

const MixerOps mixer_kda = {
    .name = "kda",
    MIXER_SECTION(kda_fields, DeltaConfig),
    .variant = &kda_gates,
    .op_core = OP_CORE_DELTA_CHANNEL_GATE,
    .fla = &kda_fla,
    DELTA_LAYER_OPS,
};
