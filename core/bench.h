/* `attnlab bench ...`: speed measurements, printed as a table (never timed in tests). */
#pragma once
#include "config.h"

/* bench train: median time of full training steps (forward, backward, AdamW) on random tokens
 * at the config's shape; prints tokens/s and achieved GFLOP/s. */
int bench_train(Config *cfg, int steps);
