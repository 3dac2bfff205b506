/* palindrome: a random token sequence, a separator, then the same sequence reversed.
 *
 * With V = model.vocab_size, T = train.seq_len (even) and L = T / 2, the full sequence s has
 * 2L + 1 tokens: x_1 .. x_L, each uniform in [2, V), then SEP = 1, then x_L .. x_1. Inputs are
 * s[0 .. T-1] (the last token, x_1, is only ever a target); targets[t] = s[t + 1] for t >= L, the
 * reversed half (L targets: the model sees SEP and must then write x_L .. x_1), and -1 before,
 * since the first half is random and cannot be predicted. Token 0 is unused.
 * Requires T even and V >= 3 (SEP and at least one symbol). */
#include <stdlib.h>

#include "core/task.h"
#include "synthetic.h"

enum { SEP = 1, FIRST_SYMBOL = 2 };

typedef struct {
    Task base;
    int vocab;
    int eval_seed, examples;
} PalindromeTask;

static bool palindrome_check(int V, int T, Error *err) {
    if (T % 2)
        return error_set(err, "palindrome: train.seq_len must be even (L = T/2 random symbols, the separator and "
                              "the L reversed, shifted by one into inputs and targets), got %d", T);
    if (V < 3)
        return error_set(err, "palindrome: model.vocab_size = %d is too small: tokens 0 and 1 (the separator) are "
                              "reserved and the symbols are [2, V), so it must be at least 3", V);
    return true;
}

static Task *palindrome_create(const Config *c, Error *err) {
    if (!palindrome_check(c->model.vocab_size, c->train.seq_len, err)) return NULL;
    PalindromeTask *t = xcalloc(1, sizeof *t);
    t->vocab = c->model.vocab_size;
    t->eval_seed = c->eval.seed;
    t->examples = c->eval.examples;
    t->base.byte_tokens = false;
    return &t->base;
}

static void palindrome_generate(const PalindromeTask *t, Rng *rng, int T, int *inputs, int *targets) {
    Error err;
    if (!palindrome_check(t->vocab, T, &err)) die("%s", err.msg); /* a T other than the one checked at create */
    const int L = T / 2;
    /* Write s[0 .. T-1] straight into inputs; s[T] = x_1 = inputs[0] is the last target. */
    for (int i = 0; i < L; i++) inputs[i] = FIRST_SYMBOL + (int)rng_below(rng, (uint64_t)(t->vocab - FIRST_SYMBOL));
    inputs[L] = SEP;
    for (int j = 1; j < L; j++) inputs[L + j] = inputs[L - j];
    for (int p = 0; p < L; p++) targets[p] = -1;
    for (int p = L; p < T - 1; p++) targets[p] = inputs[p + 1];
    targets[T - 1] = inputs[0];
}

static void palindrome_train_batch(Task *task, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets) {
    (void)first; /* drawn fresh from rng */
    const PalindromeTask *t = (const PalindromeTask *)task;
    for (int b = 0; b < B; b++) palindrome_generate(t, rng, T, inputs + (size_t)b * T, targets + (size_t)b * T);
}

static long palindrome_eval_windows(const Task *task, int T) {
    (void)T;
    return ((const PalindromeTask *)task)->examples;
}

static void palindrome_eval_window(const Task *task, long i, int T, int *inputs, int *targets) {
    const PalindromeTask *t = (const PalindromeTask *)task;
    Rng rng;
    synthetic_eval_rng(&rng, t->eval_seed, i);
    palindrome_generate(t, &rng, T, inputs, targets);
}

static void palindrome_destroy(Task *task) { free(task); }

/* The answers are the symbols, [2, V). */
static double palindrome_chance_accuracy(const Config *c) { return 1.0 / (c->model.vocab_size - FIRST_SYMBOL); }

const TaskOps task_palindrome = {
    .name = "palindrome",
    .create = palindrome_create,
    .train_batch = palindrome_train_batch,
    .eval_windows = palindrome_eval_windows,
    .eval_window = palindrome_eval_window,
    .destroy = palindrome_destroy,
    .chance_accuracy = palindrome_chance_accuracy,
};
