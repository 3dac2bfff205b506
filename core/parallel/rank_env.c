#include "rank_env.h"

#include <stdlib.h>
#include <string.h>

/* An integer variable in [lo, hi]; *present false when unset. */
static bool env_int(const char *name, long lo, long hi, long *out, bool *present, Error *err) {
    const char *s = getenv(name);
    *present = s && *s;
    if (!*present) return true;
    if (!parse_long(s, out) || *out < lo || *out > hi)
        return error_set(err, "environment variable %s: expected an integer from %ld to %ld, got '%s'", name, lo, hi, s);
    return true;
}

/* The port of srun's ranks without MASTER_PORT: one per job, so two jobs on a node differ. */
enum { SRUN_PORT_BASE = 20000, SRUN_PORT_SPAN = 20000 };

bool rank_env_read(RankEnv *e, Error *err) {
    memset(e, 0, sizeof *e);
    e->world = 1;
    e->source = "none";
    long world, rank, local = 0, port = 0, job;
    bool has_world, has_rank, has_local, has_port, has_job;
    const char *world_var = "WORLD_SIZE", *rank_var = "RANK", *local_var = "LOCAL_RANK";
    if (!env_int("WORLD_SIZE", 1, 1 << 20, &world, &has_world, err)) return false;
    if (!has_world) { /* inside `srun` (a job step; the batch script itself has no step variables) */
        world_var = "SLURM_STEP_NUM_TASKS", rank_var = "SLURM_PROCID", local_var = "SLURM_LOCALID";
        if (!env_int(world_var, 1, 1 << 20, &world, &has_world, err)) return false;
        if (!has_world || world == 1) return true;
        e->source = "srun variables";
    } else {
        if (world == 1) return true;
        e->source = "torchrun variables";
    }
    if (!env_int(rank_var, 0, world - 1, &rank, &has_rank, err)) return false;
    if (!has_rank) return error_set(err, "environment variable %s = %ld but %s is not set", world_var, world, rank_var);
    if (!env_int(local_var, 0, world - 1, &local, &has_local, err)) return false;
    if (!env_int("MASTER_PORT", 1, 65535, &port, &has_port, err)) return false;
    const char *addr = getenv("MASTER_ADDR");
    if ((!addr || !*addr) && strcmp(e->source, "srun variables") == 0) addr = getenv("SLURM_LAUNCH_NODE_IPADDR");
    if (!addr || !*addr)
        return error_set(err, "environment variable %s = %ld names a data-parallel run but MASTER_ADDR (rank 0's address) "
                              "is not set", world_var, world);
    if (strlen(addr) >= sizeof e->addr) return error_set(err, "environment variable MASTER_ADDR: too long");
    if (!has_port) {
        if (strcmp(e->source, "srun variables") != 0 || !env_int("SLURM_JOB_ID", 0, 1L << 40, &job, &has_job, err) ||
            !has_job)
            return error_set(err, "environment variable %s = %ld names a data-parallel run but MASTER_PORT (rank 0's "
                                  "port) is not set", world_var, world);
        port = SRUN_PORT_BASE + job % SRUN_PORT_SPAN;
    }
    e->world = (int)world;
    e->rank = (int)rank;
    e->local_rank = has_local ? (int)local : 0;
    e->port = (int)port;
    snprintf(e->addr, sizeof e->addr, "%s", addr);
    return true;
}
