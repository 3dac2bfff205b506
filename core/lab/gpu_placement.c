#include "gpu_placement.h"

#include <stdlib.h>
#include <string.h>

/* Data-parallel runs: the GPUs in groups of `size` ("0,1", "2,3"), a job slot's GPUs each; GPUs
 * left over from the last whole group stay idle. */
static void group_gpus(GpuList *l, int size) {
    GpuList groups = {0};
    for (int g = 0; g + size <= l->n; g += size) groups.names[groups.n++] = join_texts(l->names + g, size, ",", size);
    gpu_list_free(l);
    *l = groups;
}

bool gpu_placement(Sweep *sw, const char *gpus, int jobs_per_gpu, long *jobs, Error *err) {
    if (!sweep_uses_gpus(sw)) {
        if (gpus || jobs_per_gpu)
            return error_set(err, "--gpus and --jobs-per-gpu place runs on GPUs; no run of %s has device = \"cuda\"",
                             sw->source);
        return true;
    }
    if (gpus && *jobs) return error_set(err, "--gpus runs --jobs-per-gpu jobs on each GPU: --jobs does not apply");
    Error why;
    if (!gpu_list_visible(&sw->gpus, gpus, "--gpus", &why)) {
        if (gpus || getenv("CUDA_VISIBLE_DEVICES")) return error_set(err, "%s", why.msg);
        return error_set(err, "%s runs on device = \"cuda\", and %s", sw->source, why.msg);
    }
    int group = sweep_data_parallel(sw);
    if (group > sw->gpus.n)
        return error_set(err, "%s trains runs on %d GPUs each (train.data_parallel), and %d %s given", sw->source, group,
                         sw->gpus.n, sw->gpus.n == 1 ? "GPU is" : "GPUs are");
    if (group > 1) group_gpus(&sw->gpus, group);
    if (!*jobs) *jobs = (long)sw->gpus.n * (jobs_per_gpu ? jobs_per_gpu : 1);
    return true;
}
