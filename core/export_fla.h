/* attnlab export CHECKPOINT --format fla OUT_DIR: a folder that flash-linear-attention's
 * AutoModelForCausalLM loads, for the models fla has (all softmax: "transformer"; kda or gdn
 * layers, with softmax attention layers or without: "kda", "gated_deltanet"):
 *   config.json                   fla's config, every field that differs from fla's defaults
 *   model.safetensors             fla's parameter names and shapes, float32
 *   reference_logits.safetensors  input_ids int64 [2, 100] and attnlab's logits float32
 *                                 [2, 100, V], for tests/reference/fla_export_check.py
 * What fla cannot express (MLA or linear layers, NoPE softmax, kda/gdn switches fla lacks, no
 * MLP) is refused with one line. The folder is written under a temporary name and renamed. */
#pragma once
#include <stdbool.h>

#include "util.h"

bool export_fla(const char *checkpoint, const char *out_dir, Error *err);
