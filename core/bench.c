/* Training-step benchmark (see bench.h). Random tokens, so it needs no data; the median over
 * several steps after warm-up keeps one slow step (page faults, a busy core) from skewing it. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "optimizer.h"
#include "progress.h"
#include "rng.h"
#include "util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_train(Config *cfg, int steps) {
    const Backend *be = backend_by_name(cfg->device);
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
        double t0 = now_seconds();
        params_zero_grad(&m->params);
        model_forward(m, inputs, targets, 1.0f / N);
        model_backward(m);
        optimizer_step(&m->params, tc, s + 1, tc->lr);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    double tps = N / median;
    double flops_per_token = 3.0 * model_flops_per_token(m, T); /* forward + backward (2x) */
    char params[32], tok[32];
    format_count(params, sizeof params, (double)model_param_count(m));
    format_count(tok, sizeof tok, tps);
    printf("bench train: %s, %d layers of %s, d_model %d, %d heads, batch %d x seq %d, vocab %d, %s parameters\n",
           be->name, m->L, cfg->model.mixer, m->C, cfg->model.n_heads, B, T, m->V, params);
    if (strcmp(be->name, "cpu") == 0) printf("CPU threads: %d\n", backend_threads());
    printf("%-16s %12s %12s %12s %12s\n", "steps measured", "median ms", "min ms", "tokens/s", "GFLOP/s");
    printf("%-16d %12.1f %12.1f %12s %12.1f\n", steps, median * 1e3, times[0] * 1e3, tok, flops_per_token * tps / 1e9);
    free(times);
    free(inputs);
    free(targets);
    model_free(m);
    return 0;
}
