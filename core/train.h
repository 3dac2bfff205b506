/* `attnlab train`: the training loop with logging, evaluation, checkpoints and resume. */
#pragma once
#include <stdbool.h>

#include "core/config/config.h"
#include "core/parallel/rank_env.h"

typedef struct {
    const char *run_dir; /* --out: the run's folder; NULL: <out_dir>/<experiment>/<run> */
    bool resume;         /* continue from the run's checkpoint */
    bool overwrite;      /* replace an existing run */
    int stop_at;         /* stop (checkpointed, status "stopped") after this step; 0: never */
    bool quiet;          /* no progress lines (sweeps print their own) */
    bool in_sweep;       /* run by a sweep: a stopped run resumes when the sweep is started again */
    const RankEnv *ranks; /* a rank of a data-parallel run (world > 1; all but rank 0 are quiet), or NULL */
    /* the fields a sweep set for this run, recorded in summary.json */
    int n_overrides;
    const char *override_paths[32], *override_values[32];
} TrainOptions;

/* Records the fields a sweep set (n of them, at most 32) in opt, for summary.json. */
void train_options_set_overrides(TrainOptions *opt, int n, char *const *paths, char *const *values);

/* Trains as the config says; returns the process exit status (0 finished or stopped, 1 failed,
 * 130 interrupted by a signal). Bad input dies before anything is written. */
int train_run(Config *cfg, const TrainOptions *opt);
