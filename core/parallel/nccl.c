/* The collectives on NCCL (see collective.h). They run on a stream of their own so that the
 * gradient sums of the upper layers overlap the backward of the lower ones; the CUDA backend
 * queues everything on the default stream, and events order the two. Waits poll instead of
 * blocking, so that a rank that has gone (collective_set_watch's callback says so) aborts the
 * communicator instead of waiting for it forever. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collective.h"

struct Collective {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t queued, done; /* the backend's work so far; the collectives' so far */
    double *scratch;          /* device buffer of the host-value operations */
    double *pinned;           /* their host side: a copy into pageable memory would block */
    int rank, world;
    bool failed, aborted;
    char error[512];
    CollectiveWatch watch;
    void *watch_ctx;
};

enum { SCRATCH_VALUES = 512 };

bool collective_available(char *why, size_t len) {
    (void)why, (void)len;
    return true;
}

size_t collective_id_size(void) { return sizeof(ncclUniqueId); }

void collective_new_id(void *id) {
    ncclResult_t r = ncclGetUniqueId((ncclUniqueId *)id);
    if (r != ncclSuccess) die("NCCL cannot make its id: %s", ncclGetErrorString(r));
}

static bool fail(Collective *c, const char *what, ncclResult_t r) {
    if (!c->failed) snprintf(c->error, sizeof c->error, "NCCL %s failed: %s", what, ncclGetErrorString(r));
    c->failed = true;
    return false;
}

static bool cuda_fail(Collective *c, const char *what, cudaError_t e) {
    if (!c->failed) snprintf(c->error, sizeof c->error, "%s failed: %s", what, cudaGetErrorString(e));
    c->failed = true;
    return false;
}

Collective *collective_open(const void *id, int rank, int world, Error *err) {
    Collective *c = xcalloc(1, sizeof *c);
    c->rank = rank;
    c->world = world;
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    ncclResult_t r = ncclCommInitRank(&c->comm, world, uid, rank);
    if (r != ncclSuccess) {
        error_set(err, "NCCL cannot join rank %d of %d: %s (%s)", rank, world, ncclGetErrorString(r), ncclGetLastError(NULL));
        free(c);
        return NULL;
    }
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&c->queued, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->scratch, sizeof(double) * SCRATCH_VALUES)) != cudaSuccess ||
        (e = cudaMallocHost((void **)&c->pinned, sizeof(double) * SCRATCH_VALUES)) != cudaSuccess)
        die("data-parallel training: CUDA cannot set up the collectives' stream: %s", cudaGetErrorString(e));
    return c;
}

void collective_set_watch(Collective *c, CollectiveWatch watch, void *ctx) {
    c->watch = watch;
    c->watch_ctx = ctx;
}

void collective_sum_async(Collective *c, float *x, size_t n) {
    if (c->failed || !n) return;
    cudaError_t e;
    if ((e = cudaEventRecord(c->queued, 0)) != cudaSuccess || (e = cudaStreamWaitEvent(c->stream, c->queued, 0)) != cudaSuccess) {
        cuda_fail(c, "ordering a gradient sum", e);
        return;
    }
    ncclResult_t r = ncclAllReduce(x, x, n, ncclFloat, ncclSum, c->comm, c->stream);
    if (r != ncclSuccess) fail(c, "all-reduce", r);
}

void collective_join(Collective *c) {
    if (c->failed) return;
    cudaError_t e;
    if ((e = cudaEventRecord(c->done, c->stream)) != cudaSuccess || (e = cudaStreamWaitEvent(0, c->done, 0)) != cudaSuccess)
        cuda_fail(c, "joining the gradient sums", e);
}

/* Waits for the collectives' stream, watching for ranks that have gone. */
static bool wait_stream(Collective *c) {
    for (long spins = 0;; spins++) {
        cudaError_t e = cudaStreamQuery(c->stream);
        if (e == cudaSuccess) return !c->failed;
        if (e != cudaErrorNotReady) return cuda_fail(c, "a collective", e);
        if (spins % 64 == 63) { /* every few milliseconds: has a rank gone, has NCCL failed? */
            char why[256] = "";
            ncclResult_t async = ncclSuccess;
            ncclCommGetAsyncError(c->comm, &async);
            if (async != ncclSuccess && async != ncclInProgress)
                snprintf(why, sizeof why, "NCCL failed: %s", ncclGetErrorString(async));
            else if (c->watch) c->watch(c->watch_ctx, why, sizeof why);
            if (why[0]) {
                /* a rank that leaves after the last collective is no failure: give ours time to end */
                for (double until = now_seconds() + 1.0; now_seconds() < until; usleep(1000))
                    if (cudaStreamQuery(c->stream) == cudaSuccess) return !c->failed;
                collective_abort(c, why);
                return false;
            }
        }
        usleep(50);
    }
}

bool collective_sum_host(Collective *c, double *x, int n) {
    if (c->failed) return false;
    if (n > SCRATCH_VALUES) die("collective_sum_host: %d values, at most %d", n, SCRATCH_VALUES);
    memcpy(c->pinned, x, sizeof(double) * (size_t)n);
    cudaError_t e = cudaMemcpyAsync(c->scratch, c->pinned, sizeof(double) * (size_t)n, cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess) return cuda_fail(c, "uploading values to sum", e);
    ncclResult_t r = ncclAllReduce(c->scratch, c->scratch, (size_t)n, ncclDouble, ncclSum, c->comm, c->stream);
    if (r != ncclSuccess) return fail(c, "all-reduce", r);
    e = cudaMemcpyAsync(c->pinned, c->scratch, sizeof(double) * (size_t)n, cudaMemcpyDeviceToHost, c->stream);
    if (e != cudaSuccess) return cuda_fail(c, "downloading summed values", e);
    if (!wait_stream(c)) return false;
    memcpy(x, c->pinned, sizeof(double) * (size_t)n);
    return true;
}

bool collective_broadcast(Collective *c, void *x, size_t bytes, int root) {
    if (c->failed) return false;
    /* after the backend's work on x */
    cudaError_t e;
    if ((e = cudaEventRecord(c->queued, 0)) != cudaSuccess || (e = cudaStreamWaitEvent(c->stream, c->queued, 0)) != cudaSuccess)
        return cuda_fail(c, "ordering a broadcast", e);
    ncclResult_t r = ncclBroadcast(x, x, bytes, ncclChar, root, c->comm, c->stream);
    if (r != ncclSuccess) return fail(c, "broadcast", r);
    if (!wait_stream(c)) return false;
    return true;
}

bool collective_gather_host(Collective *c, uint64_t v, uint64_t *all) {
    if (c->failed) return false;
    if (c->world + 1 > SCRATCH_VALUES) die("collective_gather_host: %d ranks, at most %d", c->world, SCRATCH_VALUES - 1);
    uint64_t *mine = (uint64_t *)c->scratch, *gathered = mine + 1, *host = (uint64_t *)c->pinned;
    host[0] = v;
    cudaError_t e = cudaMemcpyAsync(mine, host, sizeof v, cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess) return cuda_fail(c, "uploading a value to gather", e);
    ncclResult_t r = ncclAllGather(mine, gathered, 1, ncclUint64, c->comm, c->stream);
    if (r != ncclSuccess) return fail(c, "all-gather", r);
    e = cudaMemcpyAsync(host, gathered, sizeof(uint64_t) * (size_t)c->world, cudaMemcpyDeviceToHost, c->stream);
    if (e != cudaSuccess) return cuda_fail(c, "downloading gathered values", e);
    if (!wait_stream(c)) return false;
    memcpy(all, host, sizeof(uint64_t) * (size_t)c->world);
    return true;
}

void collective_abort(Collective *c, const char *why) {
    if (!c->failed) snprintf(c->error, sizeof c->error, "%s", why);
    c->failed = true;
    if (!c->aborted) ncclCommAbort(c->comm); /* its kernels return, so the streams that wait for them go on */
    c->aborted = true;
}

bool collective_failed(const Collective *c) { return c->failed; }
const char *collective_error(const Collective *c) { return c->failed ? c->error : NULL; }

void collective_close(Collective *c) {
    if (!c) return;
    if (!c->aborted) {
        cudaStreamSynchronize(c->stream);
        ncclCommDestroy(c->comm);
    }
    cudaFree(c->scratch);
    cudaFreeHost(c->pinned);
    cudaEventDestroy(c->queued);
    cudaEventDestroy(c->done);
    cudaStreamDestroy(c->stream);
    free(c);
}
