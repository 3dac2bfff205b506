/* attnlab export CHECKPOINT --format fla OUT_DIR: a folder that flash-linear-attention's
 * AutoModelForCausalLM loads, for the models fla has (every mixer says whether and how in
 * MixerOps.fla: a model of one layer type, with or without fla's attention layers among them):
 *   config.json                   fla's config, every field that differs from fla's defaults
 *   model.safetensors             fla's parameter names and shapes, float32
 *   reference_logits.safetensors  input_ids int64 [2, 100] and attnlab's logits float32
 *                                 [2, 100, V], for tests/reference/fla_export_check.py
 * What fla cannot express (MLA or linear layers, NoPE softmax, kda/gdn switches fla lacks, no
 * MLP) is refused with one line. The folder is written under a temporary name and renamed. */
#pragma once
#include <stdbool.h>

#include "core/config/config.h"
#include "core/util.h"

struct cJSON;
struct MixerOps;

/* How a mixer's layer appears in flash-linear-attention's models (MixerOps.fla). */
typedef struct FlaExport {
    const char *model_type;   /* fla's model of these layers alone (config.json's model_type) */
    const char *architecture; /* its class (config.json's architectures) */
    bool attn;                /* softmax attention: may also be the `attn` layers of another model */
    /* what fla's layer lacks of this config: false with a one-line reason in err (optional) */
    bool (*check)(const struct MixerOps *self, const ModelConfig *m, const void *cfg, Error *err);
    /* its fields of config.json: for a model of these layers (config), and in another model's
     * `attn` object (attn_config; attn mixers only) */
    void (*config)(const struct MixerOps *self, struct cJSON *o, const ModelConfig *m, const void *cfg);
    void (*attn_config)(const struct MixerOps *self, struct cJSON *attn, const ModelConfig *m, const void *cfg);
    /* a parameter fla keeps as several (rows of it, in order): fills the names and row counts and
     * returns how many, or 0 for one tensor under the same name (optional) */
    int (*split)(const struct MixerOps *self, const ModelConfig *m, const void *cfg, const char *param,
                 const char **names, long *rows);
} FlaExport;

bool export_fla(const char *checkpoint, const char *out_dir, Error *err);
