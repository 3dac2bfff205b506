/* A run's files under results/<experiment>/<run>/: config.lua (the resolved config),
 * metrics.jsonl (one JSON object per logged step) and summary.json (final numbers and status).
 * summary.json is rewritten atomically; metrics.jsonl only grows, one whole line at a time. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "core/util.h"

/* One metrics row; NAN fields are left out of the JSON. */
typedef struct {
    int step;
    double loss, lr, grad_norm, tokens_per_s, elapsed_s;
    double val_loss, val_bits_per_byte, val_perplexity, val_accuracy;
} MetricsRow;

/* A finished run did or did not learn its task; the others are not judged. */
typedef enum { LEARNED_NOT_JUDGED, LEARNED_YES, LEARNED_NO } Learned;

typedef struct {
    const char *status; /* "running", "finished", "stopped", "interrupted", "failed" */
    const char *reason; /* why it failed or stopped, or NULL */
    const char *experiment, *run, *device, *task;
    const char *gpu; /* the GPUs of a run on the GPU (CUDA_VISIBLE_DEVICES, or the ranks' list), or NULL */
    int data_parallel; /* ranks that trained this session; written when more than one */
    int step, steps;
    double train_loss, val_loss, val_bits_per_byte, val_perplexity, val_accuracy;
    double tokens_per_s, wall_s, tokens_seen;
    double params;
    /* task-specific numbers (e.g. val_perplexity_x4) and the fields a sweep set for this run */
    int n_metrics;
    char metric_names[32][48];
    double metric_values[32];
    int n_overrides;
    const char *override_paths[32], *override_values[32];
    /* the resolved config's fingerprint (core/config/fingerprint.h), or NULL */
    const char *fingerprint;
    /* fields that changed when the run was resumed ("train.steps: 6 -> 8 (at step 6)"), carried
     * from one session to the next: the run is then a fresh run of neither config */
    int n_resume_changes;
    char *const *resume_changes;
    /* whether a finished run learned its task, and why (see train.c) */
    Learned learned;
    const char *learned_reason;
} Summary;

void metrics_row_clear(MetricsRow *r);
/* Opens metrics.jsonl for appending after dropping rows past `keep_through_step` (rows a
 * crashed run logged after its last checkpoint; a resumed run logs them again). */
FILE *metrics_open(const char *path, int keep_through_step, Error *err);
void metrics_append(FILE *f, const MetricsRow *r);
/* The last logged training loss and the last validation numbers in metrics.jsonl (fields not
 * found stay NAN): a run killed between its final checkpoint and its summary is finished from them. */
void metrics_last_values(const char *path, MetricsRow *out);
void summary_write(const char *path, const Summary *s);
/* Reads "status" from an existing summary.json (for messages); caller frees; NULL if none. */
char *summary_read_status(const char *path);
/* Reads "resumed_with_changes" from an existing summary.json: *n strings (caller frees each and
 * the array; NULL and 0 when there are none). */
char **summary_read_resume_changes(const char *path, int *n);
