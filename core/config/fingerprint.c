/* Config fingerprints and differences (see fingerprint.h). Fields that do not change what a run
 * computes or reports are left out, so that changing them never makes results look stale:
 * - experiment, run, out_dir: names and places;
 * - threads: the CPU backend cuts every product by its shape alone, so numbers are bit-identical
 *   at any thread count (a CLI test checks);
 * - train.eval_every, train.checkpoint_every: evaluations and checkpoints read the model and
 *   change nothing in training; the last step is always evaluated and checkpointed (but with
 *   train.stop_accuracy an evaluation may end the run, so there eval_every counts);
 * - train.data_parallel: the ranks sum the same gradients (only the order of the additions
 *   differs: the same numbers within rounding), so a run may resume on another number of GPUs;
 * - the sections of other tasks (mqar.*, stack.*, efficiency.* when the task is another), of
 *   mixers no layer uses (model.kda.* in a softmax model), and cuda.* on the CPU: never read.
 * train.log_every stays in: summary.json's train_loss is the mean over the last log_every steps.
 * Other fields a run may not read (model.hybrid.* without a ratio, data.* of a synthetic task)
 * stay in too: a difference in them is reported, never missed. */
#include "fingerprint.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mixer.h"
#include "core/task.h"

static const char *const NOT_RESULTS[] = {"experiment", "run", "out_dir", "threads", "train.eval_every",
                                          "train.checkpoint_every", "train.data_parallel"};

bool config_field_affects_results(const Config *c, const Field *f) {
    if (strcmp(f->path, "train.eval_every") == 0 && c->train.stop_accuracy > 0) return true;
    for (size_t i = 0; i < sizeof NOT_RESULTS / sizeof NOT_RESULTS[0]; i++)
        if (strcmp(f->path, NOT_RESULTS[i]) == 0) return false;
    if (f->mixer) return config_uses_mixer(&c->model, mixer_at(f->mixer - 1)->name);
    if (strncmp(f->path, "cuda.", 5) == 0) return strcmp(c->device, "cuda") == 0;
    const char *dot = strchr(f->path, '.');
    char section[64];
    if (dot && (size_t)(dot - f->path) < sizeof section) {
        memcpy(section, f->path, (size_t)(dot - f->path));
        section[dot - f->path] = '\0';
        if (task_lookup(section) && strcmp(section, c->task) != 0) return false;
    }
    return true;
}

/* A field's value as text; lists may be long (model.layers). */
static char *value_text(const Config *c, const Field *f) {
    char buf[8192];
    config_field_text(c, f, buf, sizeof buf);
    return xstrdup(buf);
}

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

void config_fingerprint(const Config *c, char out[FINGERPRINT_HEX]) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < config_field_count(); i++) {
        const Field *f = config_field(i);
        if (!config_field_affects_results(c, f)) continue;
        char *v = value_text(c, f);
        h = fnv1a(fnv1a(fnv1a(fnv1a(h, f->path), "="), v), "\n");
        free(v);
    }
    snprintf(out, FINGERPRINT_HEX, "%016llx", (unsigned long long)h);
}

ConfigChanges config_changes(const Config *before, const Config *after) {
    ConfigChanges ch = {0};
    for (int i = 0; i < config_field_count(); i++) {
        const Field *f = config_field(i);
        char *a = value_text(before, f), *b = value_text(after, f);
        if (strcmp(a, b) == 0) {
            free(a);
            free(b);
            continue;
        }
        ch.items = xrealloc(ch.items, sizeof(ConfigChange) * (size_t)(ch.n + 1));
        ch.items[ch.n++] = (ConfigChange){.field = f, .before = a, .after = b,
                                          .affects_results = config_field_affects_results(before, f) ||
                                                             config_field_affects_results(after, f)};
    }
    return ch;
}

char *config_change_text(const ConfigChange *ch) {
    return xasprintf("%s: %s -> %s", ch->field->path, ch->before[0] ? ch->before : "\"\"", ch->after[0] ? ch->after : "\"\"");
}

void config_changes_free(ConfigChanges *ch) {
    for (int i = 0; i < ch->n; i++) {
        free(ch->items[i].before);
        free(ch->items[i].after);
    }
    free(ch->items);
    memset(ch, 0, sizeof *ch);
}
