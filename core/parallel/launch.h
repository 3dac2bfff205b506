/* The ranks of a data-parallel run as processes of this machine, one per GPU (`attnlab train
 * --gpus N`, and a sweep's runs with train.data_parallel > 1): each is a fork of this process
 * with CUDA_VISIBLE_DEVICES set to its GPU that runs rank_main with its place in the run (rank
 * 0's address 127.0.0.1 and a free port). Ctrl-C and SIGTERM go to every rank once (they stop
 * together at the next step, rank 0 checkpoints); a rank that ends abnormally makes the others
 * stop (they notice at their next collective); ranks still running a minute later are killed.
 * The caller must not have initialized CUDA (a forked CUDA context is unusable). */
#pragma once

#include "gpu_list.h"
#include "rank_env.h"

typedef int (*RankMain)(void *ctx, const RankEnv *e);

/* Returns rank 0's exit status, or 1 when rank 0 did not end by itself or another rank failed
 * after it (then one line says which rank ended how). */
int launch_ranks(const GpuList *gpus, RankMain rank_main, void *ctx);
