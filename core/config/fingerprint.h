/* Which fields of a resolved config decide a run's results, a fingerprint of them, and the
 * fields in which two configs differ: results are reused only for the same config (a restarted
 * sweep and `train --resume` compare them). */
#pragma once
#include <stdbool.h>

#include "config.h"

enum { FINGERPRINT_HEX = 17 }; /* 16 hex digits and the terminator */

/* Whether field f can change the results of a run of config c: every field but the names
 * (experiment, run, out_dir), threads, train.eval_every, train.checkpoint_every, the section of
 * a task other than c's, and the section of a mixer no layer of c uses. */
bool config_field_affects_results(const Config *c, const Field *f);
/* FNV-1a 64 over "path=value\n" of every field that affects the results, in the schema's
 * order, as 16 hex digits. */
void config_fingerprint(const Config *c, char out[FINGERPRINT_HEX]);

/* A field whose value differs between two configs. */
typedef struct {
    const Field *field;
    char *before, *after;  /* the values as text */
    bool affects_results;  /* in either config */
} ConfigChange;

typedef struct {
    ConfigChange *items;
    int n;
} ConfigChanges;

/* Every field whose value differs from `before` to `after`, in the schema's order. */
ConfigChanges config_changes(const Config *before, const Config *after);
/* "path: before -> after" (caller frees). */
char *config_change_text(const ConfigChange *ch);
void config_changes_free(ConfigChanges *ch);
