/* `attnlab bench ...`: speed measurements, printed as a table (never timed in tests). */
#pragma once
#include "backend.h"
#include "config.h"

/* bench train: median time of full training steps (forward, backward, AdamW) on random tokens
 * at the config's shape; prints tokens/s and achieved GFLOP/s. */
int bench_train(Config *cfg, int steps);

typedef struct {
    int B, T, H, D;
} KernelShape;

/* bench kernels: each mixer core (only: one core's name, or NULL for all) at each shape, forward
 * and forward+backward, chunkwise against recurrent; prints a table, writes csv_path if set. */
int bench_kernels(const Backend *be, const KernelShape *shapes, int n_shapes, int reps, const char *only,
                  const char *csv_path);
