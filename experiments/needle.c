/* needle: RULER's needle in a haystack (single and multi-key NIAH) over data.path's text.
 *
 * A sequence of T byte tokens is held-out text (the filler) with needle.keys needle sentences
 * inserted, then a question about one of them and its answer, which ends the sequence:
 *
 *   ...filler... One of the special magic numbers for KEY is: VALUE. ...filler...
 *   What is the special magic number for KEY mentioned in the provided text? The special magic
 *   number for KEY mentioned in the provided text is: VALUE
 *
 * ("numbers"/"number" name the value format: words, uuids likewise). Keys are distinct within a
 * sequence, so the other needles are distractors (RULER's multi-key task). With needle.queries =
 * Q > 1 one question asks for Q of them (RULER's multi-query task):
 *
 *   What are all the special magic numbers for K1, K2, K3 mentioned in the provided text? The
 *   special magic numbers for K1, K2, K3 mentioned in the provided text are: V1, V2, V3
 *
 * Each needle's depth is uniform in the filler, moved forward to the next word boundary; the
 * asked needles are uniform among them, asked in a uniform order. The filler is a contiguous stretch of the split at a uniform offset: training
 * sequences come from the training split, the held-out set (eval.examples sequences, fixed by
 * eval.seed as the synthetic tasks') from the validation split, at whatever length it is asked
 * for. RULER's opening instruction is left out: a model trained from scratch learns the format
 * from the training sequences.
 *
 * Formats: numbers are 7 digits (RULER's), uuids 36 bytes of random hex in UUID layout, words two
 * words of 3 to 10 letters of the training text joined by '-' (RULER draws an adjective and a
 * noun). Training scores every next byte (needle.train_targets = "all": language modelling with
 * retrieval) or the answer's value bytes alone; evaluation scores the value bytes (not the ", "
 * between them), and the final metrics count a sequence right when every one is the argmax (what greedy
 * decoding would write), at train.seq_len and at 2x, 4x, ... up to eval.max_length_factor, beside
 * lm's perplexity of the plain held-out text at the same lengths. */
#include "needle.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "lm.h"
#include "synthetic.h"

enum {
    MAX_KEYS = 64,                   /* needle.keys' bound in the schema */
    WORD_MIN = 3, WORD_MAX = 10,     /* letters of a word drawn for keys and values */
    ITEM_MAX = 2 * WORD_MAX + 1,     /* longest key or value but a UUID: two words and '-' */
    UUID_LEN = 36,
    WORDS_WANTED = 4096,             /* distinct words collected from the training text */
    WORDS_NEEDED = 16,
    MIN_FILLER = 64,                 /* bytes of text a sequence must keep around its needles */
    SENTENCE_MAX = 256,
    LIST_MAX = MAX_KEYS * (UUID_LEN + 2), /* Q items joined by ", " */
    QUESTION_MAX = 256 + 3 * LIST_MAX,
};

typedef enum { FORMAT_WORDS, FORMAT_NUMBERS, FORMAT_UUIDS } ItemFormat;

typedef struct {
    Task base;
    Task *text; /* the lm task over data.path: the filler, and perplexity at every length */
    ItemFormat key_format, value_format;
    int keys, queries, eval_seed, examples, seq_len;
    bool score_all;
    char (*words)[WORD_MAX + 1];
    int n_words;
} NeedleTask;

static ItemFormat format_of(const char *name) {
    return strcmp(name, "words") == 0 ? FORMAT_WORDS : strcmp(name, "uuids") == 0 ? FORMAT_UUIDS : FORMAT_NUMBERS;
}

static const char *format_noun(ItemFormat f) {
    return f == FORMAT_WORDS ? "word" : f == FORMAT_UUIDS ? "uuid" : "number";
}

static int format_max_len(ItemFormat f) { return f == FORMAT_NUMBERS ? 7 : f == FORMAT_UUIDS ? UUID_LEN : ITEM_MAX; }

/* The needle sentence and the closing question with its answer: the two templates, in one place. */
static int needle_sentence(char *out, ItemFormat value_format, const char *key, const char *value) {
    return snprintf(out, SENTENCE_MAX, "One of the special magic %ss for %s is: %s. ", format_noun(value_format), key,
                    value);
}

/* keys and values: one item, or Q joined by ", " (the answer's values in the order asked). */
static int question_and_answer(char *out, ItemFormat value_format, int queries, const char *keys, const char *values) {
    const char *noun = format_noun(value_format);
    if (queries == 1)
        return snprintf(out, QUESTION_MAX,
                        "\nWhat is the special magic %s for %s mentioned in the provided text? The special magic %s for "
                        "%s mentioned in the provided text is: %s",
                        noun, keys, noun, keys, values);
    return snprintf(out, QUESTION_MAX,
                    "\nWhat are all the special magic %ss for %s mentioned in the provided text? The special magic %ss "
                    "for %s mentioned in the provided text are: %s",
                    noun, keys, noun, keys, values);
}

/* items[order[0..q)] joined by ", " into out (room for q items of UUID_LEN and the commas). */
static void join_items(char (*items)[UUID_LEN + 1], const int *order, int q, char *out) {
    out[0] = '\0';
    for (int i = 0; i < q; i++) {
        if (i) strcat(out, ", ");
        strcat(out, items[order[i]]);
    }
}

/* The bytes every sequence spends on needles and the question at most (the longest keys and
 * values of the formats). */
static int longest_needles_and_question(const NeedleTask *t) {
    char items[2][UUID_LEN + 1], keys[LIST_MAX], values[LIST_MAX], *buf = xmalloc(QUESTION_MAX);
    memset(items, 'x', sizeof items);
    items[0][format_max_len(t->key_format)] = items[1][format_max_len(t->value_format)] = '\0';
    int zeros[MAX_KEYS] = {0}, ones[MAX_KEYS];
    for (int i = 0; i < t->queries; i++) ones[i] = 1;
    join_items(items, zeros, t->queries, keys);
    join_items(items, ones, t->queries, values);
    int n = t->keys * needle_sentence(buf, t->value_format, items[0], items[1]) +
            question_and_answer(buf, t->value_format, t->queries, keys, values);
    free(buf);
    return n;
}

/* The first WORDS_WANTED distinct words (WORD_MIN to WORD_MAX letters, lowercased) of the text. */
static void collect_words(NeedleTask *t, const TokenBuffer *text) {
    enum { SLOTS = 2 * WORDS_WANTED };
    int *slot = xmalloc(sizeof(int) * SLOTS);
    for (int i = 0; i < SLOTS; i++) slot[i] = -1;
    t->words = xmalloc(sizeof *t->words * WORDS_WANTED);
    size_t i = 0;
    while (i < text->n && t->n_words < WORDS_WANTED) {
        size_t start = i;
        while (i < text->n && text->tokens[i] < 128 && isalpha(text->tokens[i])) i++;
        size_t len = i - start;
        if (len == 0) i++;
        if (len < WORD_MIN || len > WORD_MAX) continue;
        char *w = t->words[t->n_words];
        uint32_t h = 2166136261u; /* FNV-1a */
        for (size_t j = 0; j < len; j++) {
            w[j] = (char)tolower(text->tokens[start + j]);
            h = (h ^ (uint8_t)w[j]) * 16777619u;
        }
        w[len] = '\0';
        int s = (int)(h % SLOTS);
        while (slot[s] >= 0 && strcmp(t->words[slot[s]], w) != 0) s = (s + 1) % SLOTS;
        if (slot[s] < 0) slot[s] = t->n_words++;
    }
    free(slot);
}

static void needle_destroy(Task *task) {
    NeedleTask *t = (NeedleTask *)task;
    if (t->text) task_lm.destroy(t->text);
    free(t->words);
    free(t);
}

static Task *needle_create(const Config *c, Error *err) {
    NeedleTask *t = xcalloc(1, sizeof *t);
    t->keys = c->needle.keys;
    t->queries = c->needle.queries;
    t->key_format = format_of(c->needle.key_format);
    t->value_format = format_of(c->needle.value_format);
    t->score_all = strcmp(c->needle.train_targets, "all") == 0;
    t->eval_seed = c->eval.seed;
    t->examples = c->eval.examples;
    t->seq_len = c->train.seq_len;
    t->base.byte_tokens = true;
    t->base.eval_every_window = true;
    if (t->queries > t->keys) {
        error_set(err, "needle: needle.queries = %d asks for more needles than needle.keys = %d hides", t->queries,
                  t->keys);
        needle_destroy(&t->base);
        return NULL;
    }
    if (c->model.vocab_size < 128) {
        error_set(err, "needle: model.vocab_size = %d is too small: the needles and questions are ASCII text, byte "
                       "tokens up to 127", c->model.vocab_size);
        needle_destroy(&t->base);
        return NULL;
    }
    t->text = task_lm.create(c, err);
    if (!t->text) {
        needle_destroy(&t->base);
        return NULL;
    }
    t->text->ops = &task_lm;
    const Dataset *d = lm_task_data(t->text);
    if (!d->is_text) {
        error_set(err, "needle: data.path = '%s' is a token shard; the task writes its needles and questions as "
                       "bytes of text (give a UTF-8 text file, data.format = text)", c->data.path);
        needle_destroy(&t->base);
        return NULL;
    }
    if (t->key_format == FORMAT_WORDS || t->value_format == FORMAT_WORDS) {
        collect_words(t, &d->train);
        if (t->n_words < WORDS_NEEDED) {
            error_set(err, "needle: the training text of '%s' holds %d distinct words of %d to %d letters; words as "
                           "keys or values need at least %d (set needle.key_format and needle.value_format to numbers "
                           "or uuids)", c->data.path, t->n_words, WORD_MIN, WORD_MAX, WORDS_NEEDED);
            needle_destroy(&t->base);
            return NULL;
        }
    }
    int fixed = longest_needles_and_question(t);
    if (t->seq_len + 1 < fixed + MIN_FILLER) {
        error_set(err, "needle: train.seq_len = %d is too short for %d needle(s) and the question (up to %d bytes) "
                       "with at least %d bytes of text around them: it must be at least %d",
                  t->seq_len, t->keys, fixed, MIN_FILLER, fixed + MIN_FILLER - 1);
        needle_destroy(&t->base);
        return NULL;
    }
    return &t->base;
}

static void draw_item(const NeedleTask *t, ItemFormat f, Rng *rng, char *out) {
    static const char hex[] = "0123456789abcdef";
    switch (f) {
    case FORMAT_NUMBERS:
        snprintf(out, UUID_LEN + 1, "%d", 1000000 + (int)rng_below(rng, 9000000));
        break;
    case FORMAT_UUIDS:
        for (int i = 0; i < UUID_LEN; i++) out[i] = (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : hex[rng_below(rng, 16)];
        out[UUID_LEN] = '\0';
        break;
    case FORMAT_WORDS:
        snprintf(out, UUID_LEN + 1, "%s-%s", t->words[rng_below(rng, (uint64_t)t->n_words)],
                 t->words[rng_below(rng, (uint64_t)t->n_words)]);
        break;
    }
}

/* Draws items[0..n) of format f, distinct from each other. */
static void draw_distinct(const NeedleTask *t, ItemFormat f, Rng *rng, char (*items)[UUID_LEN + 1], int n) {
    for (int i = 0; i < n; i++) {
        bool repeated;
        do {
            draw_item(t, f, rng, items[i]);
            repeated = false;
            for (int j = 0; j < i && !repeated; j++) repeated = strcmp(items[i], items[j]) == 0;
        } while (repeated);
    }
}

static bool is_space(uint16_t token) { return token == ' ' || token == '\n' || token == '\t' || token == '\r'; }

/* One sequence of T inputs and targets from the text of split; answer_only scores the answer's
 * bytes alone. */
static void needle_generate(const NeedleTask *t, Rng *rng, const TokenBuffer *split, int T, bool answer_only,
                            int *inputs, int *targets) {
    char keys[MAX_KEYS][UUID_LEN + 1], values[MAX_KEYS][UUID_LEN + 1], key_list[LIST_MAX], value_list[LIST_MAX];
    char sentences[MAX_KEYS][SENTENCE_MAX], *question = xmalloc(QUESTION_MAX);
    int lens[MAX_KEYS], n = t->keys, q = t->queries, needles_len = 0;
    draw_distinct(t, t->key_format, rng, keys, n);
    draw_distinct(t, t->value_format, rng, values, n);
    for (int i = 0; i < n; i++) needles_len += lens[i] = needle_sentence(sentences[i], t->value_format, keys[i], values[i]);
    int asked[MAX_KEYS]; /* the first q of a uniform permutation: which needles, in which order */
    for (int i = 0; i < n; i++) asked[i] = i;
    for (int i = 0; i < q; i++) {
        int j = i + (int)rng_below(rng, (uint64_t)(n - i)), tmp = asked[i];
        asked[i] = asked[j];
        asked[j] = tmp;
    }
    join_items(keys, asked, q, key_list);
    join_items(values, asked, q, value_list);
    int question_len = question_and_answer(question, t->value_format, q, key_list, value_list);
    size_t filler = (size_t)T + 1 - (size_t)needles_len - (size_t)question_len; /* >= MIN_FILLER: checked at create */
    const uint16_t *text = split->tokens + rng_below(rng, split->n - filler + 1);

    /* depths, moved to the next word boundary, in order (insertion sort: n <= 64) */
    size_t depth[MAX_KEYS];
    int order[MAX_KEYS];
    for (int i = 0; i < n; i++) {
        size_t d = (size_t)rng_below(rng, filler + 1);
        while (d > 0 && d < filler && !is_space(text[d - 1])) d++;
        int j = i;
        for (; j > 0 && depth[j - 1] > d; j--) {
            depth[j] = depth[j - 1];
            order[j] = order[j - 1];
        }
        depth[j] = d;
        order[j] = i;
    }

    int *seq = xmalloc(sizeof(int) * ((size_t)T + 1)), p = 0, next = 0;
    for (size_t f = 0; f <= filler; f++) {
        for (; next < n && depth[next] == f; next++)
            for (int b = 0; b < lens[order[next]]; b++) seq[p++] = (uint8_t)sentences[order[next]][b];
        if (f < filler) seq[p++] = text[f];
    }
    for (int b = 0; b < question_len; b++) seq[p++] = (uint8_t)question[b];
    /* the answer's values end the sequence; the ", " between them are not scored */
    bool *value_byte = xcalloc((size_t)T + 1, sizeof(bool));
    for (int i = q - 1, end = T + 1; i >= 0; i--) {
        int len = (int)strlen(values[asked[i]]);
        for (int b = end - len; b < end; b++) value_byte[b] = true;
        end -= len + 2;
    }
    for (int i = 0; i < T; i++) {
        inputs[i] = seq[i];
        targets[i] = answer_only && !value_byte[i + 1] ? -1 : seq[i + 1];
    }
    free(value_byte);
    free(question);
    free(seq);
}

static void needle_train_batch(Task *task, Rng *rng, uint64_t first, int B, int T, int *inputs, int *targets) {
    (void)first; /* drawn fresh from rng */
    const NeedleTask *t = (const NeedleTask *)task;
    for (int b = 0; b < B; b++)
        needle_generate(t, rng, &lm_task_data(t->text)->train, T, !t->score_all, inputs + (size_t)b * T,
                        targets + (size_t)b * T);
}

/* Any length at least train.seq_len that the held-out text covers. */
static long needle_eval_windows(const Task *task, int T) {
    const NeedleTask *t = (const NeedleTask *)task;
    return T >= t->seq_len && lm_task_data(t->text)->val.n > (size_t)T ? t->examples : 0;
}

static void needle_eval_window(const Task *task, long i, int T, int *inputs, int *targets) {
    const NeedleTask *t = (const NeedleTask *)task;
    if (needle_eval_windows(task, T) == 0)
        die("needle: no held-out sequence of %d tokens (train.seq_len = %d, %zu held-out bytes)", T, t->seq_len,
            lm_task_data(t->text)->val.n);
    Rng rng;
    synthetic_eval_rng(&rng, t->eval_seed, i);
    needle_generate(t, &rng, &lm_task_data(t->text)->val, T, true, inputs, targets);
}

bool needle_answer_is_argmax(const float *logits, const int *targets, int T, int V) {
    for (int p = 0; p < T; p++) {
        if (targets[p] < 0) continue;
        const float *row = logits + (size_t)p * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        if (best != targets[p]) return false;
    }
    return true;
}

/* The share of the held-out sequences of T tokens whose whole answer is the argmax, in batches of
 * B; the model is reshaped and put back. */
static double needle_exact_accuracy(const NeedleTask *t, Model *m, int B, int T) {
    long n = needle_eval_windows(&t->base, T);
    if (B > n) B = (int)n;
    int V = m->cfg.vocab_size;
    ModelShape before = model_shape(m);
    int *inputs = xmalloc(sizeof(int) * (size_t)B * T), *targets = xmalloc(sizeof(int) * (size_t)B * T);
    float *logits = xmalloc(sizeof(float) * (size_t)B * T * V);
    long right = 0;
    for (long first = 0; first < n; first += B) {
        int nb = n - first < B ? (int)(n - first) : B;
        if (nb != m->B || T != m->T) model_reshape_forward(m, nb, T);
        for (int b = 0; b < nb; b++) needle_eval_window(&t->base, first + b, T, inputs + (size_t)b * T, targets + (size_t)b * T);
        model_logits(m, inputs, logits);
        for (int b = 0; b < nb; b++)
            right += needle_answer_is_argmax(logits + (size_t)b * T * V, targets + (size_t)b * T, T, V);
    }
    free(inputs);
    free(targets);
    free(logits);
    model_restore_shape(m, before);
    return (double)right / (double)n;
}

/* needle_accuracy_x1, _x2, ... while the held-out text holds a sequence of that length, then
 * lm's val_loss_xF, val_perplexity_xF and val_bits_per_byte_xF of the plain held-out text. */
static int needle_metric_names(const Task *task, const Config *c, char names[][48], int max) {
    const NeedleTask *t = (const NeedleTask *)task;
    int n = 0;
    for (int f = 1; f <= c->eval.max_length_factor && n < max; f *= 2) {
        if (needle_eval_windows(task, f * t->seq_len) < 1) break;
        snprintf(names[n++], 48, "needle_accuracy_x%d", f);
    }
    return n + task_lm.metric_names(t->text, c, names + n, max - n);
}

/* ... with batches shrunk to keep the tokens per batch, as lm's. */
static int needle_final_metrics(Task *task, Model *m, const Config *c, char names[][48], double *values, int max) {
    NeedleTask *t = (NeedleTask *)task;
    int B = c->eval.batch_size ? c->eval.batch_size : c->train.batch_size, n = 0;
    for (int f = 1; f <= c->eval.max_length_factor && n < max; f *= 2) {
        if (needle_eval_windows(task, f * t->seq_len) < 1) break;
        snprintf(names[n], 48, "needle_accuracy_x%d", f);
        values[n++] = needle_exact_accuracy(t, m, B / f > 0 ? B / f : 1, f * t->seq_len);
    }
    return n + task_lm.final_metrics(t->text, m, c, names + n, values + n, max - n);
}

/* The bytes an answer's position can hold: 10 digits; 26 letters and '-'; 16 hex digits and '-'. */
static double needle_chance_accuracy(const Config *c) {
    ItemFormat f = format_of(c->needle.value_format);
    return f == FORMAT_NUMBERS ? 1.0 / 10 : f == FORMAT_UUIDS ? 1.0 / 17 : 1.0 / 27;
}

const TaskOps task_needle = {
    .name = "needle",
    .create = needle_create,
    .train_batch = needle_train_batch,
    .eval_windows = needle_eval_windows,
    .eval_window = needle_eval_window,
    .final_metrics = needle_final_metrics,
    .metric_names = needle_metric_names,
    .chance_accuracy = needle_chance_accuracy,
    .answer_share_metric = "needle_accuracy_x1",
    .destroy = needle_destroy,
};
