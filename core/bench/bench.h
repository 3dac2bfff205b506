/* `attnlab bench ...`: speed measurements, printed as a table (never timed in tests). */
#pragma once
#include "core/backend.h"
#include "core/config/config.h"

/* bench train: median time of full training steps (forward, backward, AdamW) on random tokens
 * at the config's shape; prints tokens/s, achieved model TFLOP/s and MFU (where the device's
 * peak is known), and appends a row to csv_path if set. */
int bench_train(Config *cfg, int steps, const char *csv_path);

/* bench decode: time per generated token and cache bytes against context length for the
 * config's model as pure `full` attention and as the `ratio` hybrid (e.g. "3:1"); prints a
 * table with the speed-up and writes csv_path if set. */
int bench_decode(Config *cfg, const char *ratio, const long *contexts, int n_contexts, int steps, const char *csv_path);

typedef struct {
    int B, T, H, D;
} KernelShape;

/* bench kernels: each mixer core (only: one core's name, or NULL for all) at each shape, forward
 * and forward+backward, chunkwise against recurrent; prints a table, writes csv_path if set. */
int bench_kernels(const Backend *be, const KernelShape *shapes, int n_shapes, int reps, const char *only,
                  const char *csv_path);
