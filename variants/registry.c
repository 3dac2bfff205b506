/* The registry of token mixers, looked up by the name used in configs. */
#include <stddef.h>
#include <string.h>

#include "core/mixer.h"

extern const MixerOps mixer_softmax, mixer_mla, mixer_linear, mixer_gdn, mixer_kda;

static const MixerOps *const registry[] = {
    &mixer_softmax, &mixer_mla, &mixer_linear, &mixer_gdn, &mixer_kda,
};

const MixerOps *mixer_lookup(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

Mixer *mixer_create(const char *name, const MixerSpec *spec, ParamSet *params) {
    const MixerOps *ops = mixer_lookup(name);
    if (!ops) return NULL;
    Mixer *m = ops->create(spec, params);
    m->ops = ops;
    return m;
}

const char *mixer_names(void) { return "softmax|mla|linear|gdn|kda"; }
