#include "data_parallel.h"

#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "collective.h"

/* Bucket size of the gradient sums: large enough for NCCL's bandwidth, small enough that the
 * sums of the upper layers overlap the backward of the lower ones. */
enum { DP_BUCKET_BYTES = 32 << 20 };
/* How long the rendezvous waits for every rank (NCCL's own init then waits as long as it takes). */
static const double RENDEZVOUS_TIMEOUT_S = 300;

struct DataParallel {
    int rank, world;
    Bootstrap boot;
    Collective *coll;
    size_t summed_from; /* the gradients from here to the end are queued for summing this step */
    bool in_step;
};

void data_parallel_pick_gpu(const RankEnv *e) {
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (e->world <= 1) return;
    if (visible && *visible && !strchr(visible, ',')) return; /* one GPU: the launcher's or srun's pick */
    char pick[64];
    if (visible && *visible) { /* the local_rank-th entry of the list */
        char *copy = xstrdup(visible), *save = NULL, *item = strtok_r(copy, ",", &save);
        for (int i = 0; item && i < e->local_rank; i++) item = strtok_r(NULL, ",", &save);
        if (!item)
            die("data-parallel rank %d: LOCAL_RANK %d but CUDA_VISIBLE_DEVICES lists fewer GPUs ('%s')", e->rank,
                e->local_rank, visible);
        snprintf(pick, sizeof pick, "%s", item);
        free(copy);
    } else {
        snprintf(pick, sizeof pick, "%d", e->local_rank);
    }
    setenv("CUDA_VISIBLE_DEVICES", pick, 1);
}

/* The watch of the collectives: has a connection of the rendezvous closed? */
static void watch_departures(void *ctx, char *why, size_t len) {
    DataParallel *dp = ctx;
    int gone = bootstrap_wait_for_departure(&dp->boot, 0);
    if (gone >= 0) snprintf(why, len, "rank %d of %d stopped (its process ended or was killed)", gone, dp->world);
}

DataParallel *data_parallel_join(const RankEnv *e) {
    char why[256];
    if (!collective_available(why, sizeof why)) die("data-parallel training over %d GPUs: %s", e->world, why);
    DataParallel *dp = xcalloc(1, sizeof *dp);
    dp->rank = e->rank;
    dp->world = e->world;
    size_t id_len = collective_id_size();
    char *id = xcalloc(1, id_len);
    if (e->rank == 0) collective_new_id(id);
    Error err;
    if (!bootstrap_share(&dp->boot, e, id, id_len, RENDEZVOUS_TIMEOUT_S, &err)) die("%s", err.msg);
    dp->coll = collective_open(id, e->rank, e->world, &err);
    free(id);
    if (!dp->coll) die("%s", err.msg);
    collective_set_watch(dp->coll, watch_departures, dp);
    return dp;
}

int dp_rank(const DataParallel *dp) { return dp ? dp->rank : 0; }
int dp_world(const DataParallel *dp) { return dp ? dp->world : 1; }

void dp_gradients_ready(DataParallel *dp, ParamSet *ps, size_t ready_from) {
    if (!dp->in_step) {
        dp->summed_from = ps->total;
        dp->in_step = true;
    }
    size_t pending = dp->summed_from - ready_from;
    if (pending * sizeof(float) < DP_BUCKET_BYTES && ready_from > 0) return;
    collective_sum_async(dp->coll, ps->g + ready_from, pending);
    dp->summed_from = ready_from;
}

void dp_gradients_join(DataParallel *dp) {
    collective_join(dp->coll);
    dp->in_step = false;
}

bool dp_sum(DataParallel *dp, double *x, int n) { return collective_sum_host(dp->coll, x, n); }

bool dp_broadcast_host(DataParallel *dp, void *x, size_t bytes, const Backend *be) {
    void *device = be->alloc(bytes);
    be->upload(device, x, bytes);
    bool ok = collective_broadcast(dp->coll, device, bytes, 0);
    if (ok) be->download(x, device, bytes);
    be->release(device);
    return ok;
}

bool dp_broadcast_params(DataParallel *dp, ParamSet *ps) {
    size_t bytes = sizeof(float) * ps->total;
    return collective_broadcast(dp->coll, ps->w, bytes, 0) && collective_broadcast(dp->coll, ps->m, bytes, 0) &&
           collective_broadcast(dp->coll, ps->v, bytes, 0);
}

/* FNV-1a over the parameters' bytes (downloaded in pieces) */
static uint64_t params_hash(const ParamSet *ps) {
    enum { PIECE = 1 << 20 };
    float *host = xmalloc(sizeof(float) * PIECE);
    uint64_t h = 1469598103934665603ull;
    for (size_t at = 0; at < ps->total; at += PIECE) {
        size_t n = min_sz(PIECE, ps->total - at);
        ps->be->download(host, ps->w + at, sizeof(float) * n);
        const unsigned char *b = (const unsigned char *)host;
        for (size_t i = 0; i < sizeof(float) * n; i++) h = (h ^ b[i]) * 1099511628211ull;
    }
    free(host);
    return h;
}

bool dp_same_params(DataParallel *dp, const ParamSet *ps, bool *same, int *odd_rank) {
    uint64_t *all = xmalloc(sizeof(uint64_t) * (size_t)dp->world);
    bool ok = collective_gather_host(dp->coll, params_hash(ps), all);
    *same = true;
    for (int r = 1; ok && r < dp->world && *same; r++)
        if (all[r] != all[0]) *same = false, *odd_rank = r;
    free(all);
    return ok;
}

const char *dp_failure(const DataParallel *dp) { return collective_error(dp->coll); }

void dp_leave(DataParallel *dp, bool wait_for_all) {
    if (!dp) return;
    double barrier = 0;
    if (wait_for_all && !collective_failed(dp->coll)) dp_sum(dp, &barrier, 1);
    collective_close(dp->coll);
    bootstrap_close(&dp->boot);
    free(dp);
}
