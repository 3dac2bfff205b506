#include "slurm.h"

#include "sweep_select.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The first executable `name` on the PATH (owned), or NULL. */
static char *find_on_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return NULL;
    char *copy = xstrdup(path), *save = NULL;
    char *found = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *candidate = xasprintf("%s/%s", *dir ? dir : ".", name);
        if (access(candidate, X_OK) == 0) found = candidate;
        else free(candidate);
    }
    free(copy);
    return found;
}

/* s in single quotes for the shell ('\'' for each quote inside). */
static void shell_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    fputc('\'', f);
}

/* The 1-based indices of the runs neither finished nor running now (a task of an earlier
 * submission holds its folder) nor left out by select.tune_seeds (waiting for their setting's
 * tuning runs, or not chosen), as sbatch's --array list ("2,5,7"); their count, and in *waiting
 * the runs that wait. */
static int runs_to_submit(const Sweep *sw, char *list, size_t len, int *waiting) {
    int n = 0;
    size_t used = 0;
    list[0] = '\0';
    RunNeed *need = sweep_run_needs(sw);
    *waiting = 0;
    for (int i = 0; i < sw->n_runs; i++) {
        char *dir = sweep_run_dir(sw, &sw->runs[i]);
        bool running = run_dir_in_use(dir), over = sweep_run_finished(sw, &sw->runs[i]);
        free(dir);
        *waiting += !over && need[i] == RUN_WAITING;
        if (!over && !running && need[i] == RUN_WANTED) {
            if (used < len) used += (size_t)snprintf(list + used, len - used, "%s%d", n ? "," : "", i + 1);
            n++;
        }
    }
    free(need);
    if (used >= len) die("sweep '%s': %d runs to do make an --array list too long for sbatch", sw->experiment, n);
    return n;
}

static bool write_script(FILE *f, const Sweep *sw, const char *array, const char *config, char **sets, int n_sets,
                         const SlurmOptions *opt, const char *attnlab, const char *cwd) {
    fprintf(f, "#!/bin/bash\n# written by attnlab run --slurm: one array task per run of the sweep to do\n");
    fprintf(f, "#SBATCH --job-name=attnlab-%s\n", sw->experiment);
    fprintf(f, "#SBATCH --array=%s\n", array);
    fprintf(f, "#SBATCH --output=%s/logs/slurm-%%A_%%a.out\n", sw->dir);
    /* a data-parallel run: srun starts its ranks, one task per GPU, on whichever nodes Slurm
     * picks, and each reads its place from srun's variables; a failed rank stops the others */
    int ranks = sweep_data_parallel(sw);
    fprintf(f, "#SBATCH --ntasks=%d\n", ranks);
    if (opt->partition) fprintf(f, "#SBATCH --partition=%s\n", opt->partition);
    if (opt->time) fprintf(f, "#SBATCH --time=%s\n", opt->time);
    int gpus = ranks > 1 ? 1 : opt->gpus_per_run;
    if (gpus) fprintf(f, "#SBATCH --gpus-per-task=%d\n", gpus);
    if (opt->cpus_per_run) fprintf(f, "#SBATCH --cpus-per-task=%d\n", opt->cpus_per_run);
    fputs("set -e\ncd ", f);
    shell_quoted(f, cwd);
    fputs(ranks > 1 ? "\nexec srun --kill-on-bad-exit=1 " : "\nexec ", f);
    shell_quoted(f, attnlab);
    fputs(" run ", f);
    shell_quoted(f, config);
    fputs(" --only \"$SLURM_ARRAY_TASK_ID\"", f);
    if (opt->keep_changed) fputs(" --keep-changed", f);
    for (int i = 0; i < n_sets; i++) {
        fputs(" --set ", f);
        shell_quoted(f, sets[i]);
    }
    fputc('\n', f);
    return !ferror(f);
}

int slurm_submit(const Sweep *sw, const char *config_path, char **sets, int n_sets, const SlurmOptions *opt) {
    int ranks = sweep_data_parallel(sw);
    if (ranks > 1 && opt->gpus_per_run && opt->gpus_per_run != ranks)
        die("--gpus-per-run %d: runs of %s train on %d GPUs each (train.data_parallel), one srun task per GPU; leave "
            "--gpus-per-run out", opt->gpus_per_run, sw->source, ranks);
    char *sbatch = find_on_path("sbatch");
    if (!sbatch && !opt->dry_run)
        die("--slurm: sbatch is not on the PATH (is this a Slurm login node?); --dry-run writes the script only");
    char array[8192];
    int waiting, n = runs_to_submit(sw, array, sizeof array, &waiting);
    /* a job array cannot wait for a choice its own tasks make: the other seeds are a later submission */
    if (waiting)
        printf("sweep '%s': %d run%s of other seeds wait for their settings' tuning runs (select.tune_seeds): run "
               "--slurm again when those are done\n", sw->experiment, waiting, waiting == 1 ? "" : "s");
    if (n == 0) {
        printf("sweep '%s': all %d runs finished%s; nothing to submit\n", sw->experiment, sw->n_runs,
               sw->select.n_tune_seeds ? ", running, waiting or not chosen" : " or running");
        free(sbatch);
        return 0;
    }
    char cwd[PATH_MAX], attnlab[PATH_MAX], config[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", attnlab, sizeof attnlab - 1);
    if (!getcwd(cwd, sizeof cwd) || len < 0 || !realpath(config_path, config))
        die("--slurm: cannot resolve the working directory, attnlab's path or '%s': %s", config_path, strerror(errno));
    attnlab[len] = '\0';
    Error err;
    char *slurm_dir = xasprintf("%s/slurm", sw->dir), *logs = xasprintf("%s/logs", sw->dir);
    char *script = xasprintf("%s/array.sbatch", slurm_dir);
    if (!mkdir_p(slurm_dir, &err) || !mkdir_p(logs, &err)) die("%s", err.msg);
    AtomicFile af;
    if (!atomic_open(&af, script, &err)) die("%s", err.msg);
    if (!write_script(af.f, sw, array, config, sets, n_sets, opt, attnlab, cwd)) {
        atomic_abort(&af);
        die("cannot write '%s'", script);
    }
    if (!atomic_commit(&af, &err)) die("%s", err.msg);
    int code = 0;
    if (opt->dry_run) {
        printf("sweep '%s': %d of %d runs to do; wrote %s (not submitted):\n", sw->experiment, n, sw->n_runs, script);
        char *text = read_file(script, NULL, &err);
        if (text) fputs(text, stdout);
        free(text);
    } else {
        printf("sweep '%s': submitting %d of %d runs as a Slurm job array (%s)\n", sw->experiment, n, sw->n_runs, script);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) die("--slurm: cannot start sbatch: %s", strerror(errno));
        if (pid == 0) {
            execl(sbatch, "sbatch", script, (char *)NULL);
            _exit(127);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (code) fprintf(stderr, "attnlab: --slurm: sbatch refused %s (exit %d; its message is above)\n", script, code);
        else printf("follow it with: attnlab run %s --status (logs in %s/)\n", config_path, logs);
    }
    free(script);
    free(logs);
    free(slurm_dir);
    free(sbatch);
    return code;
}
