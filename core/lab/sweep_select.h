/* Inside the sweep code (sweep.c, sweep_select.c): a sweep's `select` (the best value of some
 * fields per setting, see sweep_select.c) and the table cells both summaries write. */
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/task.h"
#include "sweep.h"

struct lua_State;

/* Reads the `select` table at stack index idx of the sweep file `path`. */
bool select_parse(SweepSelect *sel, struct lua_State *L, int idx, const char *path, Error *err);
/* Every `over` field is set by the grid or runs and takes two values or more. */
bool select_check_over(const Sweep *sw, Error *err);

/* The metric is checked run by run while each run's task exists (tasks can be large: lm holds
 * its data), then once for all; start from {.lacking = -1}. */
typedef struct {
    char known[64][48]; /* every metric some run reports */
    int n_known;
    int lacking;        /* the first run that does not report the metric, or -1 */
} MetricCheck;
void select_note_run(MetricCheck *mc, const SweepSelect *sel, int run, const Config *c, const Task *t);
bool select_check_metric(const MetricCheck *mc, const Sweep *sw, Error *err);

/* Writes selected.csv and selected.json and the selection's section of summary.md (md); a sweep
 * without a selection removes those files, so no stale one outlives the `select` that made it.
 * sums[i] is run i's summary.json (NULL when it has none); fields are the summary's swept fields. */
void select_write(const Sweep *sw, cJSON *const *sums, const char *const *fields, int n_fields, FILE *md);
void select_free(SweepSelect *sel);

/* Whether a run is to be trained, by select.tune_seeds (sweep_select.c): without them, or without
 * a select, every run is wanted. A run of another seed waits for its setting's tuning runs, then
 * is wanted in the chosen candidate and not chosen in the others. */
typedef enum { RUN_WANTED, RUN_WAITING, RUN_NOT_CHOSEN } RunNeed;
/* need[i] for every run, from the runs' summaries (sums[i] NULL when it has none). */
void select_run_needs(const Sweep *sw, cJSON *const *sums, RunNeed *need);
/* The same, reading every run's summary.json; an array of n_runs the caller frees. */
RunNeed *sweep_run_needs(const Sweep *sw);
/* The state a run without a summary.json shows in the tables and --status: "pending", "waiting"
 * (for its setting's tuning runs) or "not chosen". */
const char *sweep_unstarted_state(RunNeed need);
/* The fields some run sets, in order of first appearance (at most max): the tables' columns. */
int sweep_swept_fields(const Sweep *sw, const char **fields, int max);

/* Table cells: a CSV cell quoted when it must be; a number as CSV ("" when missing) or Markdown
 * ("-" when missing, 4 significant digits). */
void sweep_csv_cell(FILE *f, const char *s);
void sweep_number_text(char *buf, size_t len, double v, bool markdown);
const char *sweep_json_string(const cJSON *o, const char *key);
/* Whether a run's summary.json says it did not learn its task ("learned": false). */
bool sweep_not_learned(const cJSON *summary);
