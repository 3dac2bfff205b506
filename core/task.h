/* The task interface: what a model trains and is evaluated on (experiments/<name>.c). A task
 * makes batches of input tokens and targets; a target of -1 carries no loss (tasks that only
 * score answers mask everything else). Evaluation uses a fixed held-out set of windows. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "core/config/config.h"
#include "rng.h"
#include "util.h"

typedef struct Task Task;
struct Model;

typedef struct TaskOps {
    const char *name;
    /* Loads or generates what the task needs; fails with a message naming the field or file. */
    Task *(*create)(const Config *c, Error *err);
    /* B sequences of T inputs and targets, drawn with rng. `first` counts the training sequences
     * the run drew before this batch (step x grad_accum x batch_size + micro-batch x batch_size):
     * a task with a fixed training set (mqar.train_examples) picks its examples by it, so a
     * resumed run continues the same epoch order without saving any state. */
    void (*train_batch)(Task *t, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets);
    /* How many fixed validation windows of T tokens exist, and window i. */
    long (*eval_windows)(const Task *t, int T);
    void (*eval_window)(const Task *t, long i, int T, int *inputs, int *targets);
    /* Optional: named metrics beyond validation loss and accuracy, after the last step (lm's
     * loss at longer evaluation lengths); returns how many it wrote into names/values. */
    int (*final_metrics)(Task *t, struct Model *m, const Config *c, char names[][48], double *values, int max);
    /* With final_metrics: the names it writes, in its order, without a model (a sweep checks the
     * metric it selects by before anything runs). */
    int (*metric_names)(const Task *t, const Config *c, char names[][48], int max);
    /* What a model that learned nothing scores, so that such a run is marked (train.c) and
     * figures draw a chance line: a task scored on answers gives the accuracy of a uniform guess
     * among the answers a scored position can have (1 / their number; from the config alone, as
     * plot has no task); a task scored by loss alone (lm) gives its first plateau, the loss of
     * the best prediction that ignores context. One of the two, or neither (the run is then not
     * judged); task_chance_accuracy reads a missing chance_accuracy as 0. */
    double (*chance_accuracy)(const Config *c);
    double (*plateau_loss)(const Task *t);
    /* Optional: a final metric (of final_metrics) that is the share of answers right in full; a
     * run is judged by it instead (learned from LEARNED_ANSWER_SHARE on), since a model can get
     * an answer's bytes right well above chance and no answer right in full (needle). */
    const char *answer_share_metric;
    void (*destroy)(Task *t);
    /* A task that measures a model instead of training it (efficiency) has these instead of
     * create and the rest: check (before anything runs), measure (the run: it writes the run's
     * folder, with result_file, and returns the exit status). */
    bool (*check)(const Config *c, Error *err);
    int (*measure)(Config *c, int n_overrides, const char **paths, const char **values);
    const char *result_file;
} TaskOps;

struct Task {
    const TaskOps *ops;
    /* Tokens are bytes of UTF-8 text, so a loss in nats per token converts to bits per byte. */
    bool byte_tokens;
    /* Evaluation scores every held-out window (a synthetic task's fixed set), not eval.max_batches. */
    bool eval_every_window;
};

/* experiments/registry.c */
const TaskOps *task_lookup(const char *name);
/* A run scored by TaskOps.answer_share_metric learned from this share on; figures of the runs
 * that learned draw those above it. */
#define LEARNED_ANSWER_SHARE 0.5

/* The chance accuracy of the config's task (TaskOps.chance_accuracy), 0 when it defines none. */
double task_chance_accuracy(const Config *c);
/* Creates the task the config names (field `task`); NULL with err filled on failure. */
Task *task_create(const Config *c, Error *err);
