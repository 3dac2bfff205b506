/* The synthetic tasks (mqar, palindrome, stack): each generated sequence checked against the
 * definition, MQAR's gap law, determinism of training batches and of the held-out set, and the
 * messages for parameters a task cannot honour. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config/config.h"
#include "core/io/data.h"
#include "core/task.h"
#include "experiments/needle.h"
#include "test.h"

/* The task of the defaults plus "path=value" assignments, or NULL with the message in err. */
static Task *make_task(Config *c, Error *err, const char *const *sets) {
    config_defaults(c);
    for (; *sets; sets++)
        if (!config_set(c, *sets, err)) return NULL;
    if (!config_check(c, err)) return NULL;
    return task_create(c, err);
}
#define SETTINGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define MAKE(c, err, ...) make_task(c, err, (const char *const[]){__VA_ARGS__, NULL})

typedef struct {
    int B, T;
    int *inputs, *targets;
} Batch;

static Batch batch_new(int B, int T) {
    Batch b = {B, T, xmalloc(sizeof(int) * (size_t)B * T), xmalloc(sizeof(int) * (size_t)B * T)};
    return b;
}

static void batch_free(Batch *b) {
    free(b->inputs);
    free(b->targets);
}

static bool same_ints(const int *a, const int *b, size_t n) { return memcmp(a, b, sizeof(int) * n) == 0; }

/* ---- mqar ---- */

/* Checks one MQAR sequence against the definition; fails the test with the sequence index. */
static void check_mqar_sequence(const int *in, const int *tg, int T, int P, int V, bool random_fill, long seq) {
    for (int p = 0; p < T; p++)
        CHECK(in[p] >= 0 && in[p] < V, "sequence %ld: input %d at position %d is outside [0, %d)", seq, in[p], p, V);
    bool seen[1 << 12] = {false}; /* tokens seen as keys or values; tests keep V below 4096 */
    CHECK(V <= (int)(sizeof seen), "test vocabulary too large");
    for (int i = 0; i < P; i++) {
        int k = in[2 * i], v = in[2 * i + 1];
        CHECK(k >= 1 && k < V / 2, "sequence %ld: key %d of pair %d is outside [1, %d)", seq, k, i, V / 2);
        CHECK(v >= V / 2 && v < V, "sequence %ld: value %d of pair %d is outside [%d, %d)", seq, v, i, V / 2, V);
        CHECK(!seen[k] && !seen[v], "sequence %ld: pair %d repeats a key or value (%d, %d)", seq, i, k, v);
        seen[k] = seen[v] = true;
        CHECK(tg[2 * i] == -1 && tg[2 * i + 1] == -1, "sequence %ld: a target inside the context", seq);
    }
    int n_targets = 0, queried[1 << 12] = {0};
    for (int p = 2 * P; p < T; p++) {
        if (tg[p] < 0) {
            CHECK(tg[p] == -1, "sequence %ld: target %d at %d", seq, tg[p], p);
            if (!random_fill) CHECK(in[p] == 0, "sequence %ld: position %d holds no query but is %d, not 0", seq, p, in[p]);
            continue;
        }
        n_targets++;
        CHECK((p - 2 * P) % 2 == 0, "sequence %ld: a query at odd offset %d after the context", seq, p - 2 * P);
        int pair = -1;
        for (int i = 0; i < P; i++)
            if (in[2 * i] == in[p]) pair = i;
        CHECK(pair >= 0, "sequence %ld: the input %d at query position %d is not a key of the context", seq, in[p], p);
        CHECK(tg[p] == in[2 * pair + 1], "sequence %ld: key %d at %d has target %d, its value is %d", seq, in[p], p, tg[p],
              in[2 * pair + 1]);
        CHECK(++queried[pair] == 1, "sequence %ld: key %d queried twice", seq, in[p]);
    }
    CHECK(n_targets == P, "sequence %ld: %d targets, expected one per pair (%d)", seq, n_targets, P);
}

static void check_mqar_batches(bool random_fill) {
    const int T = 128, P = 16, V = 300;
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=mqar", "train.seq_len=128", "mqar.num_kv_pairs=16", "model.vocab_size=300",
                   random_fill ? "mqar.random_non_queries=true" : "mqar.random_non_queries=false");
    CHECK(t, "%s", err.msg);
    CHECK(!t->byte_tokens, "mqar tokens are not bytes of text");
    Rng rng;
    rng_seed(&rng, 3);
    Batch b = batch_new(25, T);
    long zeros = 0, fill = 0;
    for (int rep = 0; rep < 80; rep++) {
        t->ops->train_batch(t, &rng, 0, b.B, T, b.inputs, b.targets);
        for (int s = 0; s < b.B; s++) {
            const int *in = b.inputs + (size_t)s * T, *tg = b.targets + (size_t)s * T;
            check_mqar_sequence(in, tg, T, P, V, random_fill, (long)rep * b.B + s);
            if (test_failed()) return;
            for (int p = 2 * P; p < T; p++)
                if (tg[p] < 0) fill++, zeros += in[p] == 0;
        }
    }
    /* random filler is uniform over V tokens, so zeros are about 1 in 300, not all of them */
    if (random_fill) CHECK(zeros < fill / 50, "%ld of %ld filler tokens are 0: the filler is not random", zeros, fill);
    batch_free(&b);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_mqar_sequences_follow_the_definition_with_zero_filler) { check_mqar_batches(false); }
TEST(test_task_mqar_sequences_follow_the_definition_with_random_filler) { check_mqar_batches(true); }

TEST(test_task_mqar_smallest_valid_sizes_work) {
    /* T = 4P exactly, and V = T + 1 leaves exactly P keys: every slot and key is forced */
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=mqar", "train.seq_len=4", "mqar.num_kv_pairs=1", "model.vocab_size=5",
                   "mqar.random_non_queries=false");
    CHECK(t, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, 1);
    int in[4], tg[4];
    for (int rep = 0; rep < 50; rep++) {
        t->ops->train_batch(t, &rng, 0, 1, 4, in, tg);
        CHECK(in[0] == 1 && in[1] >= 2 && in[1] <= 4 && in[2] == 1 && in[3] == 0, "got %d %d %d %d", in[0], in[1],
              in[2], in[3]);
        CHECK(tg[0] == -1 && tg[1] == -1 && tg[2] == in[1] && tg[3] == -1, "targets %d %d %d %d", tg[0], tg[1], tg[2],
              tg[3]);
    }
    t->ops->destroy(t);
    config_free(&c);
}

/* The gap of each pair (its slot index after the context), pair by pair, for n sequences. */
static int *mqar_gaps(double power_a, int T, int P, long n) {
    Config c;
    Error err;
    char a[64];
    snprintf(a, sizeof a, "mqar.power_a=%.17g", power_a);
    char tl[64], pl[64];
    snprintf(tl, sizeof tl, "train.seq_len=%d", T);
    snprintf(pl, sizeof pl, "mqar.num_kv_pairs=%d", P);
    Task *t = MAKE(&c, &err, "task=mqar", tl, pl, a, "model.vocab_size=1000");
    if (!t) return NULL;
    int *gaps = xmalloc(sizeof(int) * (size_t)n * P), *in = xmalloc(sizeof(int) * (size_t)T),
        *tg = xmalloc(sizeof(int) * (size_t)T);
    Rng rng;
    rng_seed(&rng, 11);
    for (long s = 0; s < n; s++) {
        t->ops->train_batch(t, &rng, 0, 1, T, in, tg);
        for (int p = 2 * P; p < T; p++)
            if (tg[p] >= 0)
                for (int i = 0; i < P; i++)
                    if (in[2 * i] == in[p]) gaps[s * P + i] = (p - 2 * P) / 2;
    }
    free(in);
    free(tg);
    t->ops->destroy(t);
    config_free(&c);
    return gaps;
}

/* The first pair's gap follows the weights (g+1)^(a-1); the second pair's follows them with the
 * first pair's slot removed and the rest renormalized (sequential sampling without replacement),
 * whose marginal is sum_i p_i w_j / (W - w_i). Each slot's frequency must be within 5 standard
 * errors (plus a little) of the exact probability. */
TEST(test_task_mqar_gaps_follow_the_power_law_drawn_without_replacement) {
    const int T = 96, P = 8, space = (T - 2 * P) / 2;
    const long n = 40000;
    const double a = 0.01;
    int *gaps = mqar_gaps(a, T, P, n);
    CHECK(gaps, "could not make the task");
    double w[64], W = 0, first[64], second[64];
    for (int g = 0; g < space; g++) W += w[g] = pow(g + 1.0, a - 1.0);
    for (int j = 0; j < space; j++) {
        first[j] = w[j] / W;
        second[j] = 0;
        for (int i = 0; i < space; i++)
            if (i != j) second[j] += w[i] / W * w[j] / (W - w[i]);
    }
    long count1[64] = {0}, count2[64] = {0};
    for (long s = 0; s < n; s++) {
        count1[gaps[s * P]]++;
        count2[gaps[s * P + 1]]++;
    }
    for (int j = 0; j < space; j++) {
        double se1 = sqrt(first[j] * (1 - first[j]) / n), se2 = sqrt(second[j] * (1 - second[j]) / n);
        CHECK_NEAR((double)count1[j] / n, first[j], 5 * se1 + 1e-4, "share of the first pair's gap");
        CHECK_NEAR((double)count2[j] / n, second[j], 5 * se2 + 1e-4, "share of the second pair's gap");
    }
    free(gaps);
}

TEST(test_task_mqar_gaps_are_skewed_small_for_small_power_a_and_uniform_for_one) {
    const int T = 128, P = 8, space = (T - 2 * P) / 2;
    const long n = 20000;
    for (int k = 0; k < 2; k++) {
        double a = k == 0 ? 0.01 : 1.0;
        int *gaps = mqar_gaps(a, T, P, n);
        CHECK(gaps, "could not make the task");
        long count[64] = {0}, low = 0;
        for (long s = 0; s < n * P; s++) {
            count[gaps[s]]++;
            low += gaps[s] < space / 4;
        }
        double share_low = (double)low / (n * P);
        if (a < 0.5) {
            /* under the power law the first quarter of the slots takes most queries */
            CHECK(share_low > 0.45, "power_a = 0.01: only %.3f of the gaps fall in the first quarter", share_low);
            CHECK(count[0] > 3 * count[space - 1], "power_a = 0.01: gap 0 (%ld) not far likelier than the last (%ld)",
                  count[0], count[space - 1]);
        } else {
            /* uniform weights make the chosen slots a uniform P-subset: each slot is taken with
             * probability P / space */
            double expect = (double)n * P / space, sd = sqrt(n * ((double)P / space) * (1 - (double)P / space));
            for (int g = 0; g < space; g++)
                CHECK(fabs(count[g] - expect) < 5 * sd, "power_a = 1: slot %d taken %ld times, expected %.0f +- %.0f", g,
                      count[g], expect, sd);
        }
        free(gaps);
    }
}

/* ---- palindrome ---- */

TEST(test_task_palindrome_targets_spell_the_sequence_reversed) {
    const int T = 64, L = T / 2, V = 9;
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=palindrome", "train.seq_len=64", "model.vocab_size=9");
    CHECK(t, "%s", err.msg);
    CHECK(!t->byte_tokens, "palindrome tokens are not bytes of text");
    Rng rng;
    rng_seed(&rng, 5);
    Batch b = batch_new(20, T);
    int lo = V, hi = -1;
    for (int rep = 0; rep < 50; rep++) {
        t->ops->train_batch(t, &rng, 0, b.B, T, b.inputs, b.targets);
        for (int s = 0; s < b.B; s++) {
            const int *in = b.inputs + (size_t)s * T, *tg = b.targets + (size_t)s * T;
            int n_targets = 0;
            for (int p = 0; p < T; p++) {
                CHECK(in[p] >= 0 && in[p] < V, "input %d at %d outside [0, %d)", in[p], p, V);
                n_targets += tg[p] >= 0;
            }
            CHECK(n_targets == L, "%d targets, expected L = %d", n_targets, L);
            for (int i = 0; i < L; i++) {
                CHECK(in[i] >= 2 && in[i] < V, "symbol %d at %d outside [2, %d)", in[i], i, V);
                lo = in[i] < lo ? in[i] : lo;
                hi = in[i] > hi ? in[i] : hi;
                CHECK(tg[i] == -1, "a target %d in the first half, at %d", tg[i], i);
            }
            CHECK(in[L] == 1, "the separator at %d is %d, not 1", L, in[L]);
            /* after the separator, position L + j predicts the j-th symbol from the end */
            for (int j = 0; j < L; j++) {
                CHECK(tg[L + j] == in[L - 1 - j], "target at %d is %d, expected x_%d = %d", L + j, tg[L + j], L - j,
                      in[L - 1 - j]);
                if (j + 1 < L) CHECK(in[L + 1 + j] == in[L - 1 - j], "input at %d is not the reversed sequence", L + 1 + j);
            }
        }
    }
    CHECK(lo == 2 && hi == V - 1, "symbols span [%d, %d], expected [2, %d]", lo, hi, V - 1);
    batch_free(&b);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_palindrome_of_two_tokens) {
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=palindrome", "train.seq_len=2", "model.vocab_size=3");
    CHECK(t, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, 1);
    int in[2], tg[2];
    t->ops->train_batch(t, &rng, 0, 1, 2, in, tg);
    CHECK(in[0] == 2 && in[1] == 1 && tg[0] == -1 && tg[1] == 2, "got inputs %d %d targets %d %d", in[0], in[1], tg[0],
          tg[1]);
    t->ops->destroy(t);
    config_free(&c);
}

/* ---- stack ---- */

TEST(test_task_stack_targets_are_the_top_after_each_operation) {
    const int T = 200, V = 7;
    const double q = 0.3;
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=stack", "train.seq_len=200", "model.vocab_size=7", "stack.push_prob=0.3");
    CHECK(t, "%s", err.msg);
    CHECK(!t->byte_tokens, "stack tokens are not bytes of text");
    Rng rng;
    rng_seed(&rng, 9);
    Batch b = batch_new(20, T);
    int stack[200], lo = V, hi = -1;
    long choices = 0, pushes_when_free = 0, empties = 0;
    for (int rep = 0; rep < 50; rep++) {
        t->ops->train_batch(t, &rng, 0, b.B, T, b.inputs, b.targets);
        for (int s = 0; s < b.B; s++) {
            const int *in = b.inputs + (size_t)s * T, *tg = b.targets + (size_t)s * T;
            int depth = 0;
            for (int p = 0; p < T; p++) {
                if (depth > 0) choices++;
                if (in[p] == 1) {
                    CHECK(depth > 0, "a pop on the empty stack at %d", p);
                    depth--;
                } else {
                    CHECK(in[p] >= 3 && in[p] < V, "input %d at %d is neither POP nor a symbol in [3, %d)", in[p], p, V);
                    lo = in[p] < lo ? in[p] : lo;
                    hi = in[p] > hi ? in[p] : hi;
                    if (depth > 0) pushes_when_free++;
                    stack[depth++] = in[p];
                }
                int top = depth ? stack[depth - 1] : 2;
                empties += top == 2;
                CHECK(tg[p] == top, "target at %d is %d, the top is %d", p, tg[p], top);
            }
        }
    }
    CHECK(lo == 3 && hi == V - 1, "symbols span [%d, %d], expected [3, %d]", lo, hi, V - 1);
    CHECK(empties > 0, "the stack never emptied: EMPTY targets are untested");
    double share = (double)pushes_when_free / choices;
    CHECK_NEAR(share, q, 5 * sqrt(q * (1 - q) / choices), "share of pushes on a non-empty stack");
    batch_free(&b);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_stack_scores_only_pops_when_asked) {
    const int T = 100;
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=stack", "train.seq_len=100", "model.vocab_size=9", "stack.score=pops");
    CHECK(t, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, 10);
    Batch b = batch_new(8, T);
    t->ops->train_batch(t, &rng, 0, b.B, T, b.inputs, b.targets);
    int stack[100];
    long scored = 0;
    for (int s = 0; s < b.B; s++) {
        const int *in = b.inputs + (size_t)s * T, *tg = b.targets + (size_t)s * T;
        int depth = 0;
        for (int p = 0; p < T; p++) {
            if (in[p] == 1) depth--;
            else stack[depth++] = in[p];
            if (in[p] != 1) {
                CHECK(tg[p] == -1, "a push at %d is scored", p);
            } else {
                CHECK(tg[p] == (depth ? stack[depth - 1] : 2), "the pop at %d has target %d", p, tg[p]);
                scored++;
            }
        }
    }
    CHECK(scored > 100, "only %ld pops in the batch", scored);
    CHECK(t->eval_every_window, "the stack's held-out set is not scored whole");
    batch_free(&b);
    t->ops->destroy(t);
    config_free(&c);
}

/* ---- every task with a fixed held-out set: determinism and the held-out set ---- */

/* Each task with settings it accepts and the length its sequences are checked at. */
typedef struct {
    const char *name;
    int T;
    const char *data; /* needle's text */
} TaskCase;
static const TaskCase task_cases[] = {
    {"mqar", 64, NULL},
    {"palindrome", 64, NULL},
    {"stack", 64, NULL},
    {"needle", 400, "data.path=tests/data/tiny.txt"},
};
enum { N_TASK_CASES = sizeof task_cases / sizeof task_cases[0] };

static Task *make_case(Config *c, Error *err, const TaskCase *k, const char *seed, const char *eval_seed,
                       const char *examples) {
    char task[64], len[64];
    snprintf(task, sizeof task, "task=%s", k->name);
    snprintf(len, sizeof len, "train.seq_len=%d", k->T);
    const char *vocab = strcmp(k->name, "needle") == 0 ? "model.vocab_size=256" : "model.vocab_size=100";
    return MAKE(c, err, task, seed, eval_seed, len, vocab, examples, "data.split_block=1024",
                k->data ? k->data : "data.format=auto");
}

static Task *make_named(Config *c, Error *err, const TaskCase *k, const char *seed, const char *eval_seed) {
    return make_case(c, err, k, seed, eval_seed, "eval.examples=37");
}

TEST(test_task_synthetic_batches_depend_only_on_the_rng_state) {
    for (int k = 0; k < N_TASK_CASES; k++) {
        Config c;
        Error err;
        Task *t = make_named(&c, &err, &task_cases[k], "seed=1", "eval.seed=5");
        CHECK(t, "%s: %s", task_cases[k].name, err.msg);
        const int B = 6, T = task_cases[k].T;
        Batch x = batch_new(B, T), y = batch_new(B, T);
        Rng r1, r2;
        rng_seed(&r1, 42);
        r2 = r1;
        t->ops->train_batch(t, &r1, 0, B, T, x.inputs, x.targets);
        /* an evaluation in between must not touch the training stream */
        t->ops->eval_window(t, 3, T, y.inputs, y.targets);
        t->ops->train_batch(t, &r2, 0, B, T, y.inputs, y.targets);
        CHECK(same_ints(x.inputs, y.inputs, (size_t)B * T) && same_ints(x.targets, y.targets, (size_t)B * T),
              "%s: the same rng state gave different batches", task_cases[k].name);
        CHECK(memcmp(&r1, &r2, sizeof r1) == 0, "%s: the rng advanced differently", task_cases[k].name);
        t->ops->train_batch(t, &r1, 0, B, T, y.inputs, y.targets);
        CHECK(!same_ints(x.inputs, y.inputs, (size_t)B * T), "%s: the next batch repeats the first", task_cases[k].name);
        batch_free(&x);
        batch_free(&y);
        t->ops->destroy(t);
        config_free(&c);
    }
}

TEST(test_task_synthetic_eval_set_is_fixed_by_eval_seed_alone) {
    for (int k = 0; k < N_TASK_CASES; k++) {
        const int n = 37, T = task_cases[k].T;
        Config c1, c2, c3;
        Error err;
        Task *t1 = make_named(&c1, &err, &task_cases[k], "seed=1", "eval.seed=5");
        CHECK(t1, "%s: %s", task_cases[k].name, err.msg);
        Task *t2 = make_named(&c2, &err, &task_cases[k], "seed=999", "eval.seed=5");
        CHECK(t2, "%s: %s", task_cases[k].name, err.msg);
        Task *t3 = make_named(&c3, &err, &task_cases[k], "seed=1", "eval.seed=6");
        CHECK(t3, "%s: %s", task_cases[k].name, err.msg);
        CHECK(t1->ops->eval_windows(t1, T) == n, "%s: %ld held-out windows, eval.examples is %d", task_cases[k].name,
              t1->ops->eval_windows(t1, T), n);
        Batch a = batch_new(n, T), b = batch_new(n, T), e = batch_new(n, T);
        for (int i = 0; i < n; i++) t1->ops->eval_window(t1, i, T, a.inputs + (size_t)i * T, a.targets + (size_t)i * T);
        /* backwards, on a task made under another training seed, after training batches */
        Rng rng;
        rng_seed(&rng, 77);
        t2->ops->train_batch(t2, &rng, 0, n, T, b.inputs, b.targets);
        for (int i = n - 1; i >= 0; i--)
            t2->ops->eval_window(t2, i, T, b.inputs + (size_t)i * T, b.targets + (size_t)i * T);
        CHECK(same_ints(a.inputs, b.inputs, (size_t)n * T) && same_ints(a.targets, b.targets, (size_t)n * T),
              "%s: the held-out set changed with the order of calls or the training seed", task_cases[k].name);
        /* and once more on the first task: repeated calls give the same window */
        t1->ops->eval_window(t1, 17, T, b.inputs, b.targets);
        CHECK(same_ints(a.inputs + 17 * T, b.inputs, T) && same_ints(a.targets + 17 * T, b.targets, T),
              "%s: window 17 changed on a second call", task_cases[k].name);
        for (int i = 1; i < n; i++)
            CHECK(!same_ints(a.inputs, a.inputs + (size_t)i * T, T), "%s: window %d repeats window 0", task_cases[k].name, i);
        for (int i = 0; i < n; i++) t3->ops->eval_window(t3, i, T, e.inputs + (size_t)i * T, e.targets + (size_t)i * T);
        CHECK(!same_ints(a.inputs, e.inputs, (size_t)n * T), "%s: another eval.seed gave the same held-out set",
              task_cases[k].name);
        batch_free(&a);
        batch_free(&b);
        batch_free(&e);
        t1->ops->destroy(t1);
        t2->ops->destroy(t2);
        t3->ops->destroy(t3);
        config_free(&c1);
        config_free(&c2);
        config_free(&c3);
    }
}

/* ---- mqar.train_examples: a fixed training set, iterated in epochs ---- */

/* Sequences [first, first + n) of a run's training stream under the given settings, batch by
 * batch of B; the rng passed changes nothing (and is checked not to advance). */
static void fixed_set_stream(const char *const *sets, uint64_t first, int n, int B, Batch *out) {
    Config c;
    Error err;
    Task *t = make_task(&c, &err, sets);
    CHECK(t, "%s", err.msg);
    if (!t) return;
    Rng rng, before;
    rng_seed(&rng, first + 1000); /* a different rng state every call: it must not matter */
    before = rng;
    for (int k = 0; k < n; k += B) {
        int b = n - k < B ? n - k : B;
        t->ops->train_batch(t, &rng, first + (uint64_t)k, b, out->T, out->inputs + (size_t)k * out->T,
                            out->targets + (size_t)k * out->T);
    }
    CHECK(memcmp(&rng, &before, sizeof rng) == 0, "the fixed set drew from the training rng");
    t->ops->destroy(t);
    config_free(&c);
}

/* The index in `set` (n sequences of T) of the sequence equal to seq, or -1. */
static int find_sequence(const Batch *set, int n, const int *seq, const int *tg) {
    for (int i = 0; i < n; i++)
        if (same_ints(set->inputs + (size_t)i * set->T, seq, (size_t)set->T) &&
            same_ints(set->targets + (size_t)i * set->T, tg, (size_t)set->T))
            return i;
    return -1;
}

#define FIXED_SET(seed) "task=mqar", "train.seq_len=32", "mqar.num_kv_pairs=4", "model.vocab_size=64", \
                        "mqar.train_examples=10", seed

TEST(test_task_mqar_fixed_set_repeats_its_examples_in_a_new_order_every_epoch) {
    const int N = 10, E = 3, T = 32;
    Batch all = batch_new(N * E, T);
    /* batches of 4 cross the epoch boundaries (at sequences 10 and 20) */
    fixed_set_stream(SETTINGS(FIXED_SET("seed=3")), 0, N * E, 4, &all);
    if (test_failed()) return;
    int where[3][10];
    for (int e = 0; e < E; e++)
        for (int i = 0; i < N; i++) {
            const int *in = all.inputs + (size_t)(e * N + i) * T, *tg = all.targets + (size_t)(e * N + i) * T;
            check_mqar_sequence(in, tg, T, 4, 64, true, e * N + i);
            if (test_failed()) return;
            where[e][i] = find_sequence(&all, N, in, tg); /* its place in epoch 0 */
            CHECK(where[e][i] >= 0, "epoch %d, sequence %d is not one of epoch 0's", e, i);
        }
    for (int e = 0; e < E; e++) { /* each epoch holds every example once */
        bool seen[10] = {false};
        for (int i = 0; i < N; i++) {
            CHECK(!seen[where[e][i]], "epoch %d repeats example %d", e, where[e][i]);
            seen[where[e][i]] = true;
        }
    }
    CHECK(memcmp(where[0], where[1], sizeof where[0]) != 0 && memcmp(where[1], where[2], sizeof where[1]) != 0,
          "two epochs in the same order");
    /* any stretch of the stream comes out the same when asked for alone (as after a resume) */
    Batch part = batch_new(7, T);
    fixed_set_stream(SETTINGS(FIXED_SET("seed=3")), 13, 7, 3, &part);
    CHECK(same_ints(part.inputs, all.inputs + (size_t)13 * T, (size_t)7 * T) &&
              same_ints(part.targets, all.targets + (size_t)13 * T, (size_t)7 * T),
          "sequences 13..19 differ when drawn without the ones before");
    /* another seed, another set */
    fixed_set_stream(SETTINGS(FIXED_SET("seed=4")), 0, 7, 7, &part);
    for (int i = 0; i < 7; i++)
        CHECK(find_sequence(&all, N, part.inputs + (size_t)i * T, part.targets + (size_t)i * T) < 0,
              "seed 4's sequence %d is one of seed 3's", i);
    /* the held-out set is not drawn from the training set's streams */
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, FIXED_SET("seed=3"), "eval.seed=3", "eval.examples=50");
    CHECK(t, "%s", err.msg);
    for (int i = 0; i < 50; i++) {
        t->ops->eval_window(t, i, T, part.inputs, part.targets);
        CHECK(find_sequence(&all, N, part.inputs, part.targets) < 0, "held-out window %d is a training example", i);
    }
    t->ops->destroy(t);
    config_free(&c);
    batch_free(&part);
    batch_free(&all);
}

TEST(test_task_mqar_epochs_set_the_steps) {
    Config c;
    Error err;
    /* 3 passes over 100 examples in steps of 8 x 2: ceil(300 / 16) = 19 steps */
    Task *t = MAKE(&c, &err, "task=mqar", "train.seq_len=64", "mqar.train_examples=100", "mqar.epochs=3",
                   "train.batch_size=8", "train.grad_accum=2", "train.steps=5");
    CHECK(t, "%s", err.msg);
    CHECK(c.train.steps == 19, "train.steps = %d, expected 19", c.train.steps);
    if (t) t->ops->destroy(t);
    config_free(&c);
    CHECK(!MAKE(&c, &err, "task=mqar", "train.seq_len=64", "mqar.epochs=3"), "mqar.epochs without a fixed set accepted");
    CHECK(strstr(err.msg, "field 'mqar.epochs' = 3 needs a fixed training set: set mqar.train_examples"), "got: %s",
          err.msg);
    config_free(&c);
}

/* ---- parameters a task cannot honour ---- */

/* create fails with one line that starts with the task's name and holds every given fragment. */
static void check_rejected(const char *const *sets, const char *const *fragments) {
    Config c;
    Error err;
    err.msg[0] = '\0';
    Task *t = make_task(&c, &err, sets);
    CHECK(!t, "accepted %s ... %s", sets[0], sets[1]);
    CHECK(!strchr(err.msg, '\n'), "message is not one line: %s", err.msg);
    for (; *fragments; fragments++) CHECK(strstr(err.msg, *fragments), "message lacks '%s': %s", *fragments, err.msg);
    config_free(&c);
}
#define REJECTED(sets, ...) check_rejected((const char *const[]){sets, NULL}, (const char *const[]){__VA_ARGS__, NULL})
#define SETS(...) __VA_ARGS__

TEST(test_task_mqar_rejects_what_it_cannot_generate) {
    REJECTED(SETS("task=mqar", "train.seq_len=127", "model.vocab_size=300"), "mqar: ", "train.seq_len", "even", "127");
    if (test_failed()) return;
    REJECTED(SETS("task=mqar", "train.seq_len=62", "mqar.num_kv_pairs=16", "model.vocab_size=300"), "mqar: ",
             "mqar.num_kv_pairs = 16", "64 tokens", "train.seq_len is 62");
    if (test_failed()) return;
    /* 64 tokens hold 16 pairs, but V = 32 has only 15 keys in [1, 16) */
    REJECTED(SETS("task=mqar", "train.seq_len=64", "mqar.num_kv_pairs=16", "model.vocab_size=32"), "mqar: ",
             "mqar.num_kv_pairs = 16", "model.vocab_size = 32", "only 15 keys");
    if (test_failed()) return;
    REJECTED(SETS("task=mqar", "train.seq_len=64", "mqar.num_kv_pairs=4", "model.vocab_size=64"), "mqar: ",
             "model.vocab_size = 64", "train.seq_len = 64", "Zoology");
    if (test_failed()) return;
    /* the brief's example, word for word */
    Config c;
    Error err;
    CHECK(!MAKE(&c, &err, "task=mqar", "train.seq_len=128", "mqar.num_kv_pairs=40", "model.vocab_size=8192"),
          "40 pairs in 128 tokens accepted");
    CHECK(strcmp(err.msg, "mqar: mqar.num_kv_pairs = 40 key-value pairs need 160 tokens (2 per pair in the context, "
                          "and room for 2 per pair of queries) but train.seq_len is 128") == 0,
          "got: %s", err.msg);
    config_free(&c);
    /* and the boundaries are accepted: 4P = T, V = T + 1 */
    Task *t = MAKE(&c, &err, "task=mqar", "train.seq_len=64", "mqar.num_kv_pairs=16", "model.vocab_size=65");
    CHECK(t, "4P = T and V = T + 1 rejected: %s", err.msg);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_palindrome_rejects_odd_lengths_and_tiny_vocabularies) {
    REJECTED(SETS("task=palindrome", "train.seq_len=63"), "palindrome: ", "train.seq_len", "even", "63");
    if (test_failed()) return;
    REJECTED(SETS("task=palindrome", "model.vocab_size=2"), "palindrome: ", "model.vocab_size = 2", "at least 3");
}

TEST(test_task_stack_rejects_a_vocabulary_without_symbols) {
    REJECTED(SETS("task=stack", "model.vocab_size=3"), "stack: ", "model.vocab_size = 3", "at least 4");
    if (test_failed()) return;
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=stack", "model.vocab_size=4", "train.seq_len=3");
    CHECK(t, "V = 4 (one symbol) and an odd length rejected: %s", err.msg);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_registry_knows_the_synthetic_tasks) {
    for (int k = 0; k < N_TASK_CASES; k++) {
        const TaskOps *ops = task_lookup(task_cases[k].name);
        CHECK(ops && strcmp(ops->name, task_cases[k].name) == 0, "task '%s' is not registered", task_cases[k].name);
    }
}

/* The chance line of the figures: 1 / the number of distinct answers, which a few hundred
 * held-out sequences all show; lm has no answer alphabet and reports 0. */
TEST(test_task_chance_accuracy_is_one_over_the_answers_that_occur) {
    static const char *const needle_values[] = {"needle.value_format=numbers", "needle.value_format=words",
                                                "needle.value_format=uuids"};
    for (int k = 0; k < N_TASK_CASES + 2; k++) { /* needle with each value format */
        const TaskCase *tc = &task_cases[k < N_TASK_CASES ? k : N_TASK_CASES - 1];
        const char *values = strcmp(tc->name, "needle") == 0 ? needle_values[k - (N_TASK_CASES - 1)] : "seed=1";
        Config c;
        Error err;
        Task *t = make_case(&c, &err, tc, values, "eval.seed=5", "eval.examples=400");
        CHECK(t, "%s: %s", tc->name, err.msg);
        const int T = tc->T;
        Batch b = batch_new(1, T);
        bool seen[256] = {false};
        int distinct = 0;
        for (long i = 0; i < t->ops->eval_windows(t, T); i++) {
            t->ops->eval_window(t, i, T, b.inputs, b.targets);
            for (int p = 0; p < T; p++)
                if (b.targets[p] >= 0 && !seen[b.targets[p]]) seen[b.targets[p]] = true, distinct++;
        }
        double chance = task_chance_accuracy(&c);
        CHECK(chance > 0 && distinct == (int)(1 / chance + 0.5), "%s (%s): chance %g, but %d distinct answers occur",
              tc->name, values, chance, distinct);
        batch_free(&b);
        t->ops->destroy(t);
        config_free(&c);
    }
    Config c;
    config_defaults(&c);
    CHECK(strcmp(c.task, "lm") == 0 && task_chance_accuracy(&c) == 0, "lm's chance accuracy is %g, expected 0",
          task_chance_accuracy(&c));
    config_free(&c);
}

/* ---- needle ---- */

#define NEEDLE_TEXT "data.path=tests/data/tiny.txt", "data.split_block=1024", "model.vocab_size=256"

/* The T + 1 bytes a sequence spells: its inputs, then the last target (the answer's last byte). */
static void needle_bytes(const int *in, const int *tg, int T, char *out) {
    for (int p = 0; p < T; p++) out[p] = (char)in[p];
    out[T] = (char)tg[T - 1];
    out[T + 1] = '\0';
}

/* The text from s up to (not including) the first `end`, copied into out (cap bytes); the pointer
 * after `end`, or NULL when it is missing or too long. */
static const char *read_until(const char *s, const char *end, char *out, size_t cap) {
    const char *e = strstr(s, end);
    if (!e || (size_t)(e - s) >= cap) return NULL;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return e + strlen(end);
}

static bool item_has_format(const char *x, const char *format) {
    size_t n = strlen(x);
    if (strcmp(format, "numbers") == 0) {
        if (n != 7 || x[0] == '0') return false;
        for (size_t i = 0; i < n; i++)
            if (x[i] < '0' || x[i] > '9') return false;
        return true;
    }
    if (strcmp(format, "uuids") == 0) {
        if (n != 36) return false;
        for (size_t i = 0; i < n; i++) {
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? x[i] != '-' : !strchr("0123456789abcdef", x[i])) return false;
        }
        return true;
    }
    const char *dash = strchr(x, '-'); /* words: two words of 3 to 10 lowercase letters */
    if (!dash || strchr(dash + 1, '-')) return false;
    size_t a = (size_t)(dash - x), b = n - a - 1;
    for (size_t i = 0; i < n; i++)
        if (i != a && (x[i] < 'a' || x[i] > 'z')) return false;
    return a >= 3 && a <= 10 && b >= 3 && b <= 10;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; }

/* Splits a ", "-joined list into items (at most 64 of 63 bytes); returns their count, -1 when
 * an item is too long. */
static int split_list(const char *list, char items[][64]) {
    int n = 0;
    for (const char *p = list;; n++) {
        const char *comma = strstr(p, ", ");
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len >= 64 || n == 64) return -1;
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        if (!comma) return n + 1;
        p = comma + 2;
    }
}

/* Checks a needle sequence against the definition (needle.c): `keys` needle sentences with
 * distinct keys at word boundaries of a stretch of `split`, the question about `queries` of them
 * (distinct) ending in their values in the order asked, and the targets (the values' bytes alone,
 * or every next byte). */
static void check_needle_sequence(const int *in, const int *tg, int T, int keys, int queries, const char *key_format,
                                  const char *value_format, bool answer_only, const TokenBuffer *split, long seq) {
    char *full = malloc((size_t)T + 2), *text = malloc((size_t)T + 2), *filler = malloc((size_t)T + 2);
    needle_bytes(in, tg, T, full);
    memcpy(text, full, (size_t)T + 2);
    const char *noun = strcmp(value_format, "numbers") == 0 ? "number" : strcmp(value_format, "words") == 0 ? "word" : "uuid";
    const char *many = queries > 1 ? "s" : "", *verb = queries > 1 ? "are" : "is";
    char q_head[64], q_mid[128], q_end[64], n_head[64], key_list[4096], key_list2[4096];
    snprintf(q_head, sizeof q_head, "\nWhat %s the special magic %s%s for ", queries > 1 ? "are all" : "is", noun, many);
    snprintf(q_mid, sizeof q_mid, " mentioned in the provided text? The special magic %s%s for ", noun, many);
    snprintf(q_end, sizeof q_end, " mentioned in the provided text %s: ", verb);
    snprintf(n_head, sizeof n_head, "One of the special magic %ss for ", noun);

    char *question = strstr(text, q_head);
    CHECK(question && !strstr(question + 1, q_head), "sequence %ld: not exactly one question: %s", seq, text);
    const char *r = read_until(question + strlen(q_head), q_mid, key_list, sizeof key_list);
    CHECK(r, "sequence %ld: the question's keys are malformed: %s", seq, question);
    r = read_until(r, q_end, key_list2, sizeof key_list2);
    CHECK(r && strcmp(key_list, key_list2) == 0, "sequence %ld: the question names two lists of keys: %s", seq, question);
    static char asked_keys[64][64], asked_values[64][64];
    int nk = split_list(key_list, asked_keys), nv = split_list(r, asked_values);
    CHECK(nk == queries && nv == queries, "sequence %ld: %d keys and %d values asked, expected %d: %s", seq, nk, nv,
          queries, question);
    for (int i = 0; i < queries; i++) {
        CHECK(item_has_format(asked_keys[i], key_format) && item_has_format(asked_values[i], value_format),
              "sequence %ld: key '%s' or value '%s' is not %s / %s", seq, asked_keys[i], asked_values[i], key_format,
              value_format);
        for (int j = 0; j < i; j++) CHECK(strcmp(asked_keys[i], asked_keys[j]) != 0, "sequence %ld: key asked twice", seq);
    }

    /* the needles, cut out of the text before the question */
    *question = '\0';
    char seen_keys[64][64];
    int found = 0, asked = 0, inside_word = -1; /* a needle after a letter: only at the end of the filler */
    size_t f = 0;
    for (const char *p = text; *p;) {
        if (strncmp(p, n_head, strlen(n_head)) != 0) {
            CHECK(inside_word < 0, "sequence %ld: needle %d starts inside a word", seq, inside_word);
            filler[f++] = *p++;
            continue;
        }
        if (f > 0 && !is_blank(filler[f - 1]) && inside_word < 0) inside_word = found;
        char k[64], v[64];
        const char *next = read_until(p + strlen(n_head), " is: ", k, sizeof k);
        CHECK(next, "sequence %ld: needle %d is malformed", seq, found);
        next = read_until(next, ". ", v, sizeof v);
        CHECK(next && item_has_format(k, key_format) && item_has_format(v, value_format),
              "sequence %ld: needle %d is malformed or its key '%s' / value are not %s / %s", seq, found, k, key_format,
              value_format);
        for (int j = 0; j < found; j++) CHECK(strcmp(seen_keys[j], k) != 0, "sequence %ld: key %s twice", seq, k);
        CHECK(found < 64, "too many needles");
        snprintf(seen_keys[found++], 64, "%s", k);
        for (int i = 0; i < queries; i++)
            if (strcmp(k, asked_keys[i]) == 0) {
                asked++;
                CHECK(strcmp(v, asked_values[i]) == 0, "sequence %ld: the answer for %s is %s, its needle says %s", seq,
                      k, asked_values[i], v);
            }
        p = next;
    }
    CHECK(found == keys && asked == queries, "sequence %ld: %d needles (%d with an asked key), expected %d (%d)", seq,
          found, asked, keys, queries);
    /* what is left is one stretch of the split's text */
    bool stretch = false;
    for (size_t s = 0; s + f <= split->n && !stretch; s++) {
        size_t j = 0;
        while (j < f && split->tokens[s + j] == (uint8_t)filler[j]) j++;
        stretch = j == f;
    }
    CHECK(stretch, "sequence %ld: the %zu bytes around the needles are not one stretch of the split", seq, f);

    /* scored: the values' bytes, not the ", " between them; with all targets, every next byte */
    size_t answer_from = (size_t)T + 1 - strlen(r);
    for (int p = 0; p < T; p++) {
        size_t at = (size_t)p + 1;
        bool value = at >= answer_from && !(full[at] == ',' || (full[at] == ' ' && full[at - 1] == ','));
        int want = !answer_only || value ? (uint8_t)full[at] : -1;
        CHECK(tg[p] == want, "sequence %ld: target %d at %d, expected %d", seq, tg[p], p, want);
    }
    free(full);
    free(text);
    free(filler);
}

TEST(test_task_needle_sequences_follow_the_definition) {
    static const char *const formats[][2] = {{"words", "numbers"}, {"numbers", "words"}, {"uuids", "uuids"}};
    Dataset d;
    Error err;
    CHECK(dataset_load(&d, "tests/data/tiny.txt", DATA_TEXT, 256, 0.1, 1024, &err), "%s", err.msg);
    /* (keys, queries): single key, multi-key, multi-query */
    static const int shapes[][2] = {{1, 1}, {4, 1}, {4, 3}};
    for (int fmt = 0; fmt < 3; fmt++)
        for (int sh = 0; sh < 3; sh++)
            for (int all = 0; all < 2; all++) {
                int keys = shapes[sh][0], queries = shapes[sh][1];
                char kf[64], vf[64], nk[32], nq[32];
                snprintf(kf, sizeof kf, "needle.key_format=%s", formats[fmt][0]);
                snprintf(vf, sizeof vf, "needle.value_format=%s", formats[fmt][1]);
                snprintf(nk, sizeof nk, "needle.keys=%d", keys);
                snprintf(nq, sizeof nq, "needle.queries=%d", queries);
                Config c;
                Task *t = MAKE(&c, &err, "task=needle", NEEDLE_TEXT, "train.seq_len=1024", kf, vf, nk, nq,
                               all ? "needle.train_targets=all" : "needle.train_targets=answer", "eval.examples=6");
                CHECK(t, "%s", err.msg);
                const int T = 1024, B = 6;
                Batch b = batch_new(B, 3 * T);
                Rng rng;
                rng_seed(&rng, 7);
                t->ops->train_batch(t, &rng, 0, B, T, b.inputs, b.targets);
                for (int i = 0; i < B && !test_failed(); i++)
                    check_needle_sequence(b.inputs + (size_t)i * T, b.targets + (size_t)i * T, T, keys, queries,
                                          formats[fmt][0], formats[fmt][1], !all, &d.train, i);
                /* the held-out set at the training length and three times it, answers scored alone */
                for (int len = T; len <= 3 * T && !test_failed(); len += 2 * T) {
                    CHECK(t->ops->eval_windows(t, len) == 6, "%ld held-out sequences of %d", t->ops->eval_windows(t, len), len);
                    for (int i = 0; i < 6 && !test_failed(); i++) {
                        t->ops->eval_window(t, i, len, b.inputs, b.targets);
                        check_needle_sequence(b.inputs, b.targets, len, keys, queries, formats[fmt][0],
                                              formats[fmt][1], true, &d.val, 100 + i);
                    }
                }
                CHECK(t->ops->eval_windows(t, T - 1) == 0 && t->ops->eval_windows(t, (int)d.val.n) == 0,
                      "held-out sequences shorter than train.seq_len or longer than the held-out text");
                batch_free(&b);
                t->ops->destroy(t);
                config_free(&c);
                if (test_failed()) {
                    fprintf(stderr, "  (%s keys, %s values, %d keys, %d queries, train_targets %s)\n",
                            formats[fmt][0], formats[fmt][1], keys, queries, all ? "all" : "answer");
                    dataset_free(&d);
                    return;
                }
            }
    dataset_free(&d);
}

/* Each needle's depth is uniform in the text around it: four quarters of 2,000 single needles
 * each get 25% +- 5%; and the asked needle is uniform among four. */
TEST(test_task_needle_depths_and_the_asked_needle_are_uniform) {
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=needle", NEEDLE_TEXT, "train.seq_len=600", "needle.key_format=numbers");
    CHECK(t, "%s", err.msg);
    const int T = 600, N = 2000;
    Batch b = batch_new(1, T);
    Rng rng;
    rng_seed(&rng, 3);
    int quarter[4] = {0};
    char text[T + 2];
    for (int i = 0; i < N; i++) {
        t->ops->train_batch(t, &rng, 0, 1, T, b.inputs, b.targets);
        needle_bytes(b.inputs, b.targets, T, text);
        const char *needle = strstr(text, "One of the special magic"), *question = strstr(text, "\nWhat is");
        CHECK(needle && question, "sequence %d lacks its needle or question", i);
        /* depth: the needle's offset in the filler, over the filler's length */
        const char *after = strstr(needle, ". ") + 2;
        double filler = (double)((question - text) - (after - needle)), depth = (double)(needle - text) / filler;
        quarter[depth >= 1 ? 3 : (int)(depth * 4)]++;
    }
    for (int q = 0; q < 4; q++)
        CHECK(quarter[q] > N / 5 && quarter[q] < N * 3 / 10, "quarter %d of the depths holds %d of %d needles", q,
              quarter[q], N);
    batch_free(&b);
    t->ops->destroy(t);
    config_free(&c);

    t = MAKE(&c, &err, "task=needle", NEEDLE_TEXT, "train.seq_len=800", "needle.keys=4", "needle.key_format=numbers",
             "eval.examples=400");
    CHECK(t, "%s", err.msg);
    Batch e = batch_new(1, 800);
    char full[802];
    int rank[4] = {0}; /* the asked needle's place among the four, front to back */
    for (int i = 0; i < 400; i++) {
        t->ops->eval_window(t, i, 800, e.inputs, e.targets);
        needle_bytes(e.inputs, e.targets, 800, full);
        char key[16];
        const char *q = strstr(full, "\nWhat is the special magic number for ");
        CHECK(q && sscanf(q, "\nWhat is the special magic number for %15s", key) == 1, "window %d: no question", i);
        int place = 0;
        for (const char *p = strstr(full, "One of the"); p && p < q; p = strstr(p + 1, "One of the"), place++) {
            char k[16];
            CHECK(sscanf(p, "One of the special magic numbers for %15s", k) == 1, "window %d: a bad needle", i);
            if (strcmp(k, key) == 0) rank[place]++;
        }
    }
    for (int k = 0; k < 4; k++) CHECK(rank[k] > 60 && rank[k] < 140, "the asked needle was number %d in %d of 400", k + 1, rank[k]);
    batch_free(&e);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_needle_rejects_what_it_cannot_write) {
    REJECTED(SETS("task=needle", NEEDLE_TEXT, "train.seq_len=319"), "needle: ", "train.seq_len = 319", "at least 320");
    if (test_failed()) return;
    REJECTED(SETS("task=needle", "data.path=tests/data/tiny.txt", "model.vocab_size=100"), "needle: ",
             "model.vocab_size = 100", "127");
    if (test_failed()) return;
    REJECTED(SETS("task=needle", NEEDLE_TEXT, "train.seq_len=1024", "needle.keys=2", "needle.queries=3"), "needle: ",
             "needle.queries = 3", "needle.keys = 2");
    if (test_failed()) return;
    /* the boundary the first message names is accepted */
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=needle", NEEDLE_TEXT, "train.seq_len=320");
    CHECK(t, "train.seq_len = 320 rejected: %s", err.msg);
    t->ops->destroy(t);
    config_free(&c);
    /* a token shard has no text to write needles into */
    const char *shard = "/tmp/attnlab_test_needle.bin";
    static uint16_t tokens[20000];
    for (int i = 0; i < 20000; i++) tokens[i] = (uint16_t)(i % 200);
    CHECK(data_write_shard(shard, tokens, 20000, &err), "%s", err.msg);
    REJECTED(SETS("task=needle", "data.path=/tmp/attnlab_test_needle.bin", "data.split_block=1024", "model.vocab_size=256"), "needle: ",
             "data.path = '/tmp/attnlab_test_needle.bin' is a token shard");
    remove(shard);
    if (test_failed()) return;
    /* words need a text with words; numbers do not */
    const char *digits = "/tmp/attnlab_test_needle.txt";
    FILE *f = fopen(digits, "w");
    CHECK(f, "cannot write %s", digits);
    for (int i = 0; i < 5000; i++) fprintf(f, "%d ", i);
    fclose(f);
    REJECTED(SETS("task=needle", "data.path=/tmp/attnlab_test_needle.txt", "data.split_block=1024", "model.vocab_size=256"), "needle: ",
             "holds 0 distinct words", "needle.key_format");
    t = MAKE(&c, &err, "task=needle", "data.path=/tmp/attnlab_test_needle.txt", "data.split_block=1024", "model.vocab_size=256",
             "needle.key_format=numbers", "train.seq_len=512");
    remove(digits);
    CHECK(t, "numbers as keys rejected on a text without words: %s", err.msg);
    t->ops->destroy(t);
    config_free(&c);
}

TEST(test_task_needle_answer_counts_only_when_every_byte_is_the_argmax) {
    enum { T = 4, V = 5 };
    float logits[T * V] = {0};
    int targets[T] = {-1, 3, 1, 4};
    logits[0 * V + 2] = 9;                    /* unscored: any prediction */
    logits[1 * V + 3] = 1;
    logits[2 * V + 1] = 2;
    logits[3 * V + 4] = 0.5f;
    CHECK(needle_answer_is_argmax(logits, targets, T, V), "a right answer counted wrong");
    logits[3 * V + 0] = 0.75f; /* one byte wrong */
    CHECK(!needle_answer_is_argmax(logits, targets, T, V), "an answer with a wrong last byte counted right");
    logits[3 * V + 0] = 0.5f; /* a tie goes to the lower token: still wrong */
    CHECK(!needle_answer_is_argmax(logits, targets, T, V), "a tie counted right");
}

/* The final metrics: exact answers at 1x, 2x, 4x while the held-out text lasts, then lm's. */
TEST(test_task_needle_names_its_metrics_at_every_length) {
    Config c;
    Error err;
    Task *t = MAKE(&c, &err, "task=needle", NEEDLE_TEXT, "train.seq_len=1024", "eval.max_length_factor=16");
    CHECK(t, "%s", err.msg);
    char names[32][48];
    int n = t->ops->metric_names(t, &c, names, 32);
    /* tiny.txt holds about 5,800 held-out bytes: sequences of 1,024 and 4,096, not 8,192 */
    static const char *const want[] = {"needle_accuracy_x1", "needle_accuracy_x2", "needle_accuracy_x4",
                                       "val_loss_x1", "val_perplexity_x1", "val_bits_per_byte_x1",
                                       "val_loss_x2", "val_perplexity_x2", "val_bits_per_byte_x2",
                                       "val_loss_x4", "val_perplexity_x4", "val_bits_per_byte_x4"};
    CHECK(n == 12, "%d metric names", n);
    for (int i = 0; i < n; i++) CHECK(strcmp(names[i], want[i]) == 0, "metric %d is %s, expected %s", i, names[i], want[i]);
    t->ops->destroy(t);
    config_free(&c);
}
