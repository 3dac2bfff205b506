/* Efficiency runs (task = "efficiency"): prefill time, decode time per token and decode cache
 * bytes against context length, for any model config. */
#pragma once
#include <stdbool.h>

#include "core/config/config.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/util.h"

/* Median time in ms of one decode step of B sequences at position L - 1 (caches sized for L
 * tokens), over `steps` steps after one warm-up step. */
double decode_step_ms(Model *m, int B, long L, int steps, Rng *rng);

enum { MAX_CONTEXTS = 32 };
/* Parses efficiency.contexts ("1024,4096,...") into out[MAX_CONTEXTS]; the count, or -1 with err set. */
int efficiency_contexts(const char *text, long *out, Error *err);
/* Checks efficiency.contexts and the sizes before anything runs. */
bool efficiency_check(const Config *c, Error *err);
/* Measures, prints a table and writes the run's folder: efficiency.csv (one row per context),
 * summary.json (with the sweep's fields) and config.lua. Returns the exit status. */
int efficiency_run(Config *c, int n_overrides, const char **paths, const char **values);
