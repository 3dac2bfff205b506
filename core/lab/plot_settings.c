/* The figures by setting: a setting is the runs that differ only in their seed (and, after a
 * sweep's `select`, in the `over` fields, of which only the chosen value's runs are drawn).
 * - loss_curves: the training loss of each setting, the mean over its seeds at every logged step
 *   with a band from the lowest to the highest seed. */
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
