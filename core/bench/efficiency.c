/* Efficiency runs (see efficiency.h). Decode time at context L is the time of one decode step at
 * position L - 1 over a cache of L tokens: the cache's contents do not change the work, so it is
 * not filled first (which would take L steps). Prefill is one full forward of L tokens. */
#include "efficiency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/backend_select.h"
#include "core/config/fingerprint.h"
#include "core/io/results.h"
#include "core/model.h"
#include "core/progress.h"
#include "core/rng.h"

int efficiency_contexts(const char *text, long *out, Error *err) {
    int n = 0;
    char *copy = xstrdup(text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (n == MAX_CONTEXTS || !parse_long(tok, &v) || v < 1 || v > (1L << 24)) {
            error_set(err, "field 'efficiency.contexts': expected up to %d comma-separated lengths in [1, %ld], got '%s'",
                      MAX_CONTEXTS, 1L << 24, text);
            free(copy);
            return -1;
        }
        out[n++] = v;
    }
    free(copy);
    if (!n) error_set(err, "field 'efficiency.contexts': no context length given");
    return n ? n : -1;
}

bool efficiency_check(const Config *c, Error *err) {
    long contexts[MAX_CONTEXTS];
    return efficiency_contexts(c->efficiency.contexts, contexts, err) > 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double decode_step_ms(Model *m, int B, long L, int steps, Rng *rng) {
    const Backend *be = m->be;
    int *tokens = xmalloc(sizeof(int) * (size_t)B);
    float *logits = xmalloc(sizeof(float) * (size_t)B * m->V);
    double *t = xmalloc(sizeof(double) * (size_t)steps);
    model_decode_begin(m, B, L);
    for (int b = 0; b < B; b++) tokens[b] = (int)rng_below(rng, (uint64_t)m->V);
    /* warm-up: the first step runs as it is, the second is recorded as a graph where the backend can */
    for (int w = 0; w < 2; w++) model_decode_step(m, tokens, L - 1, logits);
    for (int s = 0; s < steps; s++) {
        be->sync();
        double a = now_seconds();
        model_decode_step(m, tokens, L - 1, logits);
        be->sync();
        t[s] = now_seconds() - a;
    }
    qsort(t, (size_t)steps, sizeof(double), cmp_double);
    double ms = 1e3 * t[steps / 2];
    free(tokens);
    free(logits);
    free(t);
    return ms;
}

int efficiency_run(Config *c, int n_overrides, const char **paths, const char **values) {
    Error err;
    long contexts[MAX_CONTEXTS];
    int n_ctx = efficiency_contexts(c->efficiency.contexts, contexts, &err);
    if (n_ctx < 0) die("%s", err.msg);
    const Backend *be = backend_for_config(c);
    backend_set_threads(c->threads);
    int B = c->efficiency.batch_size, steps = c->efficiency.decode_steps;
    Model *m = model_create(&c->model, be);
    model_reshape_forward(m, B, 1);
    model_init_params(m, (uint64_t)c->seed);
    char *dir = xasprintf("%s/%s/%s", c->out_dir, c->experiment, c->run);
    if (!mkdir_p(dir, &err)) die("%s", err.msg);
    char *header = xasprintf("resolved config of run '%s/%s' (from %s)", c->experiment, c->run, c->source_path);
    char *text = config_to_lua(c, header), *cfg_path = xasprintf("%s/config.lua", dir);
    write_file_atomic(cfg_path, text, strlen(text));
    Rng rng;
    rng_seed(&rng, 99);
    Summary sum = {.status = "finished", .experiment = c->experiment, .run = c->run, .device = be->name,
                   .task = c->task, .params = (double)model_param_count(m), .train_loss = NAN, .val_loss = NAN,
                   .val_bits_per_byte = NAN, .val_perplexity = NAN, .val_accuracy = NAN, .tokens_per_s = NAN,
                   .wall_s = NAN, .tokens_seen = NAN};
    char csv_text[8192];
    size_t cl = (size_t)snprintf(csv_text, sizeof csv_text,
                                 "context,prefill_ms,prefill_tokens_per_s,decode_ms_per_step,decode_tokens_per_s,"
                                 "cache_bytes_per_sequence\n");
    double t0 = now_seconds();
    printf("efficiency of '%s/%s' on %s: %d layers, %s, batch %d\n", c->experiment, c->run, be->name, m->L,
           c->model.hybrid.ratio[0] ? c->model.hybrid.ratio : c->model.mixer, B);
    printf("%10s %14s %16s %18s %16s\n", "context", "prefill ms", "decode ms/step", "decode tokens/s", "cache MiB/seq");
    for (int i = 0; i < n_ctx; i++) {
        long L = contexts[i];
        double prefill_ms = NAN;
        if (L <= c->efficiency.prefill_max) {
            model_reshape_forward(m, B, (int)L);
            int *in = xmalloc(sizeof(int) * (size_t)B * L), *tg = xmalloc(sizeof(int) * (size_t)B * L);
            for (long j = 0; j < B * L; j++) {
                in[j] = (int)rng_below(&rng, (uint64_t)m->V);
                tg[j] = -1;
            }
            int reps = L >= 8192 ? 1 : 3;
            double times[3];
            model_forward(m, in, tg, 0.0f); /* warm-up */
            for (int r = 0; r < reps; r++) {
                be->sync();
                double a = now_seconds();
                model_forward(m, in, tg, 0.0f);
                be->sync();
                times[r] = now_seconds() - a;
            }
            qsort(times, (size_t)reps, sizeof(double), cmp_double);
            prefill_ms = 1e3 * times[reps / 2];
            free(in);
            free(tg);
        }
        double decode_ms = decode_step_ms(m, B, L, steps, &rng);
        double cache = (double)model_cache_bytes(m, L);
        printf("%10ld %14.2f %16.3f %18.1f %16.2f\n", L, prefill_ms, decode_ms, B * 1e3 / decode_ms, cache / 1048576.0);
        fflush(stdout);
        cl += (size_t)snprintf(csv_text + cl, sizeof csv_text - cl, "%ld,%.4f,%.2f,%.5f,%.2f,%.0f\n", L, prefill_ms,
                               B * L * 1e3 / prefill_ms, decode_ms, B * 1e3 / decode_ms, cache);
        if (sum.n_metrics + 3 <= 32) {
            snprintf(sum.metric_names[sum.n_metrics], 48, "decode_ms_%ld", L);
            sum.metric_values[sum.n_metrics++] = decode_ms;
            snprintf(sum.metric_names[sum.n_metrics], 48, "prefill_ms_%ld", L);
            sum.metric_values[sum.n_metrics++] = prefill_ms;
            snprintf(sum.metric_names[sum.n_metrics], 48, "cache_mib_%ld", L);
            sum.metric_values[sum.n_metrics++] = cache / 1048576.0;
        }
    }
    sum.wall_s = now_seconds() - t0;
    char fingerprint[FINGERPRINT_HEX];
    config_fingerprint(c, fingerprint);
    sum.fingerprint = fingerprint;
    sum.n_overrides = n_overrides;
    for (int i = 0; i < n_overrides && i < 32; i++) {
        sum.override_paths[i] = paths[i];
        sum.override_values[i] = values[i];
    }
    char *csv_path = xasprintf("%s/efficiency.csv", dir), *sum_path = xasprintf("%s/summary.json", dir);
    write_file_atomic(csv_path, csv_text, cl);
    summary_write(sum_path, &sum);
    printf("results: %s/ (efficiency.csv, summary.json, config.lua)\n", dir);
    free(csv_path);
    free(sum_path);
    free(cfg_path);
    free(text);
    free(header);
    free(dir);
    model_free(m);
    return 0;
}
