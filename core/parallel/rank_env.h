/* Where this process stands in a data-parallel run: its rank, the world size, its rank on this
 * machine, and rank 0's address, read from the environment the way torchrun sets it (WORLD_SIZE,
 * RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or srun does (SLURM_STEP_NUM_TASKS, SLURM_PROCID,
 * SLURM_LOCALID; rank 0's address from MASTER_ADDR or else SLURM_LAUNCH_NODE_IPADDR, the port
 * from MASTER_PORT or else one derived from SLURM_JOB_ID). `attnlab train --gpus N` sets the
 * torchrun variables for the ranks it starts. */
#pragma once
#include <stdbool.h>

#include "core/util.h"

typedef struct {
    int rank, world, local_rank;
    char addr[256]; /* rank 0's host name or address */
    int port;       /* rank 0 listens here for the others */
    const char *source; /* "torchrun variables", "srun variables" or "none" */
} RankEnv;

/* Fills e; world = 1 and rank 0 when the environment names no data-parallel run. False, with a
 * message naming the variable, when it names one inconsistently (a rank outside the world, a
 * port that is not one, no address). */
bool rank_env_read(RankEnv *e, Error *err);
