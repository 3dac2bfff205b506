/* The figures by setting: a setting is the runs that differ only in their seed (and, after a
 * sweep's `select`, in the `over` fields, of which only the chosen value's runs are drawn).
 * - loss_curves: the training loss of each setting, the mean over its seeds at every logged step
 *   with a band from the lowest to the highest seed.
 * - <task>_final_<metric>: the final metric of each setting, one row each: the mean over its
 *   finished seeds with a bar from min to max and a mark per seed, the task's chance accuracy as
 *   a dashed line, and after a `select` the chosen value in the row's name and every candidate's
 *   mean as a grey mark. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/task.h"
#include "core/util.h"
#include "plot_internal.h"

/* ---- loss curves ---- */

/* One run's logged training losses in step order. A step logged again (a run resumed from a
 * checkpoint older than its last log line) replaces what had followed it. */
typedef struct {
    int *step;
    double *loss;
    int n, cap;
} Curve;

static void curve_read(const PlotRun *r, Curve *c) {
    char *path = xasprintf("%s/metrics.jsonl", r->dir), *text = read_file(path, NULL, NULL);
    free(path);
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step"), *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l)) {
            int step = (int)s->valuedouble;
            while (c->n && c->step[c->n - 1] >= step) c->n--;
            if (c->n == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 64;
                c->step = xrealloc(c->step, sizeof(int) * (size_t)c->cap);
                c->loss = xrealloc(c->loss, sizeof(double) * (size_t)c->cap);
            }
            c->step[c->n] = step;
            c->loss[c->n++] = l->valuedouble;
        }
        cJSON_Delete(o);
    }
    free(text);
}

typedef struct {
    char label[256], chosen[256];
    Curve *curves;
    int n;
    char *runs; /* their names, for the data file */
} Setting;

static int cmp_setting(const void *a, const void *b) {
    return plot_label_cmp(((const Setting *)a)->label, ((const Setting *)b)->label);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* The loss of curve c at `step`, NAN where it logged none. */
static double loss_at(const Curve *c, int step) {
    const int *p = bsearch(&step, c->step, (size_t)c->n, sizeof(int), cmp_int);
    return p ? c->loss[p - c->step] : NAN;
}

/* "label (note)", or the label alone when note is empty. */
static void with_note(char *buf, size_t len, const char *label, const char *note) {
    if (note[0]) snprintf(buf, len, "%s (%s)", label, note);
    else snprintf(buf, len, "%s", label);
}

/* A setting's curve: at each step any of its runs logged, the mean, min and max over those that did. */
static void write_loss(const Experiment *e, const Setting *s, const char *path) {
    int total = 0;
    for (int k = 0; k < s->n; k++) total += s->curves[k].n;
    int *steps = xmalloc(sizeof(int) * (size_t)(total ? total : 1)), n = 0;
    for (int k = 0; k < s->n; k++)
        for (int j = 0; j < s->curves[k].n; j++) steps[n++] = s->curves[k].step[j];
    qsort(steps, (size_t)n, sizeof(int), cmp_int);
    FILE *f = data_file(path);
    fprintf(f, "# %s, %s: training loss over %d runs (%s)\n# step, mean, min, max, runs that logged the step\n",
            e->experiment, s->label, s->n, s->runs);
    for (int i = 0; i < n; i++) {
        if (i && steps[i] == steps[i - 1]) continue;
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        int m = 0;
        for (int k = 0; k < s->n; k++) {
            double v = loss_at(&s->curves[k], steps[i]);
            if (!isfinite(v)) continue;
            sum += v, lo = fmin(lo, v), hi = fmax(hi, v), m++;
        }
        if (m) fprintf(f, "%d %.8g %.8g %.8g %d\n", steps[i], sum / m, lo, hi, m);
    }
    fclose(f);
    free(steps);
}

void loss_curves(Experiment *e) {
    Setting *set = xcalloc((size_t)(e->n ? e->n : 1), sizeof(Setting));
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        Curve c = {0};
        curve_read(&e->runs[i], &c);
        if (!c.n) {
            free(c.step);
            free(c.loss);
            continue;
        }
        char label[256];
        plot_label(&e->runs[i], NULL, label, sizeof label);
        int k = 0;
        while (k < n && strcmp(set[k].label, label) != 0) k++;
        Setting *s = &set[k];
        if (k == n) { /* a new setting */
            n++;
            snprintf(s->label, sizeof s->label, "%s", label);
            plot_chosen(&e->runs[i], s->chosen, sizeof s->chosen);
            s->runs = xstrdup("");
        }
        s->curves = xrealloc(s->curves, sizeof(Curve) * (size_t)(s->n + 1));
        s->curves[s->n++] = c;
        char *runs = xasprintf("%s%s%s", s->runs, s->runs[0] ? " " : "", e->runs[i].name);
        free(s->runs);
        s->runs = runs;
    }
    qsort(set, (size_t)n, sizeof(Setting), cmp_setting);
    Words files = {0}, titles = {0};
    for (int k = 0; k < n; k++) {
        char *path = xasprintf("%s/loss_%s.dat", e->data, set[k].label), title[600];
        write_loss(e, &set[k], path);
        with_note(title, sizeof title, series_title(set[k].label), set[k].chosen);
        words_add(&files, path);
        words_add(&titles, title);
        free(path);
    }
    if (n) {
        char *vars = xasprintf("files='%s'; titles='%s'", words_text(&files), words_text(&titles));
        draw(e, "loss_curves.gp", "loss_curves", vars, &titles);
        free(vars);
    }
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < set[k].n; j++) {
            free(set[k].curves[j].step);
            free(set[k].curves[j].loss);
        }
        free(set[k].curves);
        free(set[k].runs);
    }
    free(set);
    words_free(&files);
    words_free(&titles);
}

/* ---- the final metric per setting ---- */

enum { MAX_CANDIDATES = 32 };

typedef struct {
    char label[256], chosen[256];
    double sum, lo, hi, chance;
    int finished, runs;
    double *seeds;
    double cand_sum[MAX_CANDIDATES];
    int cand_n[MAX_CANDIDATES];
} Row;

static int cmp_row(const void *a, const void *b) { return plot_label_cmp(((const Row *)a)->label, ((const Row *)b)->label); }

/* The figure's metric for a task: the one the sweep selected by, when the task's runs report it;
 * else the accuracy of a task with answers to guess (chance > 0), or the validation loss. */
static const char *metric_for(const Experiment *e, const char *task) {
    bool reports = false, guessable = false;
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->runs[i].cfg.task, task) == 0) {
            reports |= e->select_metric && isfinite(plot_metric(&e->runs[i], e->select_metric));
            guessable |= task_chance_accuracy(&e->runs[i].cfg) > 0;
        }
    return reports ? e->select_metric : guessable ? "val_accuracy" : "val_loss";
}

/* The row of run r's setting, made when it is new. */
static Row *row_of(Row **rows, int *n, const PlotRun *r, bool accuracy) {
    static const char *const except[] = {"task", NULL}; /* one figure per task */
    char label[256];
    plot_label(r, except, label, sizeof label);
    for (int k = 0; k < *n; k++)
        if (strcmp((*rows)[k].label, label) == 0) return &(*rows)[k];
    *rows = xrealloc(*rows, sizeof(Row) * (size_t)(*n + 1));
    Row *row = &(*rows)[(*n)++];
    memset(row, 0, sizeof *row);
    snprintf(row->label, sizeof row->label, "%s", label);
    row->lo = INFINITY, row->hi = -INFINITY;
    row->chance = accuracy ? task_chance_accuracy(&r->cfg) : 0;
    return row;
}

/* A task's rows (settings in order) and the values the selection tried (in order). */
typedef struct {
    const char *task, *metric;
    bool accuracy, selected;
    Row *rows;
    int n, finished;
    char (*cands)[256];
    int n_cands;
    int mark[MAX_CANDIDATES]; /* the number of a value's grey mark; 0: none (every row chose it, or no selection) */
} Final;

/* The index of a value tried, added when new; -1 past MAX_CANDIDATES. */
static int candidate_of(Final *f, const char *value) {
    for (int c = 0; c < f->n_cands; c++)
        if (strcmp(f->cands[c], value) == 0) return c;
    if (f->n_cands == MAX_CANDIDATES) return -1;
    snprintf(f->cands[f->n_cands], 256, "%s", value);
    return f->n_cands++;
}

static void sort_candidates(Final *f);

/* Every run of the task into its setting's row: the chosen ones (every run without a selection)
 * as the row's seeds, each finished one into the mean of the value it tried. */
static void final_gather(Final *f, const Experiment *e) {
    for (int pass = 0; pass < 2; pass++) {
        const PlotRun *runs = pass ? e->others : e->runs;
        for (int i = 0; i < (pass ? e->n_others : e->n); i++) {
            const PlotRun *r = &runs[i];
            if (strcmp(r->cfg.task, f->task) != 0) continue;
            Row *row = row_of(&f->rows, &f->n, r, f->accuracy);
            double v = plot_finished(r) ? plot_metric(r, f->metric) : NAN;
            char value[256];
            plot_chosen(r, value, sizeof value);
            int c = candidate_of(f, value);
            if (c >= 0 && isfinite(v)) row->cand_sum[c] += v, row->cand_n[c]++;
            if (pass) continue;
            row->runs++;
            if (!row->chosen[0]) snprintf(row->chosen, sizeof row->chosen, "%s", value);
            if (!isfinite(v)) continue;
            row->seeds = xrealloc(row->seeds, sizeof(double) * (size_t)(row->finished + 1));
            row->seeds[row->finished++] = v;
            row->sum += v, row->lo = fmin(row->lo, v), row->hi = fmax(row->hi, v);
            f->finished++;
        }
    }
    qsort(f->rows, (size_t)f->n, sizeof(Row), cmp_row);
    sort_candidates(f);
    /* a mark for each value some row tried without choosing it, numbered in order */
    for (int c = 0, marks = 0; f->selected && c < f->n_cands; c++) {
        bool tried = false;
        for (int k = 0; k < f->n; k++) tried |= f->rows[k].cand_n[c] && strcmp(f->cands[c], f->rows[k].chosen) != 0;
        f->mark[c] = tried ? ++marks : 0;
    }
}

/* The values tried in order, their sums in every row moved with them. */
static void sort_candidates(Final *f) {
    for (int a = 0; a < f->n_cands; a++)
        for (int b = a + 1; b < f->n_cands; b++)
            if (plot_label_cmp(f->cands[b], f->cands[a]) < 0) {
                char x[256];
                memcpy(x, f->cands[a], 256), memcpy(f->cands[a], f->cands[b], 256), memcpy(f->cands[b], x, 256);
                for (int k = 0; k < f->n; k++) {
                    Row *row = &f->rows[k];
                    double sum = row->cand_sum[a];
                    int m = row->cand_n[a];
                    row->cand_sum[a] = row->cand_sum[b], row->cand_n[a] = row->cand_n[b];
                    row->cand_sum[b] = sum, row->cand_n[b] = m;
                }
            }
}

/* A row's name: its setting, then the value chosen and how many seeds finished when not all. */
static void row_name(const Row *row, char *buf, size_t len) {
    char note[320] = "";
    size_t n = 0;
    if (row->finished && row->chosen[0]) n += (size_t)snprintf(note, sizeof note, "%s", row->chosen);
    if (!row->finished) snprintf(note + n, sizeof note - n, "no finished run");
    else if (row->finished < row->runs)
        snprintf(note + n, sizeof note - n, "%s%d of %d seeds", n ? "; " : "", row->finished, row->runs);
    with_note(buf, len, row->label, note);
}

/* The three data files: the rows, each seed, each value tried but not chosen. Returns the chance
 * accuracy the rows share, 0 when they differ, -1 when none has one; names gets the rows' names. */
static double final_write(const Final *f, const char *file, const char *seeds, const char *cands, const char *experiment,
                          Words *names) {
    FILE *fr = data_file(file), *fs = data_file(seeds), *fc = data_file(cands);
    fprintf(fr, "# %s, task %s: the final %s of each setting over its finished seeds; chance: 1 / the answers (0: none)\n"
                "# row, setting, mean, min, max, seeds finished, seeds run, chance\n",
            experiment, f->task, f->metric);
    fprintf(fs, "# row, %s of one seed\n", f->metric);
    fprintf(fc, "# row, mean %s over the finished seeds of a value not chosen, its number (1: the first in the legend)\n",
            f->metric);
    double chance = -1;
    for (int k = 0; k < f->n; k++) {
        const Row *row = &f->rows[k];
        char name[600];
        row_name(row, name, sizeof name);
        words_add(names, name);
        bool any = row->finished > 0;
        fprintf(fr, "%d \"%s\" %.10g %.10g %.10g %d %d %.10g\n", k, name, any ? row->sum / row->finished : NAN,
                any ? row->lo : NAN, any ? row->hi : NAN, row->finished, row->runs, row->chance);
        for (int s = 0; s < row->finished; s++) fprintf(fs, "%d %.10g\n", k, row->seeds[s]);
        for (int c = 0; c < f->n_cands; c++)
            if (f->mark[c] && row->cand_n[c] && strcmp(f->cands[c], row->chosen) != 0)
                fprintf(fc, "%d %.10g %d\n", k, row->cand_sum[c] / row->cand_n[c], f->mark[c]);
        if (row->chance > 0) chance = chance < 0 || chance == row->chance ? row->chance : 0;
    }
    fclose(fr);
    fclose(fs);
    fclose(fc);
    return chance;
}

/* "each setting at its best lr (by the mean val_loss over seeds)", "" without a selection */
static void selection_text(const Experiment *e, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 0; e->n_selected_from && e->over[k] && n < len; k++) {
        const char *name = strrchr(e->over[k], '.') ? strrchr(e->over[k], '.') + 1 : e->over[k];
        n += (size_t)snprintf(buf + n, len - n, "%s%s", k ? ", " : "each setting at its best ", name);
    }
    if (buf[0] && n < len) snprintf(buf + n, len - n, " (by the mean %s over seeds)", e->select_metric);
}

static void final_metric_of(Experiment *e, const char *task) {
    Final f = {.task = task, .metric = metric_for(e, task), .selected = e->n_selected_from > 0};
    f.accuracy = strstr(f.metric, "accuracy") != NULL;
    f.cands = xcalloc(MAX_CANDIDATES, 256);
    final_gather(&f, e);
    char *file = xasprintf("%s/final_%s_%s.dat", e->data, task, f.metric);
    char *seeds = xasprintf("%s/final_%s_%s_seeds.dat", e->data, task, f.metric);
    char *cands = xasprintf("%s/final_%s_%s_candidates.dat", e->data, task, f.metric);
    Words rownames = {0}, key = {0}, tried = {0};
    double chance = final_write(&f, file, seeds, cands, e->experiment, &rownames);
    char chance_title[64] = "", selection[512], figure[200];
    if (chance > 0) snprintf(chance_title, sizeof chance_title, "chance: 1/%.0f", 1 / chance);
    else if (chance == 0) snprintf(chance_title, sizeof chance_title, "chance: 1 / answers");
    words_add(&key, "mean over seeds, bar: min to max");
    words_add(&key, "each seed");
    if (chance_title[0]) words_add(&key, chance_title);
    for (int c = 0; c < f.n_cands; c++) {
        if (!f.mark[c]) continue;
        char title[300];
        snprintf(title, sizeof title, "also tried: %s", f.cands[c]);
        words_add(&tried, title);
        words_add(&key, title);
    }
    selection_text(e, selection, sizeof selection);
    snprintf(figure, sizeof figure, "%s_final_%s", task, f.metric);
    if (f.finished) { /* gnuplot cannot draw a figure without a point */
        char *vars = xasprintf("file='%s'; seeds='%s'; cands='%s'; candidates='%s'; rownames='%s'; metric='%s'; "
                               "task='%s'; goal='%s'; chance_title='%s'; accuracy=%d; selection='%s'",
                               file, seeds, cands, words_text(&tried), words_text(&rownames), f.metric, task,
                               f.accuracy ? "higher is better" : "lower is better", chance_title, f.accuracy, selection);
        draw(e, "final_metric.gp", figure, vars, &key);
        free(vars);
    }
    words_free(&key);
    words_free(&tried);
    words_free(&rownames);
    for (int k = 0; k < f.n; k++) free(f.rows[k].seeds);
    free(f.rows);
    free(f.cands);
    free(file);
    free(seeds);
    free(cands);
}

/* A figure per trained task of the experiment (measurements have no final metric). */
void final_metric(Experiment *e) {
    const char *tasks[64];
    int n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? e->n_others : e->n); i++) {
            const PlotRun *r = pass ? &e->others[i] : &e->runs[i];
            const TaskOps *ops = task_lookup(r->cfg.task);
            int k = 0;
            while (k < n && strcmp(tasks[k], r->cfg.task) != 0) k++;
            if (k == n && n < 64 && ops && !ops->measure) tasks[n++] = r->cfg.task;
        }
    for (int k = 0; k < n; k++) final_metric_of(e, tasks[k]);
}
