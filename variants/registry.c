/* The registry of token mixers: the one list of them, looked up by the name used in configs.
 * Every other list of mixers (config choices, help, the op harness, the kernel benchmark, the
 * fla export) is built from this one. */
#include <stdio.h>
#include <string.h>

#include "core/mixer.h"

extern const MixerOps mixer_softmax, mixer_mla, mixer_linear, mixer_gdn, mixer_kda, mixer_dplr;

static const MixerOps *registry[MIXERS_MAX] = {
    &mixer_softmax, &mixer_mla, &mixer_linear, &mixer_gdn, &mixer_kda, &mixer_dplr,
};
static int n_registered = 6;

/* model.mixer, model.hybrid.linear and model.hybrid.full by default: Kimi Linear's hybrid */
static const char *const defaults[] = {[MIXERS_ALL] = "softmax", [MIXERS_LINEAR] = "kda", [MIXERS_FULL] = "mla"};

int mixer_count(void) { return n_registered; }

const MixerOps *mixer_at(int i) { return registry[i]; }

void mixer_register(const MixerOps *ops) {
    if (config_fields_built()) die("internal: mixer '%s' registered after the config fields were built", ops->name);
    if (n_registered == MIXERS_MAX) die("internal: more than %d mixers", MIXERS_MAX);
    if (mixer_lookup(ops->name)) die("internal: two mixers named '%s'", ops->name);
    registry[n_registered++] = ops;
}

const MixerOps *mixer_lookup(const char *name) {
    for (int i = 0; i < n_registered; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

Mixer *mixer_create(const char *name, const MixerSpec *spec, ParamSet *params) {
    const MixerOps *ops = mixer_lookup(name);
    if (!ops) return NULL;
    MixerSpec with_ops = *spec;
    with_ops.ops = ops;
    Mixer *m = ops->create(&with_ops, params);
    m->ops = ops;
    return m;
}

const char *mixer_names(MixerSet which) {
    static char names[3][256];
    char *out = names[which];
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < n_registered; i++) {
        const MixerOps *m = registry[i];
        if ((which == MIXERS_LINEAR && !m->linear_time) || (which == MIXERS_FULL && m->linear_time)) continue;
        n += (size_t)snprintf(out + n, sizeof names[0] - n, "%s%s", n ? "|" : "", m->name);
    }
    return out;
}

const char *mixer_default(MixerSet which) { return defaults[which]; }

const void *mixer_config(const ModelConfig *m, const MixerOps *ops) {
    for (int i = 0; i < n_registered; i++)
        if (registry[i] == ops) return m->mixer_cfg[i];
    die("internal: mixer '%s' is not registered", ops->name);
}
