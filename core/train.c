/* The training loop: batches -> forward -> loss -> backward -> clip -> AdamW -> log, with
 * periodic evaluation and checkpoints, resume from the last checkpoint, and a clean stop on
 * SIGINT/SIGTERM (finish the step, checkpoint, exit). */
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "evaluate.h"
#include "model.h"
#include "optimizer.h"
#include "progress.h"
#include "results.h"
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

/* Decides between a fresh start and a resume, and handles an existing run folder.
 * Returns true when the model and state came from the checkpoint. */
static bool open_run(const RunPaths *p, const TrainOptions *opt, Model *m, CheckpointState *st,
                     const char *config_text) {
    Error err;
    if (!path_exists(p->dir)) return false;
    if (opt->resume && path_exists(p->checkpoint)) {
        if (!checkpoint_load(p->checkpoint, m, st, &err)) die("%s", err.msg);
        if (strcmp(st->config_lua, config_text) != 0)
            warn("the config differs from the one %s was trained with; resuming with the new one", p->checkpoint);
        return true;
    }
    if (opt->resume || opt->overwrite) {
        if (opt->resume) progress_note("%s has no checkpoint yet: starting it from step 0", p->dir);
        remove_tree(p->dir);
        return false;
    }
    char *status = summary_read_status(p->summary);
    die("%s already holds a run%s%s%s; --resume continues it, --overwrite replaces it, --set run=NAME starts another",
        p->dir, status ? " (status: " : "", status ? status : "", status ? ")" : "");
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

int train_run(Config *cfg, const TrainOptions *opt) {
    Error err;
    const Backend *be = backend_by_name(cfg->device);
    backend_set_threads(cfg->threads);
    Task *task = task_create(cfg, &err);
    if (!task) die("%s", err.msg);
    const TrainConfig *tc = &cfg->train;
    int B = tc->batch_size, T = tc->seq_len;
    int eval_B = cfg->eval.batch_size ? cfg->eval.batch_size : B;
    Model *m = model_create(&cfg->model, be);
    model_reshape(m, B, T);
    progress_init();

    RunPaths paths = run_paths(cfg, opt);
    char *header = xasprintf("resolved config of run '%s/%s' (from %s)", cfg->experiment, cfg->run, cfg->source_path);
    char *config_text = config_to_lua(cfg, header);
    free(header);
    CheckpointState st = {0};
    if (path_exists(paths.dir)) { /* before anything in it is read or removed */
        if (!lock_run_dir(paths.dir, &err)) die("%s", err.msg);
        remove_stale_temporaries(paths.dir);
    }
    bool resumed = open_run(&paths, opt, m, &st, config_text);
    char *prior_status = resumed && st.step >= tc->steps ? summary_read_status(paths.summary) : NULL;
    bool finished_already = prior_status && strcmp(prior_status, "finished") == 0;
    free(prior_status);
    if (resumed && st.step >= tc->steps && !finished_already && !opt->quiet)
        progress_note("%s reached its last step but was stopped before its summary: finishing it", paths.dir);
    if (finished_already) {
        if (!opt->quiet) progress_note("%s finished already (step %d of %d): nothing to do", paths.dir, st.step, tc->steps);
        free(config_text);
        checkpoint_state_free(&st);
        run_paths_free(&paths);
        model_free(m);
        task->ops->destroy(task);
        return 0;
    }
    if (!resumed) {
        model_init_params(m, 2 * (uint64_t)cfg->seed);
        rng_seed(&st.data_rng, 2 * (uint64_t)cfg->seed + 1);
        st.config_lua = xstrdup(config_text);
    }
    bool created = !path_exists(paths.dir);
    if (!mkdir_p(paths.dir, &err)) die("%s", err.msg);
    if (created) cleanup_register(paths.dir, true); /* until the run has really started */
    if ((created || !resumed) && !lock_run_dir(paths.dir, &err)) die("%s", err.msg);
    write_file_atomic(paths.config, config_text, strlen(config_text));
    FILE *metrics = metrics_open(paths.metrics, st.step, &err);
    if (!metrics) die("%s", err.msg);

    Summary sum = {.status = "running", .experiment = cfg->experiment, .run = cfg->run, .device = be->name,
                   .task = cfg->task, .step = st.step, .steps = tc->steps, .params = (double)model_param_count(m),
                   .train_loss = NAN, .val_loss = NAN, .val_bits_per_byte = NAN, .val_perplexity = NAN,
                   .val_accuracy = NAN, .tokens_per_s = NAN, .wall_s = st.wall_seconds, .tokens_seen = st.tokens_seen};
    sum.n_overrides = opt->n_overrides;
    for (int i = 0; i < opt->n_overrides; i++) {
        sum.override_paths[i] = opt->override_paths[i];
        sum.override_values[i] = opt->override_values[i];
    }
    summary_write(paths.summary, &sum);
    if (created) cleanup_unregister(paths.dir);

    char params_txt[32];
    format_count(params_txt, sizeof params_txt, sum.params);
    if (!opt->quiet) {
        progress_note("%s '%s/%s': %s parameters, %d layer%s of %s, %d steps of %d x %d tokens on %s",
                      resumed ? "resuming" : "training", cfg->experiment, cfg->run, params_txt, m->L, m->L == 1 ? "" : "s", cfg->model.mixer,
                      tc->steps, B * tc->grad_accum, T, be->name);
        if (resumed) progress_note("continuing from step %d (%s)", st.step, paths.checkpoint);
    }

    install_signal_handlers();
    int *inputs = xmalloc(sizeof(int) * (size_t)B * T), *targets = xmalloc(sizeof(int) * (size_t)B * T);
    const int first_step = st.step;
    int saved_step = resumed ? st.step : -1; /* the step of the checkpoint on disk */
    const double session_t0 = now_seconds(), wall_before = st.wall_seconds;
    double session_train_s = 0, session_tokens = 0;
    double window_loss = 0, window_s = 0, window_tokens = 0;
    int window_steps = 0;
    char reason[768] = "";
    const char *status = "finished";
    while (st.step < tc->steps) {
        double t0 = now_seconds();
        params_zero_grad(&m->params);
        bool inject = cfg->debug.nan_at_step == st.step + 1; /* fault injection (tests) */
        m->poison_layer = inject && strcmp(cfg->debug.nan_in, "activation") == 0 ? cfg->debug.nan_layer : -1;
        double loss = 0;
        for (int a = 0; a < tc->grad_accum; a++) {
            uint64_t first = ((uint64_t)st.step * (uint64_t)tc->grad_accum + (uint64_t)a) * (uint64_t)B;
            task->ops->train_batch(task, &st.data_rng, first, B, T, inputs, targets);
            long n_targets = count_targets(targets, (long)B * T);
            if (n_targets == 0) die("task '%s' made a training batch without targets", cfg->task);
            float scale = 1.0f / ((float)n_targets * tc->grad_accum);
            XentStats xs = model_forward(m, inputs, targets, scale);
            if (!isfinite(xs.loss_sum)) {
                loss = NAN;
                break; /* the activations of this forward say where it went wrong */
            }
            model_backward(m);
            loss += xs.loss_sum / n_targets / tc->grad_accum;
        }
        if (inject && strcmp(cfg->debug.nan_in, "loss") == 0) loss = NAN;
        if (inject && strcmp(cfg->debug.nan_in, "grad") == 0) poison_layer_gradient(m, cfg->debug.nan_layer);
        if (!isfinite(loss)) {
            int l = model_nonfinite_layer(m);
            if (l >= 0) snprintf(reason, sizeof reason, "non-finite loss at step %d (layer %d output)", st.step + 1, l);
            else snprintf(reason, sizeof reason, "non-finite loss at step %d (final norm or head)", st.step + 1);
            status = "failed";
            break;
        }
        double lr = lr_at(tc, st.step);
        double grad_norm = optimizer_step(&m->params, tc, st.step + 1, lr); /* changes nothing when not finite */
        if (!isfinite(grad_norm)) {
            char where[160];
            describe_nonfinite_gradient(m, where, sizeof where);
            snprintf(reason, sizeof reason, "non-finite gradient at step %d (%s)", st.step + 1, where);
            status = "failed";
            break;
        }
        st.step++;
        double dt = now_seconds() - t0, tokens = (double)B * T * tc->grad_accum;
        st.train_seconds += dt;
        st.tokens_seen += tokens;
        session_train_s += dt;
        session_tokens += tokens;
        window_loss += loss;
        window_s += dt;
        window_tokens += tokens;
        window_steps++;

        bool last = st.step == tc->steps;
        bool stop = (opt->stop_at && st.step >= opt->stop_at) || stop_signal;
        bool log_now = st.step % tc->log_every == 0 || last || stop;
        bool eval_now = (tc->eval_every && st.step % tc->eval_every == 0) || last;
        MetricsRow row;
        metrics_row_clear(&row);
        row.step = st.step;
        if (log_now) {
            row.loss = window_loss / window_steps;
            row.lr = lr;
            row.grad_norm = grad_norm;
            row.tokens_per_s = window_tokens / window_s;
            row.elapsed_s = st.train_seconds;
            sum.train_loss = row.loss;
            if (!opt->quiet) {
                double eta = (tc->steps - st.step) * (now_seconds() - session_t0) / (st.step - first_step);
                ProgressLine pl = {st.step, tc->steps, row.loss, lr, grad_norm, row.tokens_per_s, eta};
                progress_update(&pl);
            }
            window_loss = window_s = window_tokens = 0;
            window_steps = 0;
        }
        if (eval_now) {
            EvalResult ev = evaluate(m, task, eval_B, T, cfg->eval.max_batches);
            row.val_loss = sum.val_loss = ev.loss;
            row.val_bits_per_byte = sum.val_bits_per_byte = ev.bits_per_byte;
            row.val_perplexity = sum.val_perplexity = ev.perplexity;
            row.val_accuracy = sum.val_accuracy = ev.accuracy;
            if (!opt->quiet) {
                if (task->byte_tokens)
                    progress_note("step %d: val loss %.4f | %.3f bits/byte | perplexity %.2f", st.step, ev.loss,
                                  ev.bits_per_byte, ev.perplexity);
                else
                    progress_note("step %d: val loss %.4f | accuracy %.4f | perplexity %.2f", st.step, ev.loss,
                                  ev.accuracy, ev.perplexity);
            }
        }
        if (log_now || eval_now) metrics_append(metrics, &row);
        if ((tc->checkpoint_every && st.step % tc->checkpoint_every == 0) || last || stop) {
            st.wall_seconds = wall_before + (now_seconds() - session_t0);
            if (!checkpoint_save(paths.checkpoint, m, &st, &err)) {
                /* disk full, say: the previous checkpoint is intact and the run resumes from it */
                if (saved_step >= 0)
                    snprintf(reason, sizeof reason, "%s (the checkpoint of step %d is kept)", err.msg, saved_step);
                else
                    snprintf(reason, sizeof reason, "%s (no checkpoint was written yet)", err.msg);
                status = "failed";
                break;
            }
            saved_step = st.step;
        }
        if (stop && !last) {
            status = stop_signal ? "interrupted" : "stopped";
            snprintf(reason, sizeof reason, "%s at step %d; --resume continues",
                     stop_signal ? (stop_signal == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)") : "--stop-at",
                     st.step);
            break;
        }
    }
    fclose(metrics);
    if (st.step == first_step && strcmp(status, "finished") == 0) {
        /* killed between the final checkpoint and the summary: the numbers were logged already */
        MetricsRow last;
        metrics_last_values(paths.metrics, &last);
        sum.train_loss = last.loss;
        sum.val_loss = last.val_loss;
        sum.val_bits_per_byte = last.val_bits_per_byte;
        sum.val_perplexity = last.val_perplexity;
        sum.val_accuracy = last.val_accuracy;
        session_train_s = st.train_seconds;
        session_tokens = st.tokens_seen;
    }
    if (strcmp(status, "finished") == 0 && task->ops->final_metrics) {
        sum.n_metrics = task->ops->final_metrics(task, m, cfg, sum.metric_names, sum.metric_values, 32);
        for (int i = 0; i < sum.n_metrics && !opt->quiet; i++)
            progress_note("%s %.4f", sum.metric_names[i], sum.metric_values[i]);
    }
    sum.status = status;
    sum.reason = reason[0] ? reason : NULL;
    sum.step = st.step;
    sum.wall_s = wall_before + (now_seconds() - session_t0);
    sum.tokens_seen = st.tokens_seen;
    sum.tokens_per_s = session_train_s > 0 ? session_tokens / session_train_s : NAN;
    summary_write(paths.summary, &sum);
    if (!opt->quiet) print_final(&sum, &paths, task->byte_tokens);
    int code = strcmp(status, "failed") == 0 ? 1 : strcmp(status, "interrupted") == 0 ? 130 : 0;
    free(inputs);
    free(targets);
    free(config_text);
    checkpoint_state_free(&st);
    run_paths_free(&paths);
    model_free(m);
    task->ops->destroy(task);
    return code;
}
