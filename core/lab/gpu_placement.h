/* Which GPUs a sweep's jobs run on: `--gpus 0,1,2,3`, else CUDA_VISIBLE_DEVICES, else every GPU
 * the NVIDIA driver lists (/proc/driver/nvidia/gpus, read without initializing CUDA, which a
 * forking sweep must not do before its children). */
#pragma once
#include <stdbool.h>

#include "sweep.h"

/* Sets sw's GPU list for a sweep whose runs use device = "cuda" (nothing for a CPU sweep, where
 * gpus and jobs_per_gpu are refused) and *jobs, when it is 0, to jobs_per_gpu (default 1) per GPU.
 * A sweep of data-parallel runs (train.data_parallel = D) gets groups of D GPUs instead, and
 * jobs_per_gpu runs per group.
 * gpus: --gpus's value or NULL; jobs_per_gpu: 0 when not given. */
bool gpu_placement(Sweep *sw, const char *gpus, int jobs_per_gpu, long *jobs, Error *err);
