/* mqar: multi-query associative recall (Zoology, Arora et al. 2023), generated as Zoology's
 * zoology/data/multiquery_ar.py does with num_passes = 1.
 *
 * With V = model.vocab_size, T = train.seq_len, P = mqar.num_kv_pairs, a = mqar.power_a:
 * - Keys k_1..k_P are drawn uniformly without replacement from [1, V/2) (V/2 rounded down),
 *   values v_1..v_P uniformly without replacement from [V/2, V); k_i pairs with v_i.
 * - The context, positions 0..2P-1, is k_1 v_1 k_2 v_2 ... k_P v_P.
 * - The other T - 2P positions hold space = (T - 2P) / 2 query slots, at 2P + 2g for g in
 *   [0, space). Gaps g_1..g_P are drawn without replacement from {0, ..., space - 1} with
 *   probability proportional to (g + 1)^(a - 1) (a = 1: uniform; small a: queries soon after the
 *   context), by successive sampling: g_1 from all slots, each next g_i from the slots not yet
 *   taken with their weights renormalized. That is the distribution of numpy's
 *   choice(replace=False, p=...) that Zoology calls (it draws a batch, keeps the first occurrence
 *   of each new slot, zeroes the taken slots' weights and repeats), not its random numbers.
 * - Key k_i sits at position 2P + 2g_i, and the target there is v_i: the model sees the key and
 *   predicts its value as the next token. All other targets are -1, so a sequence has exactly P.
 * - The remaining positions after the context are 0, or with mqar.random_non_queries uniform
 *   tokens in [0, V), which may repeat keys and values (distractors, as in Zoology).
 * Requires T even, 2P + 2P <= T (the context, and room for 2 tokens per query), P distinct keys
 * (V/2 - 1 >= P) and values (V - V/2 >= P), and V > T (Zoology's assertion, see mqar_check).
 *
 * Training draws fresh sequences every step, or with mqar.train_examples = N trains on a fixed set
 * of N (as Zoology does): example j is generated from a stream of its own seeded by (seed, j), and
 * the k-th training sequence of the run is example order_e[k mod N] of epoch e = k / N, where
 * order_e is a permutation seeded by (seed, e). Nothing about the set needs saving in a checkpoint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/task.h"
#include "synthetic.h"

/* Buffers one sequence needs, made once with the task. */
typedef struct {
    unsigned char *used; /* [V]: tokens already drawn as a key or value in this sequence */
    double *weight;      /* [space]: weight of each query slot still free, 0 once taken */
    int *keys, *values;  /* [P] */
} Scratch;

typedef struct {
    Task base;
    int pairs, vocab, seq_len;
    double power_a;
    bool random_non_queries;
    int eval_seed, examples;
    Scratch *scratch; /* a pointer, so that generation from a const task may use it */
    /* the fixed training set (mqar.train_examples > 0) */
    int train_examples, seed;
    int *order;          /* [train_examples]: the current epoch's order */
    uint64_t order_epoch; /* the epoch `order` belongs to; UINT64_MAX before the first */
} MqarTask;

static bool mqar_check(int P, int V, int T, Error *err) {
    if (T % 2)
        return error_set(err, "mqar: train.seq_len must be even (query slots are every other position after the "
                              "context), got %d", T);
    if (4L * P > T)
        return error_set(err, "mqar: mqar.num_kv_pairs = %d key-value pairs need %ld tokens (2 per pair in the "
                              "context, and room for 2 per pair of queries) but train.seq_len is %d", P, 4L * P, T);
    /* The value half [V/2, V) is never smaller than the key half plus one, so the second test can
     * only fail with the first; both stay so the rule reads as it is meant. */
    if (V / 2 - 1 < P || V - V / 2 < P)
        return error_set(err, "mqar: mqar.num_kv_pairs = %d needs %d distinct keys in [1, %d) and values in [%d, %d) "
                              "but model.vocab_size = %d gives only %d keys", P, P, V / 2, V / 2, V, V, V / 2 - 1);
    /* Zoology asserts V > T. With 4P <= T it makes the V/2 - 1 >= T/2 - 1 keys enough for the most
     * pairs any length-T sequence holds (T/4), so a sweep over the pair count at a fixed V and T
     * never runs out of keys, and every config accepted here is one Zoology's generator accepts. */
    if (V <= T)
        return error_set(err, "mqar: model.vocab_size = %d must exceed train.seq_len = %d (as Zoology requires, so "
                              "that the %d keys in [1, V/2) suffice for the T/4 = %d pairs the length allows)",
                         V, T, V / 2 - 1, T / 4);
    return true;
}

static Scratch scratch_new(const MqarTask *t, int T);

static Task *mqar_create(const Config *c, Error *err) {
    if (!mqar_check(c->mqar.num_kv_pairs, c->model.vocab_size, c->train.seq_len, err)) return NULL;
    MqarTask *t = xcalloc(1, sizeof *t);
    t->pairs = c->mqar.num_kv_pairs;
    t->vocab = c->model.vocab_size;
    t->seq_len = c->train.seq_len;
    t->power_a = c->mqar.power_a;
    t->random_non_queries = c->mqar.random_non_queries;
    t->eval_seed = c->eval.seed;
    t->examples = c->eval.examples;
    t->base.byte_tokens = false;
    t->base.eval_every_window = true;
    t->scratch = xmalloc(sizeof(Scratch));
    *t->scratch = scratch_new(t, t->seq_len); /* made once: no allocation while training */
    t->train_examples = c->mqar.train_examples;
    t->seed = c->seed;
    t->order = t->train_examples ? xmalloc(sizeof(int) * (size_t)t->train_examples) : NULL;
    t->order_epoch = UINT64_MAX;
    return &t->base;
}

static Scratch scratch_new(const MqarTask *t, int T) {
    Error err;
    if (!mqar_check(t->pairs, t->vocab, T, &err)) die("%s", err.msg); /* a T other than the one checked at create */
    Scratch s;
    s.used = xcalloc((size_t)t->vocab, 1);
    s.weight = xmalloc(sizeof(double) * (size_t)(T / 2));
    s.keys = xmalloc(sizeof(int) * (size_t)t->pairs);
    s.values = xmalloc(sizeof(int) * (size_t)t->pairs);
    return s;
}

static void scratch_free(Scratch *s) {
    free(s->used);
    free(s->weight);
    free(s->keys);
    free(s->values);
}

/* Uniform over the tokens of [lo, hi) not drawn yet: rejection keeps the draws exactly uniform
 * without an array of the whole range per sequence. */
static int draw_distinct(Rng *rng, unsigned char *used, int lo, int hi) {
    int x;
    do x = lo + (int)rng_below(rng, (uint64_t)(hi - lo));
    while (used[x]);
    used[x] = 1;
    return x;
}

/* One slot from the free ones, with probability weight / (sum of free weights). The walk adds
 * the same nonzero weights in the same order as the total, so it ends on a slot before running
 * out; taking the last free slot otherwise only guards against that reasoning being wrong. */
static int draw_slot(Rng *rng, double *weight, int space) {
    double total = 0;
    for (int g = 0; g < space; g++) total += weight[g];
    double u = rng_uniform(rng) * total, acc = 0;
    int pick = -1;
    for (int g = 0; g < space; g++) {
        if (weight[g] == 0) continue;
        pick = g;
        acc += weight[g];
        if (u < acc) break;
    }
    weight[pick] = 0;
    return pick;
}

static void mqar_generate(const MqarTask *t, Scratch *s, Rng *rng, int T, int *inputs, int *targets) {
    const int P = t->pairs, V = t->vocab, space = (T - 2 * P) / 2;
    for (int i = 0; i < P; i++) s->keys[i] = draw_distinct(rng, s->used, 1, V / 2);
    for (int i = 0; i < P; i++) s->values[i] = draw_distinct(rng, s->used, V / 2, V);
    for (int i = 0; i < P; i++) s->used[s->keys[i]] = s->used[s->values[i]] = 0;

    for (int p = 0; p < T; p++) inputs[p] = 0, targets[p] = -1;
    for (int i = 0; i < P; i++) {
        inputs[2 * i] = s->keys[i];
        inputs[2 * i + 1] = s->values[i];
    }
    for (int g = 0; g < space; g++) s->weight[g] = pow(g + 1.0, t->power_a - 1.0);
    for (int i = 0; i < P; i++) {
        int pos = 2 * P + 2 * draw_slot(rng, s->weight, space);
        inputs[pos] = s->keys[i];
        targets[pos] = s->values[i];
    }
    /* Keys are >= 1, so a 0 after the context marks a position no query took (Zoology's test). */
    if (t->random_non_queries)
        for (int p = 2 * P; p < T; p++)
            if (inputs[p] == 0) inputs[p] = (int)rng_below(rng, (uint64_t)V);
}

/* Sequences are always train.seq_len long: that is the length create checked and sized for. */
static Scratch *scratch_for(const MqarTask *t, int T) {
    if (T != t->seq_len) die("mqar: sequences of %d tokens asked for, the task was made for train.seq_len = %d", T, t->seq_len);
    return t->scratch;
}

/* Epoch e's order of the fixed set: a Fisher-Yates shuffle from the epoch's own stream. */
static void shuffle_for_epoch(MqarTask *t, uint64_t epoch) {
    Rng rng;
    synthetic_epoch_order_rng(&rng, t->seed, epoch);
    for (int i = 0; i < t->train_examples; i++) t->order[i] = i;
    for (int i = t->train_examples - 1; i > 0; i--) {
        int j = (int)rng_below(&rng, (uint64_t)i + 1), x = t->order[i];
        t->order[i] = t->order[j];
        t->order[j] = x;
    }
    t->order_epoch = epoch;
}

static void mqar_train_batch(Task *task, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets) {
    MqarTask *t = (MqarTask *)task;
    Scratch *s = scratch_for(t, T);
    for (int b = 0; b < B; b++) {
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        if (!t->train_examples) {
            mqar_generate(t, s, rng, T, in, tg);
            continue;
        }
        uint64_t k = first + (uint64_t)b, n = (uint64_t)t->train_examples;
        if (k / n != t->order_epoch) shuffle_for_epoch(t, k / n);
        Rng example;
        synthetic_train_example_rng(&example, t->seed, (uint64_t)t->order[k % n]);
        mqar_generate(t, s, &example, T, in, tg);
    }
}

static long mqar_eval_windows(const Task *task, int T) {
    (void)T;
    return ((const MqarTask *)task)->examples;
}

static void mqar_eval_window(const Task *task, long i, int T, int *inputs, int *targets) {
    const MqarTask *t = (const MqarTask *)task;
    Rng rng;
    synthetic_eval_rng(&rng, t->eval_seed, i);
    mqar_generate(t, scratch_for(t, T), &rng, T, inputs, targets);
}

static void mqar_destroy(Task *task) {
    MqarTask *t = (MqarTask *)task;
    scratch_free(t->scratch);
    free(t->scratch);
    free(t->order);
    free(t);
}

/* The answers are the values, drawn from [V/2, V). */
static double mqar_chance_accuracy(const Config *c) {
    int V = c->model.vocab_size;
    return 1.0 / (V - V / 2);
}

const TaskOps task_mqar = {
    .name = "mqar",
    .create = mqar_create,
    .train_batch = mqar_train_batch,
    .eval_windows = mqar_eval_windows,
    .eval_window = mqar_eval_window,
    .destroy = mqar_destroy,
    .chance_accuracy = mqar_chance_accuracy,
};
