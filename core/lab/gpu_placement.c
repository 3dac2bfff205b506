#include "gpu_placement.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* The GPUs the driver lists, or -1 when it lists none (no NVIDIA driver). */
static int driver_gpu_count(void) {
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Splits a comma list into sw->gpus; with `numbers`, each item must be a GPU index below `count`
 * (when count >= 0) and appear once. */
static bool take_list(Sweep *sw, const char *list, const char *what, bool numbers, int count, Error *err) {
    char *copy = xstrdup(list), *save = NULL;
    bool ok = true;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        long index;
        if (sw->n_gpus == (int)(sizeof sw->gpus / sizeof sw->gpus[0]))
            ok = error_set(err, "%s: at most %zu GPUs", what, sizeof sw->gpus / sizeof sw->gpus[0]);
        else if (numbers && (!parse_long(item, &index) || index < 0))
            ok = error_set(err, "%s: expected GPU indices separated by commas (e.g. 0,1,2,3), got '%s'", what, list);
        else if (numbers && count >= 0 && index >= count)
            ok = error_set(err, "%s: GPU %ld does not exist: this machine has %d (0 to %d)", what, index, count,
                           count - 1);
        for (int g = 0; ok && g < sw->n_gpus; g++)
            if (strcmp(sw->gpus[g], item) == 0) ok = error_set(err, "%s: GPU %s is named twice", what, item);
        if (ok) sw->gpus[sw->n_gpus++] = xstrdup(item);
    }
    free(copy);
    if (ok && sw->n_gpus == 0) ok = error_set(err, "%s: no GPU named", what);
    return ok;
}

bool gpu_placement(Sweep *sw, const char *gpus, int jobs_per_gpu, long *jobs, Error *err) {
    if (!sweep_uses_gpus(sw)) {
        if (gpus || jobs_per_gpu)
            return error_set(err, "--gpus and --jobs-per-gpu place runs on GPUs; no run of %s has device = \"cuda\"",
                             sw->source);
        return true;
    }
    if (gpus && *jobs) return error_set(err, "--gpus runs --jobs-per-gpu jobs on each GPU: --jobs does not apply");
    int count = driver_gpu_count();
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    bool ok;
    if (gpus) {
        ok = take_list(sw, gpus, "--gpus", true, count, err);
    } else if (visible && *visible) {
        ok = take_list(sw, visible, "CUDA_VISIBLE_DEVICES", false, -1, err);
    } else if (count > 0) {
        char list[64 * 4] = "";
        for (int g = 0; g < count && g < 64; g++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", g ? "," : "", g);
        ok = take_list(sw, list, "the driver's GPUs", true, count, err);
    } else {
        return error_set(err, "%s runs on device = \"cuda\", and no GPU is visible here (no NVIDIA driver in "
                              "/proc/driver/nvidia, CUDA_VISIBLE_DEVICES unset)", sw->source);
    }
    if (ok && !*jobs) *jobs = (long)sw->n_gpus * (jobs_per_gpu ? jobs_per_gpu : 1);
    return ok;
}
