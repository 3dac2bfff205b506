/* lm: language modelling on data.path. Training batches are windows at random offsets in the
 * training split; validation is the fixed sequence of consecutive windows of the held-out split.
 * With eval.max_length_factor > 1 the final evaluation also runs at longer lengths. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/evaluate.h"
#include "core/io/data.h"
#include "core/model.h"
#include "core/task.h"
#include "lm.h"

typedef struct {
    Task base;
    Dataset data;
    double val_unigram_entropy; /* nats per token */
} LmTask;

/* The entropy of the tokens' own frequencies: no prediction that ignores context scores below
 * it on these tokens (a model first learns the frequencies, and sits there: the first plateau). */
static double unigram_entropy(const uint16_t *tokens, size_t n, int vocab) {
    size_t *count = xcalloc((size_t)vocab, sizeof(size_t));
    for (size_t i = 0; i < n; i++) count[tokens[i]]++;
    double h = 0;
    for (int v = 0; v < vocab; v++)
        if (count[v]) h -= (double)count[v] / n * log((double)count[v] / n);
    free(count);
    return h;
}

static Task *lm_create(const Config *c, Error *err) {
    DataFormat format;
    if (!data_format_parse(c->data.format, &format)) {
        error_set(err, "data.format: expected auto, text or shard, got '%s'", c->data.format);
        return NULL;
    }
    /* The usual first-run mistake is a relative path read from another directory: say which. */
    if (access(c->data.path, R_OK) != 0) {
        int saved = errno;
        char cwd[4096];
        error_set(err, "data.path = '%s': %s (a relative path is read from the directory attnlab runs in, %s; "
                  "make data writes data/brown.txt)", c->data.path, strerror(saved),
                  getcwd(cwd, sizeof cwd) ? cwd : "unknown");
        return NULL;
    }
    LmTask *t = xcalloc(1, sizeof *t);
    if (!dataset_load(&t->data, c->data.path, format, c->model.vocab_size, c->data.val_fraction,
                      (size_t)c->data.split_block, err)) {
        free(t);
        return NULL;
    }
    size_t need = (size_t)c->train.seq_len + 1;
    const char *side = t->data.train.n < need ? "training" : t->data.val.n < need ? "validation" : NULL;
    if (side) {
        error_set(err, "%s: the %s split holds %zu tokens, fewer than train.seq_len + 1 = %zu", c->data.path, side,
                  side[0] == 't' ? t->data.train.n : t->data.val.n, need);
        dataset_free(&t->data);
        free(t);
        return NULL;
    }
    t->base.byte_tokens = t->data.is_text;
    t->val_unigram_entropy = unigram_entropy(t->data.val.tokens, t->data.val.n, c->model.vocab_size);
    return &t->base;
}

static void copy_window(const uint16_t *tokens, size_t start, int T, int *inputs, int *targets) {
    for (int i = 0; i < T; i++) {
        inputs[i] = tokens[start + i];
        targets[i] = tokens[start + i + 1];
    }
}

static void lm_train_batch(Task *task, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets) {
    (void)first; /* drawn fresh from rng */
    LmTask *t = (LmTask *)task;
    size_t starts = t->data.train.n - (size_t)T; /* windows need T + 1 tokens */
    for (int b = 0; b < B; b++) {
        size_t start = (size_t)rng_below(rng, starts);
        copy_window(t->data.train.tokens, start, T, inputs + (size_t)b * T, targets + (size_t)b * T);
    }
}

static long lm_eval_windows(const Task *task, int T) {
    const LmTask *t = (const LmTask *)task;
    return (long)((t->data.val.n - 1) / (size_t)T);
}

static void lm_eval_window(const Task *task, long i, int T, int *inputs, int *targets) {
    const LmTask *t = (const LmTask *)task;
    copy_window(t->data.val.tokens, (size_t)i * T, T, inputs, targets);
}

/* Length extrapolation: the validation loss at 1x, 2x, 4x, ... train.seq_len, up to
 * eval.max_length_factor, as long as the held-out split holds a window of that length; three
 * numbers per length, named here. */
static int lm_metric_names(const Task *task, const Config *c, char names[][48], int max) {
    int n = 0;
    if (c->eval.max_length_factor < 2) return 0;
    for (int f = 1; f <= c->eval.max_length_factor && n + 3 <= max; f *= 2) {
        if (lm_eval_windows(task, f * c->train.seq_len) < 1) break;
        snprintf(names[n++], 48, "val_loss_x%d", f);
        snprintf(names[n++], 48, "val_perplexity_x%d", f);
        snprintf(names[n++], 48, "val_bits_per_byte_x%d", f);
    }
    return n;
}

/* ... evaluated with batches shrunk to keep the tokens per batch. */
static int lm_final_metrics(Task *task, Model *m, const Config *c, char names[][48], double *values, int max) {
    int n = lm_metric_names(task, c, names, max), B = c->eval.batch_size ? c->eval.batch_size : c->train.batch_size;
    for (int i = 0; i < n; i += 3) {
        int f = 1 << (i / 3), T = f * c->train.seq_len, Bf = B / f > 0 ? B / f : 1;
        EvalResult r = evaluate(m, task, Bf, T, c->eval.max_batches);
        values[i] = r.loss;
        values[i + 1] = r.perplexity;
        values[i + 2] = r.bits_per_byte;
    }
    return n;
}

const Dataset *lm_task_data(const Task *lm) { return &((const LmTask *)lm)->data; }

static double lm_plateau_loss(const Task *task) { return ((const LmTask *)task)->val_unigram_entropy; }

static void lm_destroy(Task *task) {
    LmTask *t = (LmTask *)task;
    dataset_free(&t->data);
    free(t);
}

const TaskOps task_lm = {
    .name = "lm",
    .create = lm_create,
    .train_batch = lm_train_batch,
    .eval_windows = lm_eval_windows,
    .eval_window = lm_eval_window,
    .final_metrics = lm_final_metrics,
    .metric_names = lm_metric_names,
    .plateau_loss = lm_plateau_loss,
    .destroy = lm_destroy,
};
