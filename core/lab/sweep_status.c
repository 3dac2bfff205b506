/* `attnlab run SWEEP --status`: what the results folder says of each run, without running any. A
 * summary that says "running" is believed only while the run's folder lock is held: a run killed
 * mid-step (a node lost, a Slurm time limit) leaves "running" behind and shows as "killed". */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"
#include "sweep_select.h"

enum { N_STATES = 10 };
static const char *const STATES[N_STATES] = {"finished", "running", "killed",  "interrupted", "stopped",
                                             "failed",   "pending", "waiting", "not chosen",  "unreadable"};

static int state_index(const char *state) {
    for (int i = 0; i < N_STATES; i++)
        if (strcmp(STATES[i], state) == 0) return i;
    return N_STATES - 1;
}

/* A run stopped or killed part way says where the sweep resumes it, which holds while its checkpoint
 * is there: results copied back from a lent machine without their checkpoints start over. */
static bool starts_over(const Sweep *sw, const SweepRun *r, const char *state) {
    bool part_way = !strcmp(state, "interrupted") || !strcmp(state, "stopped") || !strcmp(state, "killed");
    if (!part_way) return false;
    char *checkpoint = sweep_run_checkpoint(sw, r);
    bool gone = !path_exists(checkpoint);
    free(checkpoint);
    return gone;
}

int sweep_status(const Sweep *sw) {
    int counts[N_STATES] = {0};
    RunNeed *need = sweep_run_needs(sw);
    printf("sweep '%s': %d run%s in %s/\n", sw->experiment, sw->n_runs, sw->n_runs == 1 ? "" : "s", sw->dir);
    for (int i = 0; i < sw->n_runs; i++) {
        const SweepRun *r = &sw->runs[i];
        char *dir = sweep_run_dir(sw, r), *path = xasprintf("%s/summary.json", dir);
        cJSON *o = sweep_read_summary(sw, r);
        const char *status = o ? sweep_json_string(o, "status") : NULL, *reason = o ? sweep_json_string(o, "reason") : NULL;
        const char *state = status ? status : path_exists(path) ? "unreadable" : sweep_unstarted_state(need[i]);
        if (strcmp(state, "running") == 0 && !run_dir_in_use(dir)) state = "killed";
        const cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        char at[32] = "";
        if (cJSON_IsNumber(step) && strcmp(state, "finished") != 0) snprintf(at, sizeof at, " at step %d", step->valueint);
        if (starts_over(sw, r, state)) {
            /* the reason's cause ("SIGINT at step N"), not its "starting the sweep again resumes it" */
            int cause = reason ? (int)strcspn(reason, ";") : 0;
            printf("%4d  %-11s %s%s (%.*s%sno checkpoint in its folder: starting the sweep again starts it over)\n",
                   i + 1, state, r->name, at, cause, cause ? reason : "", cause ? "; " : "");
        } else {
            printf("%4d  %-11s %s%s%s%s%s\n", i + 1, state, r->name, at, reason && *reason ? " (" : "",
                   reason && *reason ? reason : "", reason && *reason ? ")" : "");
        }
        counts[state_index(state)]++;
        cJSON_Delete(o);
        free(path);
        free(dir);
    }
    free(need);
    printf("total:");
    const char *sep = " ";
    for (int k = 0; k < N_STATES; k++)
        if (counts[k]) {
            printf("%s%d %s", sep, counts[k], STATES[k]);
            sep = ", ";
        }
    printf("\n");
    return 0;
}
