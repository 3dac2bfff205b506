/* The optimizer step: learning-rate schedule (linear warmup, then cosine, linear or constant),
 * global-norm gradient clipping, and AdamW with decay only on the tensors that take it. */
#pragma once
#include "core/config/config.h"
#include "params.h"

/* Learning rate for update number `step` (0-based). */
double lr_at(const TrainConfig *t, int step);

/* Clips and applies one AdamW update (update number step, 1-based for bias correction).
 * Returns the gradient norm before clipping; when it is not finite nothing is changed. */
double optimizer_step(ParamSet *ps, const TrainConfig *t, int step, double lr);
