/* Efficiency runs (task = "efficiency"): prefill time, decode time per token and decode cache
 * bytes against context length, for any model config. */
#pragma once
#include <stdbool.h>

#include "config.h"
#include "util.h"

/* Checks efficiency.contexts and the sizes before anything runs. */
bool efficiency_check(const Config *c, Error *err);
/* Measures, prints a table and writes the run's folder: efficiency.csv (one row per context),
 * summary.json (with the sweep's fields) and config.lua. Returns the exit status. */
int efficiency_run(Config *c, int n_overrides, const char **paths, const char **values);
