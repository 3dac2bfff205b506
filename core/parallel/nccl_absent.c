/* The collectives in a build without NCCL (the plain CPU build and the tests, or `make cuda` where
 * no NCCL was found): data-parallel training says what is missing before anything starts. */
#include "collective.h"

#include <stdio.h>

bool collective_available(char *why, size_t len) {
    snprintf(why, len, "this build has no NCCL: `make cuda` builds the GPU backend with it where NCCL is installed "
                       "(NCCL_HOME, the CUDA toolkit, /usr, or python3's nvidia-nccl wheel; see the README's "
                       "'Data-parallel training')");
    return false;
}

static __attribute__((noreturn)) void absent(void) {
    char why[256];
    collective_available(why, sizeof why);
    die("data-parallel training: %s", why);
}

size_t collective_id_size(void) { absent(); }
void collective_new_id(void *id) { (void)id, absent(); }
Collective *collective_open(const void *id, int rank, int world, Error *err) { (void)id, (void)rank, (void)world, (void)err, absent(); }
void collective_sum_async(Collective *c, float *x, size_t n) { (void)c, (void)x, (void)n, absent(); }
void collective_join(Collective *c) { (void)c, absent(); }
bool collective_sum_host(Collective *c, double *x, int n) { (void)c, (void)x, (void)n, absent(); }
bool collective_broadcast(Collective *c, void *x, size_t bytes, int root) { (void)c, (void)x, (void)bytes, (void)root, absent(); }
bool collective_gather_host(Collective *c, uint64_t v, uint64_t *all) { (void)c, (void)v, (void)all, absent(); }
void collective_abort(Collective *c, const char *why) { (void)c, (void)why, absent(); }
void collective_set_watch(Collective *c, CollectiveWatch watch, void *ctx) { (void)c, (void)watch, (void)ctx, absent(); }
bool collective_failed(const Collective *c) { (void)c, absent(); }
const char *collective_error(const Collective *c) { (void)c, absent(); }
void collective_close(Collective *c) { (void)c, absent(); }
