/* Training-step benchmark (see bench.h). Random tokens, so it needs no data; the median over
 * several steps after warm-up keeps one slow step (page faults, a busy core) from skewing it. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/backend_select.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char TRAIN_CSV_HEADER[] =
    "device,mixers,n_layers,d_model,n_heads,batch,seq,vocab,params,median_ms,tokens_per_s,model_tflops,mfu,peak_bytes\n";

/* A CSV file rows are appended to must be new or have this header: a file with an older
 * attnlab's columns is refused before the benchmark runs, rather than mixed. */
static void check_csv_header(const char *path, const char *header) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char first[1024] = "";
    bool same = fgets(first, sizeof first, f) && strcmp(first, header) == 0;
    fclose(f);
    if (!same)
        die("%s: its header is not this benchmark's columns (%.*s); move it aside or give --csv another file", path,
            (int)strcspn(header, "\n"), header);
}

/* appends one row to a CSV file, writing the header first when the file is new */
static void append_csv(const char *path, const char *header, const char *row) {
    char *dir = path_dirname(path);
    Error err;
    if (!mkdir_p(dir, &err)) die("%s", err.msg);
    free(dir);
    bool fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) die("cannot write '%s'", path);
    if (fresh) fputs(header, f);
    fputs(row, f);
    if (fclose(f) != 0) die("cannot write '%s'", path);
}

int bench_train(Config *cfg, int steps, const char *csv_path) {
    if (csv_path) check_csv_header(csv_path, TRAIN_CSV_HEADER);
    const Backend *be = backend_for_config(cfg);
    backend_set_threads(cfg->threads);
    const TrainConfig *tc = &cfg->train;
    int B = tc->batch_size, T = tc->seq_len, N = B * T, warmup = 2;
    Model *m = model_create(&cfg->model, be);
    model_reshape(m, B, T);
    model_init_params(m, (uint64_t)cfg->seed);
    int *inputs = xmalloc(sizeof(int) * (size_t)N), *targets = xmalloc(sizeof(int) * (size_t)N);
    Rng rng;
    rng_seed(&rng, 12345);
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)rng_below(&rng, (uint64_t)m->V);
        targets[i] = (int)rng_below(&rng, (uint64_t)m->V);
    }
    double *times = xmalloc(sizeof(double) * (size_t)steps);
    for (int s = 0; s < warmup + steps; s++) {
        be->sync();
        double t0 = now_seconds();
        params_zero_grad(&m->params);
        be->step_weights(m->params.w, m->params.total); /* as train's steps do */
        model_forward(m, inputs, targets, 1.0f / N);
        model_backward(m);
        be->step_weights(NULL, 0);
        optimizer_step(&m->params, tc, s + 1, tc->lr);
        be->sync(); /* a GPU queues the work: the step ends when it has run */
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    double tps = N / median;
    double flops_per_token = 3.0 * model_flops_per_token(m, T); /* forward + backward (2x) */
    double achieved = flops_per_token * tps;
    char params[32], tok[32], layers[160], mixers[128], peak_what[160];
    format_count(params, sizeof params, (double)model_param_count(m));
    format_count(tok, sizeof tok, tps);
    config_layers_text(&cfg->model, layers, sizeof layers);
    config_mixers_text(&cfg->model, mixers, sizeof mixers);
    double peak = be->peak_flops(peak_what, sizeof peak_what);
    printf("bench train: %s, %s, d_model %d, %d heads, batch %d x seq %d, vocab %d, %s parameters\n", be->name,
           layers, m->C, cfg->model.n_heads, B, T, m->V, params);
    if (strcmp(be->name, "cpu") == 0) printf("CPU threads: %d\n", backend_threads());
    if (peak_what[0]) printf("device: %s\n", peak_what);
    printf("model FLOPs: 6 per parameter per token plus causal attention; MFU against the dense peak\n");
    printf("%-16s %12s %12s %12s %12s %8s\n", "steps measured", "median ms", "min ms", "tokens/s", "TFLOP/s", "MFU");
    char mfu[16] = "-";
    if (peak > 0) snprintf(mfu, sizeof mfu, "%.1f%%", 100.0 * achieved / peak);
    printf("%-16d %12.1f %12.1f %12s %12.2f %8s\n", steps, median * 1e3, times[0] * 1e3, tok, achieved / 1e12, mfu);
    double param_bytes = 16.0 * (double)model_param_count(m); /* values, gradients, two moments */
    printf("peak memory: %.1f MiB held by attnlab's allocations (%.1f MiB of it parameters, gradients and AdamW "
           "moments; the rest activations and workspaces)\n", be->peak_bytes() / 1048576.0, param_bytes / 1048576.0);
    if (csv_path) {
        char row[512], mfu_csv[32] = "";
        if (peak > 0) snprintf(mfu_csv, sizeof mfu_csv, "%.4f", achieved / peak);
        snprintf(row, sizeof row, "%s,\"%s\",%d,%d,%d,%d,%d,%d,%.0f,%.3f,%.1f,%.4f,%s,%zu\n", be->name, mixers, m->L,
                 m->C, cfg->model.n_heads, B, T, m->V, (double)model_param_count(m), median * 1e3, tps, achieved / 1e12,
                 mfu_csv, be->peak_bytes());
        append_csv(csv_path, TRAIN_CSV_HEADER, row);
        printf("appended to %s\n", csv_path);
    }
    free(times);
    free(inputs);
    free(targets);
    model_free(m);
    return 0;
}
