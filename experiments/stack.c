/* stack: a sequence of push and pop operations on a stack of symbols; predict the top after each.
 *
 * With V = model.vocab_size, T = train.seq_len and q = stack.push_prob: tokens are 1 = POP,
 * 2 = EMPTY (only ever a target) and the symbols [3, V); token 0 is unused. A sequence is T
 * operations, starting from an empty stack: when the stack is empty the operation is a push,
 * otherwise a push with probability q and a pop with probability 1 - q. A push's input token is
 * its symbol, uniform in [3, V); a pop's is POP. targets[t] is the top of the stack after
 * operation t, or EMPTY when the stack is empty: every position has a target. After a push the
 * target is the input itself; the recall is after a pop, where the answer is the symbol pushed
 * most recently among those still on the stack, however far back. With stack.score = "pops" only
 * the targets after a pop count (the others are -1), which measures that recall alone.
 * Requires V >= 4 (at least one symbol). */
#include <stdlib.h>
#include <string.h>

#include "core/task.h"
#include "synthetic.h"

enum { POP = 1, EMPTY = 2, FIRST_SYMBOL = 3 };

typedef struct {
    Task base;
    int vocab;
    double push_prob;
    int eval_seed, examples, seq_len;
    bool score_pushes;
    int *stack; /* room for train.seq_len symbols, made once with the task */
} StackTask;

static Task *stack_create(const Config *c, Error *err) {
    int V = c->model.vocab_size;
    if (V < 4) {
        error_set(err, "stack: model.vocab_size = %d is too small: tokens 0, 1 (POP) and 2 (EMPTY) are reserved and "
                       "the symbols are [3, V), so it must be at least 4", V);
        return NULL;
    }
    StackTask *t = xcalloc(1, sizeof *t);
    t->vocab = V;
    t->push_prob = c->stack.push_prob;
    t->eval_seed = c->eval.seed;
    t->examples = c->eval.examples;
    t->seq_len = c->train.seq_len;
    t->score_pushes = strcmp(c->stack.score, "all") == 0;
    t->stack = xmalloc(sizeof(int) * (size_t)t->seq_len);
    t->base.byte_tokens = false;
    t->base.eval_every_window = true;
    return &t->base;
}

/* stack: room for T symbols, the most T operations can push. */
static void stack_generate(const StackTask *t, Rng *rng, int *stack, int T, int *inputs, int *targets) {
    int depth = 0;
    for (int p = 0; p < T; p++) {
        if (depth == 0 || rng_uniform(rng) < t->push_prob) {
            int symbol = FIRST_SYMBOL + (int)rng_below(rng, (uint64_t)(t->vocab - FIRST_SYMBOL));
            stack[depth++] = symbol;
            inputs[p] = symbol;
        } else {
            depth--;
            inputs[p] = POP;
        }
        targets[p] = depth ? stack[depth - 1] : EMPTY;
        if (!t->score_pushes && inputs[p] != POP) targets[p] = -1;
    }
}

/* Sequences are always train.seq_len long, the length the stack buffer was made for. */
static int *stack_for(const StackTask *t, int T) {
    if (T > t->seq_len) die("stack: sequences of %d tokens asked for, the task was made for train.seq_len = %d", T, t->seq_len);
    return t->stack;
}

static void stack_train_batch(Task *task, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets) {
    (void)first; /* drawn fresh from rng */
    const StackTask *t = (const StackTask *)task;
    int *stack = stack_for(t, T);
    for (int b = 0; b < B; b++) stack_generate(t, rng, stack, T, inputs + (size_t)b * T, targets + (size_t)b * T);
}

static long stack_eval_windows(const Task *task, int T) {
    (void)T;
    return ((const StackTask *)task)->examples;
}

static void stack_eval_window(const Task *task, long i, int T, int *inputs, int *targets) {
    const StackTask *t = (const StackTask *)task;
    Rng rng;
    synthetic_eval_rng(&rng, t->eval_seed, i);
    stack_generate(t, &rng, stack_for(t, T), T, inputs, targets);
}

static void stack_destroy(Task *task) {
    free(((StackTask *)task)->stack);
    free(task);
}

/* An answer is a symbol of [3, V) or EMPTY: V - 2 of them, whether pops alone are scored or every
 * operation (after a push the answer is the input, which a model can copy: chance is still the
 * uniform guess). */
static double stack_chance_accuracy(const Config *c) { return 1.0 / (c->model.vocab_size - FIRST_SYMBOL + 1); }

const TaskOps task_stack = {
    .name = "stack",
    .create = stack_create,
    .train_batch = stack_train_batch,
    .eval_windows = stack_eval_windows,
    .eval_window = stack_eval_window,
    .destroy = stack_destroy,
    .chance_accuracy = stack_chance_accuracy,
};
