/* lm: language modelling on data.path. Training batches are windows at random offsets in the
 * training split; validation is the fixed sequence of consecutive windows of the held-out split. */
#include <stdlib.h>

#include "core/data.h"
#include "core/task.h"

typedef struct {
    Task base;
    Dataset data;
} LmTask;

static Task *lm_create(const Config *c, Error *err) {
    DataFormat format;
    if (!data_format_parse(c->data.format, &format)) {
        error_set(err, "data.format: expected auto, text or shard, got '%s'", c->data.format);
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
    return &t->base;
}

static void copy_window(const uint16_t *tokens, size_t start, int T, int *inputs, int *targets) {
    for (int i = 0; i < T; i++) {
        inputs[i] = tokens[start + i];
        targets[i] = tokens[start + i + 1];
    }
}

static void lm_train_batch(Task *task, Rng *rng, int B, int T, int *inputs, int *targets) {
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
    .destroy = lm_destroy,
};
