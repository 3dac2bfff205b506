#include "gpu_list.h"

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

/* Splits a comma list into l; with `numbers`, each item must be a GPU index below `count`
 * (when count >= 0) and appear once. */
static bool take_list(GpuList *l, const char *list, const char *what, bool numbers, int count, Error *err) {
    char *copy = xstrdup(list), *save = NULL;
    bool ok = true;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        long index;
        if (l->n == GPU_LIST_MAX)
            ok = error_set(err, "%s: at most %d GPUs", what, GPU_LIST_MAX);
        else if (numbers && (!parse_long(item, &index) || index < 0))
            ok = error_set(err, "%s: expected GPU indices separated by commas (e.g. 0,1,2,3), got '%s'", what, list);
        else if (numbers && count >= 0 && index >= count)
            ok = error_set(err, "%s: GPU %ld does not exist: this machine has %d (0 to %d)", what, index, count,
                           count - 1);
        for (int g = 0; ok && g < l->n; g++)
            if (strcmp(l->names[g], item) == 0) ok = error_set(err, "%s: GPU %s is named twice", what, item);
        if (ok) l->names[l->n++] = xstrdup(item);
    }
    free(copy);
    if (ok && l->n == 0) ok = error_set(err, "%s: no GPU named", what);
    if (!ok) gpu_list_free(l);
    return ok;
}

bool gpu_list_visible(GpuList *l, const char *given, const char *flag, Error *err) {
    memset(l, 0, sizeof *l);
    int count = driver_gpu_count();
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (given) return take_list(l, given, flag, true, count, err);
    if (visible && *visible) return take_list(l, visible, "CUDA_VISIBLE_DEVICES", false, -1, err);
    if (count > 0) {
        char list[GPU_LIST_MAX * 4] = "";
        for (int g = 0; g < count && g < GPU_LIST_MAX; g++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", g ? "," : "", g);
        return take_list(l, list, "the driver's GPUs", true, count, err);
    }
    return error_set(err, "no GPU is visible here (no NVIDIA driver in /proc/driver/nvidia, CUDA_VISIBLE_DEVICES unset)");
}

void gpu_list_free(GpuList *l) {
    for (int g = 0; g < l->n; g++) free(l->names[g]);
    l->n = 0;
}
