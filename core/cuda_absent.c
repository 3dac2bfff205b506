/* The CPU-only build's answer to "is there a GPU backend?": no. `make cuda` links
 * core/cuda/backend_cuda.cu instead of this file. */
#include "backend.h"

#include <stdio.h>

const Backend *backend_cuda(void) { return NULL; }

const char *backend_cuda_matmul(const char *mode) { return mode; }

const char *backend_cuda_attention_kernels(void) { return NULL; }

int backend_cuda_compute_capability(void) { return 0; }

bool backend_cuda_usable(char *why, size_t len) {
    if (why) snprintf(why, len, "this build has no GPU backend (make cuda)");
    return false;
}
