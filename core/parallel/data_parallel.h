/* Data-parallel training: the ranks of one run, each on its GPU with a whole copy of the model,
 * share each micro-batch (rank r takes its r-th slice of batch_size / world sequences), sum their
 * gradients with NCCL in buckets while the backward goes on (the gradients of the upper layers
 * are final before the lower layers' are computed), and so take the same optimizer step. Rank 0
 * owns the run's files; the other ranks only compute. A rank that goes away (killed, failed)
 * makes every other one stop at its next collective with a message, instead of hanging. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/params.h"
#include "rank_env.h"

typedef struct DataParallel DataParallel;

/* Before the GPU backend starts: with more than one GPU visible, keeps the local rank's. */
void data_parallel_pick_gpu(const RankEnv *e);
/* Joins the run the environment describes (bootstrap, NCCL); dies with one line when it cannot. */
DataParallel *data_parallel_join(const RankEnv *e);
int dp_rank(const DataParallel *dp);
int dp_world(const DataParallel *dp);

/* The backward's hook: the gradients from float ready_from to the end are final; sums them in
 * buckets of at least DP_BUCKET_BYTES. Call with 0 when every gradient is. */
void dp_gradients_ready(DataParallel *dp, ParamSet *ps, size_t ready_from);
/* The backend's next work waits until every gradient is summed. */
void dp_gradients_join(DataParallel *dp);
/* x[0..n) summed over the ranks; false when a rank has gone (dp_failure says which). */
bool dp_sum(DataParallel *dp, double *x, int n);
/* bytes of host memory at x from rank 0 to every rank (through a device buffer of be). */
bool dp_broadcast_host(DataParallel *dp, void *x, size_t bytes, const Backend *be);
/* Rank 0's parameters and AdamW moments to every rank. */
bool dp_broadcast_params(DataParallel *dp, ParamSet *ps);
/* Whether every rank holds the same parameters (a hash of their bytes); *odd_rank: one that differs. */
bool dp_same_params(DataParallel *dp, const ParamSet *ps, bool *same, int *odd_rank);
/* Why the last collective failed, or NULL. */
const char *dp_failure(const DataParallel *dp);
/* Waits for every rank (so none mistakes another's exit for a failure), then leaves. */
void dp_leave(DataParallel *dp, bool wait_for_all);
