/* `attnlab run CONFIG`: a Lua file describing many runs (a grid over any fields, an explicit
 * list, or any Lua that builds them), run N at a time, each in its own process; finished runs
 * are skipped, interrupted ones resume; results/<experiment>/summary.csv and summary.md get a
 * row per run, selected.csv a row per setting when the sweep selects. A file without `grid` or
 * `runs` is one run. */
#pragma once
#include <stdbool.h>

#include "core/config/config.h"
#include "core/parallel/gpu_list.h"
#include "core/parallel/rank_env.h"
#include "core/train.h"
#include "core/util.h"

enum { SWEEP_MAX_OVERRIDES = 32 };

typedef struct {
    char *name; /* folder under the experiment */
    Config cfg;
    int n_overrides; /* the fields the sweep set for this run, as text */
    char *paths[SWEEP_MAX_OVERRIDES], *values[SWEEP_MAX_OVERRIDES];
    char *stale; /* a finished run of another config kept by --keep-changed: how it differs; else NULL */
} SweepRun;

/* What a restarted sweep does with a run whose folder holds results or a checkpoint of another
 * config than the run's now: stop before anything runs (the default), run it again from step 0
 * (--rerun-changed), or keep a finished one's results, marked stale (--keep-changed; an
 * unfinished one starts again from step 0: a checkpoint never resumes into another config). */
typedef enum { CHANGED_REFUSE, CHANGED_RERUN, CHANGED_KEEP } ChangedRuns;

/* `select = { metric = ..., goal = "max" | "min", over = { field, ... }, tune_seeds = { ... } }`:
 * within each setting (the runs that agree on every swept field but the `over` fields and seed),
 * the value of the `over` fields whose seeds score best on average. With tune_seeds, only those
 * seeds score, and a run of another seed trains only at its setting's chosen value, once the
 * setting's tuning runs are all done (sweep_select.c). */
typedef struct {
    char *metric; /* NULL: the sweep selects nothing */
    bool maximize;
    int n_over;
    char *over[SWEEP_MAX_OVERRIDES];
    int n_tune_seeds; /* 0: every seed scores and every run trains */
    int tune_seeds[SWEEP_MAX_OVERRIDES];
} SweepSelect;

typedef struct {
    char *source, *experiment, *dir; /* dir: <out_dir>/<experiment> */
    SweepRun *runs;
    int n_runs;
    SweepSelect select;
    ChangedRuns on_changed;
    int only; /* run only run `only` (1-based, as --dry-run numbers them; a Slurm array task); 0: all */
    /* `run --runs LIST`: the runs to train (0-based), in the order they start; NULL: every run,
     * seed by seed (start_order) */
    int *pick;
    int n_pick;
    /* `run --stop-after S`: S seconds after the sweep starts, no run starts and each running one gets
     * the stop a Ctrl-C gives (its step finished, a checkpoint); 0: no limit */
    double stop_after;
    /* GPU placement (runs with device = "cuda"): job slot s runs with CUDA_VISIBLE_DEVICES set to
     * gpus.names[s % gpus.n], so each GPU keeps jobs / gpus.n runs going; gpus.n 0: no placement */
    GpuList gpus;
    /* a rank of a data-parallel run started by srun or torchrun (`run --only N` as a Slurm array
     * task of a data-parallel sweep): the run's process is this rank; NULL: it starts its own */
    const RankEnv *ranks;
} Sweep;

/* Builds every run's config and checks them all (fields, then each task's parameters) before
 * anything runs; overrides from the command line apply to every run. */
bool sweep_load(Sweep *sw, const char *path, char **sets, int n_sets, Error *err);
/* Whether a config file is a sweep (it has base, grid, runs or select), for commands that take
 * either; false with err when the file does not load. */
bool sweep_file_is_sweep(const char *path, bool *is_sweep, Error *err);
/* Runs what is not finished yet, `jobs` at a time; returns the exit status (0: all finished or
 * failed with a recorded reason, 130: interrupted, 124: stopped by stop_after). */
int sweep_run(Sweep *sw, int jobs);
/* What sweep_run does first: runs whose folder holds another config's results stop the sweep with
 * one line, or are cleared or kept as on_changed says (the Slurm path calls it before submitting). */
void sweep_settle_changed_runs(Sweep *sw);
/* Rewrites summary.csv and summary.md from the runs' summary.json files, and with a `select`
 * selected.csv and selected.json. */
void sweep_write_summary(const Sweep *sw);
/* `run SWEEP --status`: each run's state from its folder (finished, running, interrupted, failed,
 * pending, ...) and the totals; returns 0. */
int sweep_status(const Sweep *sw);
/* A run's folder, its checkpoint's path there, and its summary.json, parsed (NULL when missing or
 * unreadable). */
char *sweep_run_dir(const Sweep *sw, const SweepRun *r);
char *sweep_run_checkpoint(const Sweep *sw, const SweepRun *r);
struct cJSON *sweep_read_summary(const Sweep *sw, const SweepRun *r);
/* What in run i's folder was trained with another config than the run's now ("train.lr: 0.001 ->
 * 0.002, ..."; caller frees), or NULL when nothing there would be reused or it is the same. */
char *sweep_run_changes(const Sweep *sw, int i);
/* How a sweep trains run r: resuming what is there, with the fields the sweep set recorded. */
TrainOptions sweep_run_options(const SweepRun *r);
/* Whether a run's summary.json says finished (a run the sweep skips). */
bool sweep_run_finished(const Sweep *sw, const SweepRun *r);
void sweep_free(Sweep *sw);
/* Whether any run of the sweep uses the CUDA backend (GPU placement applies). */
bool sweep_uses_gpus(const Sweep *sw);
/* The most GPUs one of its GPU runs trains on (train.data_parallel), 1 for none. */
int sweep_data_parallel(const Sweep *sw);
