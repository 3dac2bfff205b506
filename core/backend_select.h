/* The backend a config asks for (device, and the GPU's cuda.* settings). */
#pragma once
#include "core/backend.h"
#include "core/config/config.h"

/* backend_by_name(cfg->device); on the GPU, applies cuda.matmul (or ATTNLAB_CUDA_MATMUL, which
 * takes precedence) and sets cfg->cuda.matmul to the mode in effect, so that the resolved config
 * says what ran. Call it before the first model or op of the process. */
const Backend *backend_for_config(Config *cfg);
