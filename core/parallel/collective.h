/* The collectives of data-parallel training, on NCCL over the GPUs (core/parallel/nccl.c, built
 * with `make cuda` where NCCL is found), or absent (nccl_absent.c: every call says how to get
 * it). Buffers are device memory of the CUDA backend; operations are ordered after the work the
 * backend has queued (its stream) and, but for the _async ones, finished on return. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

typedef struct Collective Collective;

/* Whether this build can run collectives; why not in `why`. */
bool collective_available(char *why, size_t len);
/* The size of the id that rank 0 makes and the bootstrap hands to every rank (at most 4 KiB). */
size_t collective_id_size(void);
void collective_new_id(void *id);
/* Joins the world of `world` ranks that share `id`; NULL with a message when NCCL refuses. */
Collective *collective_open(const void *id, int rank, int world, Error *err);

/* x[0..n) summed over the ranks, in place, on the collective's own stream once the backend's
 * queued work is done; the backend's later work waits for it after collective_join. */
void collective_sum_async(Collective *c, float *x, size_t n);
void collective_join(Collective *c);
/* Host values summed over the ranks; false when the collective failed (collective_error). */
bool collective_sum_host(Collective *c, double *x, int n);
/* bytes at x (device memory) from rank `root` to every rank. */
bool collective_broadcast(Collective *c, void *x, size_t bytes, int root);
/* Each rank's v, in rank order, into all[world] (host). */
bool collective_gather_host(Collective *c, uint64_t v, uint64_t *all);

/* Called every few milliseconds while an operation waits: writes why (len bytes) when a rank has
 * gone, and the operation then aborts the communicator and fails instead of waiting forever. */
typedef void (*CollectiveWatch)(void *ctx, char *why, size_t len);
void collective_set_watch(Collective *c, CollectiveWatch watch, void *ctx);
/* Makes the pending and every later operation fail; `why` is kept for collective_error. */
void collective_abort(Collective *c, const char *why);
bool collective_failed(const Collective *c);
const char *collective_error(const Collective *c);
void collective_close(Collective *c);
