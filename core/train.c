/* The training loop: batches -> forward -> loss -> backward -> clip -> AdamW -> log, with
 * periodic evaluation and checkpoints, resume from the last checkpoint, and a clean stop on
 * SIGINT/SIGTERM (finish the step, checkpoint, exit). */
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/backend_select.h"
#include "core/config/fingerprint.h"
#include "core/io/checkpoint.h"
#include "core/io/results.h"
#include "core/learned.h"
#include "core/parallel/data_parallel.h"
#include "evaluate.h"
#include "model.h"
#include "optimizer.h"
#include "progress.h"
#include "task.h"
#include "util.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The paths of a run's files. */
typedef struct {
    char *dir, *config, *metrics, *summary, *checkpoint;
} RunPaths;

static RunPaths run_paths(const Config *cfg, const TrainOptions *opt) {
    RunPaths p;
    p.dir = opt->run_dir ? xstrdup(opt->run_dir) : xasprintf("%s/%s/%s", cfg->out_dir, cfg->experiment, cfg->run);
    p.config = xasprintf("%s/config.lua", p.dir);
    p.metrics = xasprintf("%s/metrics.jsonl", p.dir);
    p.summary = xasprintf("%s/summary.json", p.dir);
    p.checkpoint = xasprintf("%s/checkpoint.safetensors", p.dir);
    return p;
}

static void run_paths_free(RunPaths *p) {
    free(p->dir);
    free(p->config);
    free(p->metrics);
    free(p->summary);
    free(p->checkpoint);
}

static long count_targets(const int *targets, long n) {
    long c = 0;
    for (long i = 0; i < n; i++) c += targets[i] >= 0;
    return c;
}

static void print_final(const Summary *s, const RunPaths *p, bool byte_tokens) {
    char took[32], tps[32];
    format_duration(took, sizeof took, s->wall_s);
    format_count(tps, sizeof tps, s->tokens_per_s);
    end_status_line();
    printf("%s: %d/%d steps in %s | train loss %.4f", s->status, s->step, s->steps, took, s->train_loss);
    if (isfinite(s->val_loss)) {
        printf(" | val loss %.4f", s->val_loss);
        if (byte_tokens) printf(" (%.3f bits/byte, perplexity %.2f)", s->val_bits_per_byte, s->val_perplexity);
        else printf(" (perplexity %.2f, accuracy %.3f)", s->val_perplexity, s->val_accuracy);
    }
    printf(" | %s tok/s\n", tps);
    if (s->reason) printf("reason: %s\n", s->reason);
    if (s->learned == LEARNED_NO) printf("not learned: %s\n", s->learned_reason);
    printf("results: %s/ (summary.json, metrics.jsonl, config.lua, checkpoint.safetensors)\n", p->dir);
    fflush(stdout);
}

/* the layer a parameter belongs to, from its name ("layers.3.mixer.q_proj.weight" -> 3), or -1 */
static int layer_of(const char *name) {
    int l;
    return sscanf(name, "layers.%d.", &l) == 1 ? l : -1;
}

/* "layer L: NAME" (or "NAME" outside the layers) of the first parameter whose gradient is not finite */
static void describe_nonfinite_gradient(const Model *m, char *out, size_t len) {
    const ParamSet *ps = &m->params;
    for (int i = 0; i < ps->n; i++) {
        const ParamInfo *p = &ps->info[i];
        if (isfinite(m->be->sum_squares(ps->g + p->offset, p->count))) continue;
        int l = layer_of(p->name);
        if (l >= 0) snprintf(out, len, "layer %d: %s", l, p->name);
        else snprintf(out, len, "%s", p->name);
        return;
    }
    snprintf(out, len, "the gradient norm overflowed"); /* every gradient finite, their squares' sum not */
}

/* fault injection: a NaN in the first gradient of layer l */
static void poison_layer_gradient(Model *m, int l) {
    ParamSet *ps = &m->params;
    for (int i = 0; i < ps->n; i++)
        if (layer_of(ps->info[i].name) == l) {
            float nan = NAN;
            m->be->upload(ps->g + ps->info[i].offset, &nan, sizeof nan);
            return;
        }
    die("field 'debug.nan_layer': the model has no layer %d", l);
}

/* One training session: what train_run sets up, the loop advances and the summary reports. */
typedef struct {
    double loss, s, tokens; /* summed over the steps since the last logged one */
    int steps;
} LogWindow;

typedef struct {
    Config *cfg;
    const TrainOptions *opt;
    const TrainConfig *tc;
    const Backend *be;
    Task *task;
    Model *m;
    DataParallel *dp; /* NULL: one process */
    int rank, world;  /* this process's rank (0 owns the run's files) and the ranks in all */
    int B, T, eval_B; /* B: this rank's share of a micro-batch (batch_size / world) */
    RunPaths paths;
    char *config_text;
    char fingerprint[FINGERPRINT_HEX];
    char **resume_changes; /* the run's fields changed on resume, this session's included */
    int n_resume_changes;
    char learned_reason[LEARNED_REASON_LEN];
    CheckpointState st;
    bool resumed;
    FILE *metrics;
    Summary sum;
    int *inputs, *targets;
    int first_step, saved_step; /* saved_step: the step of the checkpoint on disk */
    double session_t0, wall_before, session_train_s, session_tokens;
    LogWindow window;
    char reason[768];
    const char *status;
    int stop_sig; /* the signal that stops the run (any rank's), 0 none */
} TrainRun;

/* The backend, task, model, paths and resolved config of a run; nothing is written yet. */
static void run_create(TrainRun *r, Config *cfg, const TrainOptions *opt) {
    Error err;
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->opt = opt;
    r->tc = &cfg->train;
    r->be = backend_for_config(cfg);
    backend_set_threads(cfg->threads);
    r->world = 1;
    if (opt->ranks && opt->ranks->world > 1) {
        r->dp = data_parallel_join(opt->ranks);
        r->rank = dp_rank(r->dp);
        r->world = dp_world(r->dp);
        cfg->train.data_parallel = r->world; /* the resolved config says how it ran */
    }
    if (r->tc->batch_size % r->world)
        die("train.batch_size = %d is not divisible by the %d data-parallel ranks", r->tc->batch_size, r->world);
    r->task = task_create(cfg, &err);
    if (!r->task) die("%s", err.msg);
    r->B = r->tc->batch_size / r->world;
    r->T = r->tc->seq_len;
    r->eval_B = cfg->eval.batch_size ? cfg->eval.batch_size : r->tc->batch_size; /* all ranks' windows */
    r->m = model_create(&cfg->model, r->be);
    model_reshape(r->m, r->B, r->T);
    progress_init();
    r->paths = run_paths(cfg, opt);
    char *header = xasprintf("resolved config of run '%s/%s' (from %s)", cfg->experiment, cfg->run, cfg->source_path);
    r->config_text = config_to_lua(cfg, header);
    free(header);
    config_fingerprint(cfg, r->fingerprint);
    r->status = "finished";
}

/* What may change on `train --resume`: the fields that do not change results (threads, the
 * evaluation and checkpoint cadence, names) freely; these, which do, with a note and a record in
 * summary.json (resumed_with_changes), since the run is then a fresh run of neither config:
 * train.steps (to continue a run; the learning-rate schedule from then on follows the new count)
 * and train.log_every (train_loss is the mean over the last log_every steps). Nothing else. */
static const char *const RESUMABLE_CHANGES[] = {"train.steps", "train.log_every"};

static bool resumable_change(const ConfigChange *ch) {
    for (size_t i = 0; i < sizeof RESUMABLE_CHANGES / sizeof RESUMABLE_CHANGES[0]; i++)
        if (strcmp(ch->field->path, RESUMABLE_CHANGES[i]) == 0) return true;
    return false;
}

/* "a: 1 -> 2, b: 3 -> 4" of the changes that `pick` picks, the first `max` and "and N more" */
static char *changes_list(const ConfigChanges *ch, bool (*pick)(const ConfigChange *), int max) {
    char **items = xcalloc((size_t)ch->n + 1, sizeof(char *));
    int n = 0;
    for (int i = 0; i < ch->n; i++)
        if (pick(&ch->items[i])) items[n++] = config_change_text(&ch->items[i]);
    char *out = join_texts(items, n, ", ", max);
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
    return out;
}

static bool refused_change(const ConfigChange *ch) { return ch->affects_results && !resumable_change(ch); }
static bool recorded_change(const ConfigChange *ch) { return ch->affects_results && resumable_change(ch); }
static bool free_change(const ConfigChange *ch) {
    const char *p = ch->field->path;
    return !ch->affects_results && strcmp(p, "experiment") != 0 && strcmp(p, "run") != 0 && strcmp(p, "out_dir") != 0;
}

/* How to start another run beside one: a run's folder is <out_dir>/<experiment>/<run>, or the --out DIR. */
static const char *another_run_hint(const TrainOptions *opt) {
    return opt->run_dir ? "another --out DIR starts another" : "--set run=NAME starts another beside it";
}

/* A resumed run's config against its checkpoint's: refused, or noted and recorded. */
static void check_resume_config(TrainRun *r) {
    Config before;
    Error err;
    const char *dir = r->paths.dir;
    if (!config_load_string(&before, r->st.config_lua, r->paths.checkpoint, NULL, 0, &err))
        die("cannot resume %s: the config in its checkpoint does not load (%s); --overwrite starts it again", dir, err.msg);
    ConfigChanges ch = config_changes(&before, r->cfg);
    config_free(&before);
    char *refused = changes_list(&ch, refused_change, 3);
    if (refused[0])
        die("cannot resume %s: its checkpoint was trained with another config (%s); only train.steps, train.log_every "
            "and fields that do not change results (threads, train.eval_every, train.checkpoint_every) may change on "
            "resume; --overwrite starts it again, %s", dir, refused, another_run_hint(r->opt));
    free(refused);
    if (r->tc->steps < r->st.step)
        die("cannot resume %s: train.steps = %d is below its checkpoint's step %d; --overwrite starts it again", dir,
            r->tc->steps, r->st.step);
    r->resume_changes = summary_read_resume_changes(r->paths.summary, &r->n_resume_changes);
    for (int i = 0; i < ch.n; i++) {
        if (!recorded_change(&ch.items[i])) continue;
        char *item = config_change_text(&ch.items[i]), *entry = xasprintf("%s (at step %d)", item, r->st.step);
        free(item);
        bool known = false; /* a session killed before its first checkpoint recorded it already */
        for (int k = 0; k < r->n_resume_changes; k++) known |= strcmp(r->resume_changes[k], entry) == 0;
        if (known) {
            free(entry);
            continue;
        }
        r->resume_changes = xrealloc(r->resume_changes, sizeof(char *) * (size_t)(r->n_resume_changes + 1));
        r->resume_changes[r->n_resume_changes++] = entry;
    }
    char *recorded = changes_list(&ch, recorded_change, ch.n), *unrecorded = changes_list(&ch, free_change, ch.n);
    if (recorded[0] && !r->opt->quiet)
        progress_note("note: resuming with %s: this may change on resume, and summary.json records it "
                      "(resumed_with_changes): the run is a fresh run of neither config", recorded);
    if (unrecorded[0] && !r->opt->quiet) progress_note("note: resuming with %s (does not change the results)", unrecorded);
    free(recorded);
    free(unrecorded);
    config_changes_free(&ch);
}

/* Decides between a fresh start and a resume, and handles an existing run folder.
 * Returns true when the model and state came from the checkpoint. */
static bool open_run(TrainRun *r) {
    const RunPaths *p = &r->paths;
    const TrainOptions *opt = r->opt;
    Error err;
    if (!path_exists(p->dir)) return false;
    if (opt->resume && path_exists(p->checkpoint)) {
        /* the config first: a checkpoint of another model would not even load into this one */
        StFile f;
        if (!st_read(&f, p->checkpoint, &err) || !checkpoint_from_file(&f, NULL, &r->st, &err)) die("%s", err.msg);
        check_resume_config(r);
        checkpoint_state_free(&r->st);
        if (!checkpoint_from_file(&f, r->m, &r->st, &err)) die("%s", err.msg);
        st_free(&f);
        /* its next checkpoints carry the config it runs with now */
        free(r->st.config_lua);
        r->st.config_lua = xstrdup(r->config_text);
        return true;
    }
    if (opt->resume || opt->overwrite) {
        if (opt->resume) progress_note("%s has no checkpoint yet: starting it from step 0", p->dir);
        remove_tree(p->dir);
        return false;
    }
    char *status = summary_read_status(p->summary);
    die("%s already holds a run%s%s%s; --resume continues it, --overwrite replaces it, %s", p->dir,
        status ? " (status: " : "", status ? status : "", status ? ")" : "", another_run_hint(opt));
}

/* Locks the run folder and starts or resumes the run in it; false when it finished already. */
static bool run_open(TrainRun *r) {
    Error err;
    if (path_exists(r->paths.dir)) { /* before anything in it is read or removed */
        if (!lock_run_dir(r->paths.dir, &err)) die("%s", err.msg);
        remove_stale_temporaries(r->paths.dir);
    }
    r->resumed = open_run(r);
    bool at_end = r->resumed && r->st.step >= r->tc->steps;
    char *prior_status = r->resumed ? summary_read_status(r->paths.summary) : NULL;
    bool prior_finished = prior_status && strcmp(prior_status, "finished") == 0;
    /* a run that finished before its last step stopped early (train.stop_accuracy): it is done */
    bool stopped_early = prior_finished && !at_end && r->tc->stop_accuracy > 0;
    bool finished_already = prior_finished && (at_end || stopped_early);
    free(prior_status);
    if (at_end && !finished_already && !r->opt->quiet)
        progress_note("%s reached its last step but was stopped before its summary: finishing it", r->paths.dir);
    if (finished_already && !r->opt->quiet)
        progress_note("%s finished already (step %d of %d): nothing to do", r->paths.dir, r->st.step, r->tc->steps);
    return !finished_already;
}

/* summary.json as the run starts: status "running", the totals so far and the sweep's fields. */
static void summary_start(TrainRun *r) {
    const Config *cfg = r->cfg;
    r->sum = (Summary){.status = "running", .experiment = cfg->experiment, .run = cfg->run, .device = r->be->name,
                       .task = cfg->task, .step = r->st.step, .steps = r->tc->steps,
                       .params = (double)model_param_count(r->m), .train_loss = NAN, .val_loss = NAN,
                       .val_bits_per_byte = NAN, .val_perplexity = NAN, .val_accuracy = NAN, .tokens_per_s = NAN,
                       .wall_s = r->st.wall_seconds, .tokens_seen = r->st.tokens_seen};
    if (strcmp(r->be->name, "cuda") == 0) r->sum.gpu = getenv(r->dp ? "ATTNLAB_RANK_GPUS" : "CUDA_VISIBLE_DEVICES");
    r->sum.data_parallel = r->world;
    r->sum.fingerprint = r->fingerprint;
    r->sum.n_resume_changes = r->n_resume_changes;
    r->sum.resume_changes = r->resume_changes;
    r->sum.n_overrides = r->opt->n_overrides;
    for (int i = 0; i < r->opt->n_overrides; i++) {
        r->sum.override_paths[i] = r->opt->override_paths[i];
        r->sum.override_values[i] = r->opt->override_values[i];
    }
    summary_write(r->paths.summary, &r->sum);
}

/* The run folder with config.lua, metrics.jsonl (open for appending) and summary.json; a folder
 * made here is removed again if the program dies before the run has really started. */
static void run_write_files(TrainRun *r) {
    Error err;
    bool created = !path_exists(r->paths.dir);
    if (!mkdir_p(r->paths.dir, &err)) die("%s", err.msg);
    if (created) cleanup_register(r->paths.dir, true); /* until the run has really started */
    if ((created || !r->resumed) && !lock_run_dir(r->paths.dir, &err)) die("%s", err.msg);
    write_file_atomic(r->paths.config, r->config_text, strlen(r->config_text));
    r->metrics = metrics_open(r->paths.metrics, r->st.step, &err);
    if (!r->metrics) die("%s", err.msg);
    summary_start(r);
    if (created) cleanup_unregister(r->paths.dir);
}

static void announce(const TrainRun *r) {
    const Config *cfg = r->cfg;
    char params_txt[32], layers[160];
    format_count(params_txt, sizeof params_txt, r->sum.params);
    if (r->opt->quiet) return;
    config_layers_text(&cfg->model, layers, sizeof layers);
    char where[64];
    if (r->dp) snprintf(where, sizeof where, "%d GPUs (data-parallel)", r->world);
    else snprintf(where, sizeof where, "%s", r->be->name);
    progress_note("%s '%s/%s': %s parameters, %s, %d step%s of %d x %d tokens on %s",
                  r->resumed ? "resuming" : "training", cfg->experiment, cfg->run, params_txt, layers, r->tc->steps,
                  r->tc->steps == 1 ? "" : "s", r->tc->batch_size * r->tc->grad_accum, r->T, where);
    if (r->resumed) progress_note("continuing from step %d (%s)", r->st.step, r->paths.checkpoint);
}

/* A fresh run's parameters and sampler, the run's files and the banner (rank 0's part). */
static void run_start(TrainRun *r) {
    if (!r->resumed) {
        model_init_params(r->m, 2 * (uint64_t)r->cfg->seed);
        rng_seed(&r->st.data_rng, 2 * (uint64_t)r->cfg->seed + 1);
        r->st.config_lua = xstrdup(r->config_text);
    }
    run_write_files(r);
    announce(r);
}

/* Rank 0's start to every rank: whether there is anything to do, the step, the sampler, the
 * parameters and moments (so a run resumes on any number of GPUs). False when a rank has gone. */
static bool share_start(TrainRun *r, bool *go) {
    struct {
        int go, step;
        Rng data_rng;
    } head = {*go, r->st.step, r->st.data_rng};
    if (!dp_broadcast_host(r->dp, &head, sizeof head, r->be)) return false;
    *go = head.go;
    r->st.step = head.step;
    r->st.data_rng = head.data_rng;
    return !*go || dp_broadcast_params(r->dp, &r->m->params);
}

/* This session's state, on every rank. */
static void session_start(TrainRun *r) {
    install_signal_handlers();
    r->inputs = xmalloc(sizeof(int) * (size_t)r->tc->batch_size * r->T); /* the whole micro-batch */
    r->targets = xmalloc(sizeof(int) * (size_t)r->tc->batch_size * r->T);
    r->first_step = r->st.step;
    r->saved_step = r->resumed ? r->st.step : -1;
    r->session_t0 = now_seconds();
    r->wall_before = r->st.wall_seconds;
}

/* Fault injection (tests): debug.nan_in at step debug.nan_at_step. */
static bool fault_now(const TrainRun *r, const char *where) {
    return r->cfg->debug.nan_at_step == r->st.step + 1 && strcmp(r->cfg->debug.nan_in, where) == 0;
}

/* "activation": the forward makes a layer's output NaN */
static void arm_activation_fault(TrainRun *r) {
    r->m->poison_layer = fault_now(r, "activation") ? r->cfg->debug.nan_layer : -1;
}

/* "loss" or "grad": after the backward, the loss or a layer's gradient is NaN */
static double inject_late_fault(TrainRun *r, double loss) {
    if (fault_now(r, "loss")) loss = NAN;
    if (fault_now(r, "grad")) poison_layer_gradient(r->m, r->cfg->debug.nan_layer);
    return loss;
}

static void sum_ready_gradients(void *ctx, size_t ready_from) {
    TrainRun *r = ctx;
    dp_gradients_ready(r->dp, &r->m->params, ready_from);
}

/* batch -> forward -> backward for each micro-batch of the step, the gradients accumulated;
 * returns the step's mean loss, NAN when a forward's is not finite. Every rank makes the whole
 * micro-batch (so the sampler stays the same everywhere) and trains on its slice; the gradients
 * are scaled by the whole micro-batch's target count, so their sum over ranks is the gradient of
 * one process, and the last backward sums them while it runs. The loss is this rank's part. */
static double micro_batches(TrainRun *r) {
    const TrainConfig *tc = r->tc;
    int global_B = tc->batch_size;
    size_t slice = (size_t)r->rank * r->B * r->T;
    params_zero_grad(&r->m->params);
    double loss = 0;
    for (int a = 0; a < tc->grad_accum; a++) {
        uint64_t first = ((uint64_t)r->st.step * (uint64_t)tc->grad_accum + (uint64_t)a) * (uint64_t)global_B;
        r->task->ops->train_batch(r->task, &r->st.data_rng, first, global_B, r->T, r->inputs, r->targets);
        long n_targets = count_targets(r->targets, (long)global_B * r->T);
        if (n_targets == 0) die("task '%s' made a training batch without targets", r->cfg->task);
        float scale = 1.0f / ((float)n_targets * tc->grad_accum);
        XentStats xs = model_forward(r->m, r->inputs + slice, r->targets + slice, scale);
        /* the activations of this forward say where it went wrong; ranks go on to meet the others */
        if (!isfinite(xs.loss_sum) && !r->dp) return NAN;
        r->m->grads_ready = r->dp && a == tc->grad_accum - 1 ? sum_ready_gradients : NULL;
        r->m->grads_ready_ctx = r;
        model_backward(r->m);
        loss += xs.loss_sum / n_targets / tc->grad_accum;
    }
    return loss;
}

/* The step's micro-batches, their products reading one copy of the weights the backend made for
 * the step (the GPU's bf16 rounding, once a step instead of at each product). */
static double forward_backward(TrainRun *r) {
    const ParamSet *ps = &r->m->params;
    ps->be->step_weights(ps->w, ps->total);
    double loss = micro_batches(r);
    ps->be->step_weights(NULL, 0);
    return loss;
}

/* A collective that failed (a rank has gone): the run fails, saying so. */
static bool ranks_failed(TrainRun *r) {
    snprintf(r->reason, sizeof r->reason, "%s at step %d; --resume continues from the last checkpoint",
             dp_failure(r->dp), r->st.step);
    r->status = "failed";
    return false;
}

/* After the backward: every rank's gradients summed, the step's loss and whether any rank was
 * asked to stop. False when a rank has gone. */
static bool share_step(TrainRun *r, double *loss) {
    if (!r->dp) {
        r->stop_sig = stop_signal;
        return true;
    }
    dp_gradients_join(r->dp);
    double x[3] = {*loss, stop_signal == SIGINT, stop_signal && stop_signal != SIGINT};
    if (!dp_sum(r->dp, x, 3)) return ranks_failed(r);
    *loss = x[0];
    r->stop_sig = x[1] > 0 ? SIGINT : x[2] > 0 ? SIGTERM : 0;
    return true;
}

/* A non-finite loss or gradient fails the run, saying where it went wrong. */
static bool loss_is_finite(TrainRun *r, double loss) {
    if (isfinite(loss)) return true;
    int l = model_nonfinite_layer(r->m);
    if (l >= 0)
        snprintf(r->reason, sizeof r->reason, "non-finite loss at step %d (layer %d output)", r->st.step + 1, l);
    else
        snprintf(r->reason, sizeof r->reason, "non-finite loss at step %d (final norm or head)", r->st.step + 1);
    r->status = "failed";
    return false;
}

static bool gradient_is_finite(TrainRun *r, double grad_norm) {
    if (isfinite(grad_norm)) return true;
    char where[160];
    describe_nonfinite_gradient(r->m, where, sizeof where);
    snprintf(r->reason, sizeof r->reason, "non-finite gradient at step %d (%s)", r->st.step + 1, where);
    r->status = "failed";
    return false;
}

/* A step's time and tokens, in the run's totals, this session's and the log window's. */
static void count_step(TrainRun *r, double loss, double dt) {
    double tokens = (double)r->tc->batch_size * r->T * r->tc->grad_accum; /* every rank's */
    r->st.train_seconds += dt;
    r->st.tokens_seen += tokens;
    r->session_train_s += dt;
    r->session_tokens += tokens;
    r->window.loss += loss;
    r->window.s += dt;
    r->window.tokens += tokens;
    r->window.steps++;
}

/* The window's mean loss and speed, in the metrics row and on the progress line. */
static void log_step(TrainRun *r, MetricsRow *row, double lr, double grad_norm) {
    row->loss = r->window.loss / r->window.steps;
    row->lr = lr;
    row->grad_norm = grad_norm;
    row->tokens_per_s = r->window.tokens / r->window.s;
    row->elapsed_s = r->st.train_seconds;
    r->sum.train_loss = row->loss;
    if (!r->opt->quiet) {
        double eta = (r->tc->steps - r->st.step) * (now_seconds() - r->session_t0) / (r->st.step - r->first_step);
        ProgressLine pl = {r->st.step, r->tc->steps, row->loss, lr, grad_norm, row->tokens_per_s, eta};
        progress_update(&pl);
    }
    r->window = (LogWindow){0};
}

/* A validation pass, its windows shared by the ranks; false when a rank has gone. */
static bool evaluate_step(TrainRun *r, MetricsRow *row) {
    EvalSums sums = evaluate_share(r->m, r->task, r->eval_B, r->T, r->cfg->eval.max_batches, r->rank, r->world);
    double x[4] = {sums.loss_sum, sums.targets, sums.correct, sums.windows};
    if (r->dp && !dp_sum(r->dp, x, 4)) return ranks_failed(r);
    sums = (EvalSums){x[0], x[1], x[2], x[3]};
    EvalResult ev = eval_result(&sums, r->task->byte_tokens);
    row->val_loss = r->sum.val_loss = ev.loss;
    row->val_bits_per_byte = r->sum.val_bits_per_byte = ev.bits_per_byte;
    row->val_perplexity = r->sum.val_perplexity = ev.perplexity;
    row->val_accuracy = r->sum.val_accuracy = ev.accuracy;
    if (r->opt->quiet) return true;
    if (r->task->byte_tokens)
        progress_note("step %d: val loss %.4f | %.3f bits/byte | perplexity %.2f", r->st.step, ev.loss,
                      ev.bits_per_byte, ev.perplexity);
    else
        progress_note("step %d: val loss %.4f | accuracy %.4f | perplexity %.2f", r->st.step, ev.loss, ev.accuracy,
                      ev.perplexity);
    return true;
}

/* A checkpoint that cannot be written fails the run. */
static bool save_checkpoint(TrainRun *r) {
    Error err;
    r->st.wall_seconds = r->wall_before + (now_seconds() - r->session_t0);
    if (checkpoint_save(r->paths.checkpoint, r->m, &r->st, &err)) {
        r->saved_step = r->st.step;
        /* summary.json says how far the run got, so a run killed after this (--status: killed) shows
         * the step its checkpoint resumes from, not the step it started at */
        r->sum.step = r->st.step;
        r->sum.wall_s = r->st.wall_seconds;
        r->sum.tokens_seen = r->st.tokens_seen;
        summary_write(r->paths.summary, &r->sum);
        return true;
    }
    /* disk full, say: the previous checkpoint is intact and the run resumes from it */
    if (r->saved_step >= 0)
        snprintf(r->reason, sizeof r->reason, "%s (the checkpoint of step %d is kept)", err.msg, r->saved_step);
    else
        snprintf(r->reason, sizeof r->reason, "%s (no checkpoint was written yet)", err.msg);
    r->status = "failed";
    return false;
}

/* A checkpoint on every rank: the ranks' parameters compared, rank 0 writes it, and all learn
 * whether it was written. */
static bool checkpoint_step(TrainRun *r) {
    if (r->dp) {
        bool same;
        int odd = 0;
        if (!dp_same_params(r->dp, &r->m->params, &same, &odd)) return ranks_failed(r);
        if (!same) {
            snprintf(r->reason, sizeof r->reason, "the parameters of rank %d differ from rank 0's at step %d (a bug)", odd,
                     r->st.step);
            r->status = "failed";
            return false;
        }
    }
    double failed = r->rank == 0 && !save_checkpoint(r);
    if (r->dp && !dp_sum(r->dp, &failed, 1)) return ranks_failed(r);
    if (failed && r->rank != 0) r->status = "failed"; /* rank 0 says why */
    return !failed;
}

/* train.stop_accuracy reached: the run has learned what it was to learn, and finishes here. */
static bool accurate_enough(const TrainRun *r, const MetricsRow *row) {
    return r->tc->stop_accuracy > 0 && isfinite(row->val_accuracy) && row->val_accuracy > r->tc->stop_accuracy;
}

/* --stop-at or a signal: the run stops, checkpointed, before its last step. */
static void stop_early(TrainRun *r) {
    r->status = r->stop_sig ? "interrupted" : "stopped";
    /* the status says "interrupted" or "stopped": the reason says by what, and how to go on */
    snprintf(r->reason, sizeof r->reason, "%s at step %d; %s",
             r->stop_sig ? (r->stop_sig == SIGINT ? "SIGINT" : "SIGTERM") : "--stop-at", r->st.step,
             r->opt->in_sweep ? "starting the sweep again resumes it" : "--resume continues");
}

/* After a step: log it, evaluate, checkpoint, stop, as due; false when the run ends here. */
static bool after_step(TrainRun *r, double lr, double grad_norm) {
    const TrainConfig *tc = r->tc;
    int step = r->st.step;
    bool last = step == tc->steps;
    bool stop = (r->opt->stop_at && step >= r->opt->stop_at) || r->stop_sig;
    bool log_now = step % tc->log_every == 0 || last || stop;
    bool eval_now = (tc->eval_every && step % tc->eval_every == 0) || last;
    MetricsRow row;
    metrics_row_clear(&row);
    row.step = step;
    if (log_now) log_step(r, &row, lr, grad_norm);
    if (eval_now && !evaluate_step(r, &row)) return false;
    bool early = eval_now && !last && accurate_enough(r, &row); /* the same on every rank: a shared pass */
    if (early && !log_now) log_step(r, &row, lr, grad_norm);
    if ((log_now || eval_now) && r->metrics) metrics_append(r->metrics, &row);
    bool checkpoint_now = (tc->checkpoint_every && step % tc->checkpoint_every == 0) || last || stop || early;
    if (checkpoint_now && !checkpoint_step(r)) return false;
    if (early) {
        snprintf(r->reason, sizeof r->reason, "stopped early: val accuracy %.4f is above train.stop_accuracy = %g",
                 row.val_accuracy, tc->stop_accuracy);
        return false; /* status "finished", with that reason */
    }
    if (stop && !last) {
        stop_early(r);
        return false;
    }
    return true;
}

/* The training loop; a failure, a stop or the last step ends it, with r->status and r->reason set. */
static void train_loop(TrainRun *r) {
    const TrainConfig *tc = r->tc;
    while (r->st.step < tc->steps) {
        double t0 = now_seconds();
        arm_activation_fault(r);
        double loss = forward_backward(r); /* batch -> forward -> backward, per micro-batch */
        if (!share_step(r, &loss)) return; /* the ranks' gradients and losses summed */
        loss = inject_late_fault(r, loss);
        if (!loss_is_finite(r, loss)) return;
        double lr = lr_at(tc, r->st.step);
        double grad_norm = optimizer_step(&r->m->params, tc, r->st.step + 1, lr); /* clip, AdamW */
        if (!gradient_is_finite(r, grad_norm)) return; /* optimizer_step changed nothing */
        r->st.step++;
        count_step(r, loss, now_seconds() - t0);
        if (!after_step(r, lr, grad_norm)) return; /* log, evaluate, checkpoint, stop */
    }
}

/* killed between the final checkpoint and the summary: the numbers were logged already */
static void recover_logged_numbers(TrainRun *r) {
    MetricsRow last;
    metrics_last_values(r->paths.metrics, &last);
    r->sum.train_loss = last.loss;
    r->sum.val_loss = last.val_loss;
    r->sum.val_bits_per_byte = last.val_bits_per_byte;
    r->sum.val_perplexity = last.val_perplexity;
    r->sum.val_accuracy = last.val_accuracy;
    r->session_train_s = r->st.train_seconds;
    r->session_tokens = r->st.tokens_seen;
}

/* A finished run is judged on whether it learned its task (core/learned.h); the others are not. */
static void judge_learning(TrainRun *r) {
    Summary *s = &r->sum;
    if (strcmp(r->status, "finished") != 0) return;
    s->learned = learned_judge(s, r->task->ops, r->cfg, r->task, r->learned_reason, sizeof r->learned_reason);
    s->learned_reason = s->learned != LEARNED_NOT_JUDGED ? r->learned_reason : NULL;
}

/* The task's final metrics, summary.json with the run's status, and the last lines. */
static void run_finish(TrainRun *r) {
    Summary *s = &r->sum;
    fclose(r->metrics);
    bool finished = strcmp(r->status, "finished") == 0;
    if (r->st.step == r->first_step && finished) recover_logged_numbers(r);
    if (finished && r->task->ops->final_metrics) {
        s->n_metrics = r->task->ops->final_metrics(r->task, r->m, r->cfg, s->metric_names, s->metric_values, 32);
        for (int i = 0; i < s->n_metrics && !r->opt->quiet; i++)
            progress_note("%s %.4f", s->metric_names[i], s->metric_values[i]);
    }
    s->status = r->status;
    s->reason = r->reason[0] ? r->reason : NULL;
    s->step = r->st.step;
    s->wall_s = r->wall_before + (now_seconds() - r->session_t0);
    s->tokens_seen = r->st.tokens_seen;
    s->tokens_per_s = r->session_train_s > 0 ? r->session_tokens / r->session_train_s : NAN;
    judge_learning(r);
    summary_write(r->paths.summary, s);
    if (!r->opt->quiet) print_final(s, &r->paths, r->task->byte_tokens);
}

static void run_free(TrainRun *r) {
    for (int i = 0; i < r->n_resume_changes; i++) free(r->resume_changes[i]);
    free(r->resume_changes);
    free(r->inputs);
    free(r->targets);
    free(r->config_text);
    checkpoint_state_free(&r->st);
    run_paths_free(&r->paths);
    model_free(r->m);
    r->task->ops->destroy(r->task);
}

void train_options_set_overrides(TrainOptions *opt, int n, char *const *paths, char *const *values) {
    opt->n_overrides = n;
    for (int i = 0; i < n; i++) {
        opt->override_paths[i] = paths[i];
        opt->override_values[i] = values[i];
    }
}

int train_run(Config *cfg, const TrainOptions *opt_in) {
    TrainOptions quiet_rank = *opt_in; /* only rank 0 speaks */
    quiet_rank.quiet = opt_in->quiet || (opt_in->ranks && opt_in->ranks->rank != 0);
    const TrainOptions *opt = &quiet_rank;
    TrainRun r;
    run_create(&r, cfg, opt);
    bool go = r.rank == 0 ? run_open(&r) : true; /* rank 0 owns the run's folder */
    if (go && r.rank == 0) run_start(&r);
    bool shared = !r.dp || share_start(&r, &go);
    if (go) {
        session_start(&r);
        if (shared) train_loop(&r);
        else ranks_failed(&r);
        if (r.rank == 0) run_finish(&r);
    }
    int code = strcmp(r.status, "failed") == 0 ? 1 : strcmp(r.status, "interrupted") == 0 ? 130 : 0;
    dp_leave(r.dp, true);
    run_free(&r);
    return code;
}
