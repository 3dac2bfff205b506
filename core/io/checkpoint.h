/* Checkpoints: safetensors with the parameters ("param.<name>") and AdamW moments
 * ("adam_m.<name>", "adam_v.<name>"), and in the metadata the step, the resolved config, the
 * data sampler's RNG state and the running totals, so a resumed run continues bit for bit. */
#pragma once
#include <stdbool.h>

#include "core/model.h"
#include "core/rng.h"
#include "safetensors.h"

typedef struct {
    int step;            /* optimizer updates done */
    Rng data_rng;        /* the training-batch sampler's state after `step` updates */
    double train_seconds; /* time spent in training steps so far */
    double wall_seconds;  /* wall time of the run so far, evaluations and checkpoints included */
    double tokens_seen;
    char *config_lua;    /* the resolved config (owned) */
} CheckpointState;

/* Writes atomically (temporary file, then rename): a crash leaves the previous one intact. */
bool checkpoint_save(const char *path, const Model *m, const CheckpointState *st, Error *err);
/* Loads the state, and into m (when not NULL) the parameters and moments, checking that every
 * tensor the model has is present with its shape. */
bool checkpoint_load(const char *path, Model *m, CheckpointState *st, Error *err);
/* The same on a safetensors file already read (the fuzzer feeds it bytes through st_parse). */
bool checkpoint_from_file(const StFile *f, Model *m, CheckpointState *st, Error *err);
/* The step a checkpoint was written at, from its header alone (a sweep names where a run resumes). */
bool checkpoint_read_step(const char *path, int *step, Error *err);
void checkpoint_state_free(CheckpointState *st);
