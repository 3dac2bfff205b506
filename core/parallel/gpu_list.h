/* The GPUs a command may use: a list given on its command line (--gpus 0,1,2,3), else
 * CUDA_VISIBLE_DEVICES, else every GPU the NVIDIA driver lists (/proc/driver/nvidia/gpus, read
 * without initializing CUDA, which a process that forks workers must not do before it forks). */
#pragma once
#include <stdbool.h>

#include "core/util.h"

enum { GPU_LIST_MAX = 64 };

typedef struct {
    int n;
    char *names[GPU_LIST_MAX]; /* as CUDA_VISIBLE_DEVICES takes them: indices, or UUIDs from that variable */
} GpuList;

/* given: the command line's comma list or NULL; flag: its name for messages ("--gpus"). Each
 * given index must exist and appear once. False with a one-line message otherwise, or when no
 * GPU is visible at all. */
bool gpu_list_visible(GpuList *l, const char *given, const char *flag, Error *err);
void gpu_list_free(GpuList *l);
