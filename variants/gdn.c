/* gdn: Gated DeltaNet (Yang et al., ICLR 2025): one log-space decay per head and step from a full
 * projection, SiLU output gate. The layer itself is shared with kda: variants/delta_layer.c. */
#include "core/io/export_fla.h"
#include "delta_layer.h"

static const Field gdn_fields[] = {DELTA_FIELDS("2")};

static const DeltaGates gdn_gates = {.channel_decay = false, .low_rank = false, .out_gate = ACT_SILU, .A_min = 1e-4f};

static const FlaExport gdn_fla = {.model_type = "gated_deltanet",
                                  .architecture = "GatedDeltaNetForCausalLM",
                                  .check = delta_layer_fla_check,
                                  .config = delta_layer_fla_config};

const MixerOps mixer_gdn = {
    .name = "gdn",
    MIXER_SECTION(gdn_fields, DeltaConfig),
    .variant = &gdn_gates,
    .op_core = OP_CORE_DELTA_HEAD_GATE,
    .fla = &gdn_fla,
    DELTA_LAYER_OPS,
};
