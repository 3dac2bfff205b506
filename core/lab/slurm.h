/* `attnlab run SWEEP --slurm`: the sweep as a Slurm job array, one array task per run to do, each
 * running `attnlab run SWEEP --only N` so that a task keeps every promise of a local sweep (skip
 * if finished, resume from the checkpoint, a one-line reason on failure, the summary tables
 * rewritten under their lock). Slurm does the scheduling; attnlab writes the script and calls
 * sbatch. */
#pragma once
#include <stdbool.h>

#include "sweep.h"

typedef struct {
    const char *partition;    /* #SBATCH --partition; NULL: the cluster's default */
    const char *time;         /* #SBATCH --time (Slurm's formats, e.g. 2:00:00); NULL: the default */
    int gpus_per_run;         /* #SBATCH --gpus-per-task; 0: none asked for */
    int cpus_per_run;         /* #SBATCH --cpus-per-task; 0: the cluster's default */
    bool dry_run;             /* write and print the script, submit nothing */
    bool keep_changed;        /* the tasks keep other configs' finished results, marked stale */
} SlurmOptions;

/* Writes <sweep dir>/slurm/array.sbatch for the runs neither finished nor running (config_path and the --set
 * values as given, made absolute where they are paths) and submits it; returns the exit status.
 * Without sbatch on the PATH it stops with one line before writing anything. */
int slurm_submit(const Sweep *sw, const char *config_path, char **sets, int n_sets, const SlurmOptions *opt);
