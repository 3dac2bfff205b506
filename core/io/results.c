/* Writing a run's metrics.jsonl and summary.json with cJSON (see results.h). */
#include "results.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void metrics_row_clear(MetricsRow *r) {
    r->step = 0;
    r->loss = r->lr = r->grad_norm = r->tokens_per_s = r->elapsed_s = NAN;
    r->val_loss = r->val_bits_per_byte = r->val_perplexity = r->val_accuracy = NAN;
}

static void add_number(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
}

/* Like add_number, but a missing value is written as null so every summary has every key. */
static void add_number_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

FILE *metrics_open(const char *path, int keep_through_step, Error *err) {
    if (path_exists(path)) {
        size_t len;
        char *text = read_file(path, &len, err);
        if (!text) return NULL;
        AtomicFile af;
        if (!atomic_open(&af, path, err)) {
            free(text);
            return NULL;
        }
        /* keep whole lines whose step is within the checkpoint; a torn last line is dropped */
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            if (!nl) break;
            *nl = '\0';
            cJSON *o = cJSON_Parse(line);
            cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
            if (cJSON_IsNumber(step) && step->valuedouble <= keep_through_step) fprintf(af.f, "%s\n", line);
            cJSON_Delete(o);
            line = nl + 1;
        }
        free(text);
        if (!atomic_commit(&af, err)) return NULL;
    }
    FILE *f = fopen(path, "a");
    if (!f) error_set(err, "cannot open '%s' for appending: %s", path, strerror(errno));
    return f;
}

void metrics_append(FILE *f, const MetricsRow *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", r->step);
    add_number(o, "loss", r->loss);
    add_number(o, "lr", r->lr);
    add_number(o, "grad_norm", r->grad_norm);
    add_number(o, "tokens_per_s", r->tokens_per_s);
    add_number(o, "elapsed_s", r->elapsed_s);
    add_number(o, "val_loss", r->val_loss);
    add_number(o, "val_bits_per_byte", r->val_bits_per_byte);
    add_number(o, "val_perplexity", r->val_perplexity);
    add_number(o, "val_accuracy", r->val_accuracy);
    char *line = cJSON_PrintUnformatted(o);
    /* one write per line, flushed, so a crash loses at most the row being written */
    fprintf(f, "%s\n", line);
    fflush(f);
    free(line);
    cJSON_Delete(o);
}

static void take_number(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v)) *out = v->valuedouble;
}

void metrics_last_values(const char *path, MetricsRow *out) {
    metrics_row_clear(out);
    size_t len;
    char *text = read_file(path, &len, NULL);
    if (!text) return;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) break;
        *nl = '\0';
        cJSON *o = cJSON_Parse(line);
        if (o) {
            const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
            if (cJSON_IsNumber(step)) out->step = (int)step->valuedouble;
            take_number(o, "loss", &out->loss);
            take_number(o, "val_loss", &out->val_loss);
            take_number(o, "val_bits_per_byte", &out->val_bits_per_byte);
            take_number(o, "val_perplexity", &out->val_perplexity);
            take_number(o, "val_accuracy", &out->val_accuracy);
        }
        cJSON_Delete(o);
        line = nl + 1;
    }
    free(text);
}

void summary_write(const char *path, const Summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", s->status);
    if (s->reason) cJSON_AddStringToObject(o, "reason", s->reason);
    else cJSON_AddNullToObject(o, "reason");
    cJSON_AddStringToObject(o, "experiment", s->experiment);
    cJSON_AddStringToObject(o, "run", s->run);
    cJSON_AddStringToObject(o, "task", s->task);
    cJSON_AddStringToObject(o, "device", s->device);
    if (s->gpu) cJSON_AddStringToObject(o, "gpu", s->gpu);
    if (s->data_parallel > 1) cJSON_AddNumberToObject(o, "data_parallel", s->data_parallel);
    cJSON_AddNumberToObject(o, "step", s->step);
    cJSON_AddNumberToObject(o, "steps", s->steps);
    add_number_or_null(o, "train_loss", s->train_loss);
    add_number_or_null(o, "val_loss", s->val_loss);
    add_number_or_null(o, "val_bits_per_byte", s->val_bits_per_byte);
    add_number_or_null(o, "val_perplexity", s->val_perplexity);
    add_number_or_null(o, "val_accuracy", s->val_accuracy);
    add_number_or_null(o, "tokens_per_s", s->tokens_per_s);
    add_number_or_null(o, "wall_s", s->wall_s);
    add_number_or_null(o, "tokens_seen", s->tokens_seen);
    cJSON_AddNumberToObject(o, "params", s->params);
    if (s->learned == LEARNED_NOT_JUDGED) cJSON_AddNullToObject(o, "learned");
    else cJSON_AddBoolToObject(o, "learned", s->learned == LEARNED_YES);
    if (s->learned != LEARNED_NOT_JUDGED && s->learned_reason) cJSON_AddStringToObject(o, "learned_reason", s->learned_reason);
    if (s->fingerprint) cJSON_AddStringToObject(o, "config_fingerprint", s->fingerprint);
    if (s->n_resume_changes) {
        cJSON *changes = cJSON_AddArrayToObject(o, "resumed_with_changes");
        for (int i = 0; i < s->n_resume_changes; i++) cJSON_AddItemToArray(changes, cJSON_CreateString(s->resume_changes[i]));
    }
    cJSON *metrics = cJSON_AddObjectToObject(o, "metrics");
    for (int i = 0; i < s->n_metrics; i++) add_number_or_null(metrics, s->metric_names[i], s->metric_values[i]);
    cJSON *sweep = cJSON_AddObjectToObject(o, "sweep");
    for (int i = 0; i < s->n_overrides; i++) cJSON_AddStringToObject(sweep, s->override_paths[i], s->override_values[i]);
    char *text = cJSON_Print(o);
    size_t n = strlen(text);
    char *with_newline = xasprintf("%s\n", text);
    write_file_atomic(path, with_newline, n + 1);
    free(with_newline);
    free(text);
    cJSON_Delete(o);
}

char *summary_read_status(const char *path) {
    char *text = read_file(path, NULL, NULL);
    if (!text) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    cJSON *st = o ? cJSON_GetObjectItemCaseSensitive(o, "status") : NULL;
    char *out = cJSON_IsString(st) ? xstrdup(st->valuestring) : NULL;
    cJSON_Delete(o);
    return out;
}

char **summary_read_resume_changes(const char *path, int *n) {
    *n = 0;
    char *text = read_file(path, NULL, NULL);
    if (!text) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    const cJSON *list = o ? cJSON_GetObjectItemCaseSensitive(o, "resumed_with_changes") : NULL, *item;
    char **out = NULL;
    cJSON_ArrayForEach(item, list) {
        if (!cJSON_IsString(item)) continue;
        out = xrealloc(out, sizeof(char *) * (size_t)(*n + 1));
        out[(*n)++] = xstrdup(item->valuestring);
    }
    cJSON_Delete(o);
    return out;
}
