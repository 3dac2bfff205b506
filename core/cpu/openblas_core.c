/* OpenBLAS picks its kernels for the CPU at load time. Debian 12's 0.3.21 does not know Intel
   CPUs newer than Sapphire Rapids (Emerald Rapids is family 6 model 207) and falls back to its
   generic Prescott (SSE3) kernels: training ran 4x slower on such a machine (2,300 against 9,000
   tokens/s in `bench train`). The choice can only be changed before the library loads, through
   OPENBLAS_CORETYPE, so the process starts itself again once with the right name. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/backend.h"

char *openblas_get_corename(void);

void backend_cpu_pick_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return; /* the user's choice, or already started again */
    if (strcasecmp(openblas_get_corename(), "prescott") != 0) return;
    __builtin_cpu_init();
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core) return; /* an old CPU: Prescott is right */
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv); /* returns only on failure: go on with the slow kernels */
}
