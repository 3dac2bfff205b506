/* The training loop: batches -> forward -> loss -> backward -> clip -> AdamW -> log, with
 * periodic evaluation and checkpoints, resume from the last checkpoint, and a clean stop on
 * SIGINT/SIGTERM (finish the step, checkpoint, exit). */
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/config/fingerprint.h"
#include "core/io/checkpoint.h"
#include "core/io/results.h"
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
    int B, T, eval_B;
    RunPaths paths;
    char *config_text;
    char fingerprint[FINGERPRINT_HEX];
    char **resume_changes; /* the run's fields changed on resume, this session's included */
    int n_resume_changes;
    char learned_reason[256];
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
} TrainRun;

/* The backend, task, model, paths and resolved config of a run; nothing is written yet. */
static void run_create(TrainRun *r, Config *cfg, const TrainOptions *opt) {
    Error err;
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->opt = opt;
    r->tc = &cfg->train;
    r->be = backend_by_name(cfg->device);
    backend_set_threads(cfg->threads);
    r->task = task_create(cfg, &err);
    if (!r->task) die("%s", err.msg);
    r->B = r->tc->batch_size;
    r->T = r->tc->seq_len;
    r->eval_B = cfg->eval.batch_size ? cfg->eval.batch_size : r->B;
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
    char *prior_status = at_end ? summary_read_status(r->paths.summary) : NULL;
    bool finished_already = prior_status && strcmp(prior_status, "finished") == 0;
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
    if (strcmp(r->be->name, "cuda") == 0) r->sum.gpu = getenv("CUDA_VISIBLE_DEVICES");
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
    progress_note("%s '%s/%s': %s parameters, %s, %d step%s of %d x %d tokens on %s",
                  r->resumed ? "resuming" : "training", cfg->experiment, cfg->run, params_txt, layers, r->tc->steps,
                  r->tc->steps == 1 ? "" : "s", r->B * r->tc->grad_accum, r->T, r->be->name);
    if (r->resumed) progress_note("continuing from step %d (%s)", r->st.step, r->paths.checkpoint);
}

/* A fresh run's parameters and sampler, the run's files, the banner, and this session's state. */
static void run_start(TrainRun *r) {
    if (!r->resumed) {
        model_init_params(r->m, 2 * (uint64_t)r->cfg->seed);
        rng_seed(&r->st.data_rng, 2 * (uint64_t)r->cfg->seed + 1);
        r->st.config_lua = xstrdup(r->config_text);
    }
    run_write_files(r);
    announce(r);
    install_signal_handlers();
    r->inputs = xmalloc(sizeof(int) * (size_t)r->B * r->T);
    r->targets = xmalloc(sizeof(int) * (size_t)r->B * r->T);
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

/* batch -> forward -> backward for each micro-batch of the step, the gradients accumulated;
 * returns the step's mean loss, NAN when a forward's is not finite. */
static double forward_backward(TrainRun *r) {
    const TrainConfig *tc = r->tc;
    params_zero_grad(&r->m->params);
    double loss = 0;
    for (int a = 0; a < tc->grad_accum; a++) {
        uint64_t first = ((uint64_t)r->st.step * (uint64_t)tc->grad_accum + (uint64_t)a) * (uint64_t)r->B;
        r->task->ops->train_batch(r->task, &r->st.data_rng, first, r->B, r->T, r->inputs, r->targets);
        long n_targets = count_targets(r->targets, (long)r->B * r->T);
        if (n_targets == 0) die("task '%s' made a training batch without targets", r->cfg->task);
        float scale = 1.0f / ((float)n_targets * tc->grad_accum);
        XentStats xs = model_forward(r->m, r->inputs, r->targets, scale);
        if (!isfinite(xs.loss_sum)) return NAN; /* the activations of this forward say where it went wrong */
        model_backward(r->m);
        loss += xs.loss_sum / n_targets / tc->grad_accum;
    }
    return loss;
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
    double tokens = (double)r->B * r->T * r->tc->grad_accum;
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

static void evaluate_step(TrainRun *r, MetricsRow *row) {
    EvalResult ev = evaluate(r->m, r->task, r->eval_B, r->T, r->cfg->eval.max_batches);
    row->val_loss = r->sum.val_loss = ev.loss;
    row->val_bits_per_byte = r->sum.val_bits_per_byte = ev.bits_per_byte;
    row->val_perplexity = r->sum.val_perplexity = ev.perplexity;
    row->val_accuracy = r->sum.val_accuracy = ev.accuracy;
    if (r->opt->quiet) return;
    if (r->task->byte_tokens)
        progress_note("step %d: val loss %.4f | %.3f bits/byte | perplexity %.2f", r->st.step, ev.loss,
                      ev.bits_per_byte, ev.perplexity);
    else
        progress_note("step %d: val loss %.4f | accuracy %.4f | perplexity %.2f", r->st.step, ev.loss, ev.accuracy,
                      ev.perplexity);
}

/* A checkpoint that cannot be written fails the run. */
static bool save_checkpoint(TrainRun *r) {
    Error err;
    r->st.wall_seconds = r->wall_before + (now_seconds() - r->session_t0);
    if (checkpoint_save(r->paths.checkpoint, r->m, &r->st, &err)) {
        r->saved_step = r->st.step;
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

/* --stop-at or a signal: the run stops, checkpointed, before its last step. */
static void stop_early(TrainRun *r) {
    r->status = stop_signal ? "interrupted" : "stopped";
    /* the status says "interrupted" or "stopped": the reason says by what, and how to go on */
    snprintf(r->reason, sizeof r->reason, "%s at step %d; %s",
             stop_signal ? (stop_signal == SIGINT ? "SIGINT" : "SIGTERM") : "--stop-at", r->st.step,
             r->opt->in_sweep ? "starting the sweep again resumes it" : "--resume continues");
}

/* After a step: log it, evaluate, checkpoint, stop, as due; false when the run ends here. */
static bool after_step(TrainRun *r, double lr, double grad_norm) {
    const TrainConfig *tc = r->tc;
    int step = r->st.step;
    bool last = step == tc->steps;
    bool stop = (r->opt->stop_at && step >= r->opt->stop_at) || stop_signal;
    bool log_now = step % tc->log_every == 0 || last || stop;
    bool eval_now = (tc->eval_every && step % tc->eval_every == 0) || last;
    MetricsRow row;
    metrics_row_clear(&row);
    row.step = step;
    if (log_now) log_step(r, &row, lr, grad_norm);
    if (eval_now) evaluate_step(r, &row);
    if (log_now || eval_now) metrics_append(r->metrics, &row);
    bool checkpoint_now = (tc->checkpoint_every && step % tc->checkpoint_every == 0) || last || stop;
    if (checkpoint_now && !save_checkpoint(r)) return false;
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

/* A run that did not learn is marked, never ranked: on a task scored on answers (mqar,
 * palindrome, stack), a final validation accuracy of at most twice chance (a uniform guess over the
 * answer alphabet); on a task scored by loss (lm), a final validation loss not below 0.95 times
 * its first plateau (the entropy of the held-out tokens' own frequencies, below which only a model
 * that uses context can go). Only finished runs are judged. */
enum { LEARNED_CHANCE_FACTOR = 2 };
static const double LEARNED_PLATEAU_FRACTION = 0.95;

static void judge_learning(TrainRun *r) {
    Summary *s = &r->sum;
    const TaskOps *ops = r->task->ops;
    if (strcmp(r->status, "finished") != 0) return;
    if (ops->chance_accuracy && isfinite(s->val_accuracy)) {
        double chance = ops->chance_accuracy(r->cfg), bar = LEARNED_CHANCE_FACTOR * chance;
        s->learned = s->val_accuracy > bar ? LEARNED_YES : LEARNED_NO;
        snprintf(r->learned_reason, sizeof r->learned_reason,
                 "val accuracy %.4f is %s %d x %.4g, the chance of a uniform guess over %.0f answers", s->val_accuracy,
                 s->learned == LEARNED_YES ? "above" : "not above", LEARNED_CHANCE_FACTOR, chance, 1 / chance);
    } else if (ops->plateau_loss && isfinite(s->val_loss)) {
        double plateau = ops->plateau_loss(r->task), bar = LEARNED_PLATEAU_FRACTION * plateau;
        s->learned = s->val_loss < bar ? LEARNED_YES : LEARNED_NO;
        snprintf(r->learned_reason, sizeof r->learned_reason,
                 "val loss %.4f is %s %.2f x %.4f, the unigram entropy of the held-out tokens (the first plateau)",
                 s->val_loss, s->learned == LEARNED_YES ? "below" : "not below", LEARNED_PLATEAU_FRACTION, plateau);
    }
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

int train_run(Config *cfg, const TrainOptions *opt) {
    TrainRun r;
    run_create(&r, cfg, opt);
    if (run_open(&r)) {
        run_start(&r);
        train_loop(&r);
        run_finish(&r);
    }
    int code = strcmp(r.status, "failed") == 0 ? 1 : strcmp(r.status, "interrupted") == 0 ? 130 : 0;
    run_free(&r);
    return code;
}
