/* Choosing the backend: by name, or as a config asks (backend_select.h). */
#include "core/backend_select.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"

const Backend *backend_by_name(const char *name) {
    if (strcmp(name, "cpu") == 0) return backend_cpu();
    if (strcmp(name, "cuda") == 0) {
        const Backend *be = backend_cuda();
        if (!be) die("device 'cuda' requested, but this attnlab was built without the GPU backend (build it with 'make cuda')");
        return be;
    }
    die("unknown device '%s' (expected 'cpu' or 'cuda')", name);
}

const Backend *backend_for_config(Config *cfg) {
    const Backend *be = backend_by_name(cfg->device);
    if (strcmp(cfg->device, "cuda") == 0) {
        const char *mode = backend_cuda_matmul(cfg->cuda.matmul);
        if (strcmp(mode, cfg->cuda.matmul) != 0) {
            char assignment[64];
            Error err;
            snprintf(assignment, sizeof assignment, "cuda.matmul=%s", mode);
            if (!config_set(cfg, assignment, &err)) die("%s", err.msg);
        }
    }
    return be;
}
