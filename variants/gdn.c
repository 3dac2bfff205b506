/* gdn: Gated DeltaNet (Yang et al., ICLR 2025): one log-space decay per head and step, SiLU output gate.
 * The layer itself is shared with its sibling: variants/delta_layer.c. */
#include "delta_layer.h"

static Mixer *gdn_create(const MixerSpec *spec, ParamSet *ps) { return delta_layer_create(spec, ps, false); }

const MixerOps mixer_gdn = {
    .name = "gdn",
    .create = gdn_create,
    .declare = delta_layer_declare,
    .forward = delta_layer_forward,
    .backward = delta_layer_backward,
    .declare_decode = delta_layer_declare_decode,
    .decode_reset = delta_layer_decode_reset,
    .decode_step = delta_layer_decode_step,
    .flops_per_token = delta_layer_flops,
    .cache_bytes = delta_layer_cache_bytes,
    .destroy = delta_layer_destroy,
};
