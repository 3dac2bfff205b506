/* `attnlab bench decode`: time per generated token and decode-cache bytes against context length,
 * pure full attention against a hybrid of the same model, side by side. The contexts, steps and
 * batch come from the config's efficiency section; the timing is the efficiency task's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "core/backend_select.h"
#include "core/model.h"
#include "core/progress.h"
#include "core/util.h"
#include "efficiency.h"

typedef struct {
    double ms, cache;
    bool replayed; /* the measured steps replayed one recorded graph (GPU) */
} DecodePoint;

/* every context's decode time and cache bytes of the config's model with the given ratio */
static void measure(Config *cfg, const char *ratio, const long *contexts, int n, int steps, DecodePoint *out,
                    double *params) {
    char *set = xasprintf("model.hybrid.ratio=%s", ratio);
    Error err;
    if (!config_set(cfg, set, &err) || !config_check(cfg, &err)) die("%s", err.msg);
    free(set);
    const Backend *be = backend_for_config(cfg);
    int B = cfg->efficiency.batch_size;
    Model *m = model_create(&cfg->model, be);
    model_reshape_forward(m, B, 1);
    model_init_params(m, (uint64_t)cfg->seed);
    *params = (double)model_param_count(m);
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < n; i++) {
        out[i].ms = decode_step_ms(m, B, contexts[i], steps, &rng);
        out[i].replayed = m->decode_graph != NULL;
        out[i].cache = (double)model_cache_bytes(m, contexts[i]);
        progress_note("  %s: context %ld done", ratio, contexts[i]);
    }
    model_free(m);
}

int bench_decode(Config *cfg, const char *ratio, const long *contexts, int n, int steps, const char *csv_path) {
    const Backend *be = backend_for_config(cfg);
    backend_set_threads(cfg->threads);
    HybridConfig *h = &cfg->model.hybrid;
    char *full = xstrdup(h->full), *linear = xstrdup(h->linear);
    int B = cfg->efficiency.batch_size;
    DecodePoint *pure = xmalloc(sizeof(DecodePoint) * (size_t)n), *hyb = xmalloc(sizeof(DecodePoint) * (size_t)n);
    double params_pure, params_hyb;
    char full_ratio[8];
    snprintf(full_ratio, sizeof full_ratio, "0:1");
    measure(cfg, full_ratio, contexts, n, steps, pure, &params_pure);
    measure(cfg, ratio, contexts, n, steps, hyb, &params_hyb);
    char what[160];
    be->peak_flops(what, sizeof what);
    printf("bench decode on %s%s%s: %d layers, d_model %d, batch %d; %s against %s %s/%s\n", be->name,
           what[0] ? ", " : "", what, cfg->model.n_layers, cfg->model.d_model, B, full, ratio, linear, full);
    printf("time per decode step at position L - 1 (median of %d), cache bytes per sequence\n", steps);
    printf("%10s %12s %12s %9s %14s %14s %9s\n", "context", "full ms", "hybrid ms", "speed-up", "full MiB", "hybrid MiB",
           "saved");
    char *csv = xstrdup("device,context,full_ms,hybrid_ms,speedup,full_cache_bytes,hybrid_cache_bytes,cache_saved\n");
    for (int i = 0; i < n; i++) {
        double up = pure[i].ms / hyb[i].ms, saved = 1.0 - hyb[i].cache / pure[i].cache;
        printf("%10ld %12.3f %12.3f %8.2fx %14.2f %14.2f %8.1f%%\n", contexts[i], pure[i].ms, hyb[i].ms, up,
               pure[i].cache / 1048576.0, hyb[i].cache / 1048576.0, 100.0 * saved);
        char *row = xasprintf("%s%s,%ld,%.5f,%.5f,%.4f,%.0f,%.0f,%.4f\n", csv, be->name, contexts[i], pure[i].ms,
                              hyb[i].ms, up, pure[i].cache, hyb[i].cache, saved);
        free(csv);
        csv = row;
    }
    if (csv_path) {
        char *dir = path_dirname(csv_path);
        Error err;
        if (!mkdir_p(dir, &err)) die("%s", err.msg);
        free(dir);
        write_file_atomic(csv_path, csv, strlen(csv));
        printf("wrote %s\n", csv_path);
    }
    printf("parameters: %.1fM (full), %.1fM (hybrid)\n", params_pure / 1e6, params_hyb / 1e6);
    if (strcmp(be->name, "cpu") != 0) { /* say whether the figures are a replayed graph or launch by launch */
        int full_graphs = 0, hybrid_graphs = 0;
        for (int i = 0; i < n; i++) full_graphs += pure[i].replayed, hybrid_graphs += hyb[i].replayed;
        printf("steps replayed as one CUDA graph: %d of %d contexts (full), %d of %d (hybrid)%s\n", full_graphs, n,
               hybrid_graphs, n, full_graphs + hybrid_graphs < 2 * n ? "; the others ran launch by launch" : "");
    }
    free(csv);
    free(pure);
    free(hyb);
    free(full);
    free(linear);
    return 0;
}
