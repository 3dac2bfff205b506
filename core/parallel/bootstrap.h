/* The rendezvous of a data-parallel run over TCP: rank 0 listens on its port, every other rank
 * connects (retrying until rank 0 is up) and says its rank, and rank 0 sends them all one blob
 * (NCCL's unique id). The connections then stay open for the whole run: the kernel closes a
 * process's sockets however it ends, so a connection that closes tells the others that a rank
 * has gone (the watchdog of data_parallel.c reads them). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"
#include "rank_env.h"

typedef struct {
    int rank, world;
    int n_peers;
    int *fds;      /* rank 0: the connection of rank i at fds[i - 1]; another rank: fds[0], to rank 0 */
    int *fd_ranks; /* the rank at the other end of fds[i] */
} Bootstrap;

/* Rank 0 sends `blob` (len bytes) to every rank; the others receive it into `blob`. Gives up
 * after timeout_s (a rank that never came, a rank 0 that never listened), with a message naming
 * the address and the ranks missing. */
bool bootstrap_share(Bootstrap *b, const RankEnv *e, void *blob, size_t len, double timeout_s, Error *err);
/* Waits up to timeout_ms for a connection to close; returns the rank at its other end, or -1. */
int bootstrap_wait_for_departure(const Bootstrap *b, int timeout_ms);
void bootstrap_close(Bootstrap *b);
