/* `attnlab plot EXPERIMENT`: reads every run of an experiment (summary.json, config.lua,
 * metrics.jsonl, efficiency.csv), works out which figures its results support, writes their data
 * (means, minima and maxima over seeds) under plots/data/, and draws them with the gnuplot
 * scripts in plots/ as PNG and SVG into results/<experiment>/plots/. This file: the runs, series
 * names and their order, the aggregation, drawing, and the figures along an axis; the figures by
 * setting (loss curves, final metric) are in plot_settings.c. */
#include "plot.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config/config.h"
#include "core/task.h"
#include "core/util.h"
#include "plot_internal.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The folder that holds the gnuplot scripts: ./plots, or plots/ beside the executable. */
static char *scripts_dir(void) {
    if (is_directory("plots") && path_exists("plots/common.gp")) return xstrdup("plots");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *dir = path_dirname(exe), *p = xasprintf("%s/plots", dir);
        free(dir);
        if (path_exists(p)) return p;
        free(p);
    }
    die("cannot find the gnuplot scripts (plots/common.gp): run attnlab from its folder");
}

/* The sweep fields every run sets to the same value (a sweep whose runs each repeat the same
 * lengths or batch): they tell the series apart no more than the seed does. Two runs at least. */
static void find_constant_fields(Experiment *e) {
    int n = 0;
    const cJSON *item;
    if (e->n < 2) return;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(e->runs[0].summary, "sweep")) {
        if (!cJSON_IsString(item) || n == 64) continue;
        bool same = true;
        for (int i = 1; i < e->n && same; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e->runs[i].summary, "sweep"),
                                                               item->string);
            same = cJSON_IsString(v) && strcmp(v->valuestring, item->valuestring) == 0;
        }
        if (same) e->constant[n++] = xstrdup(item->string);
    }
    for (int i = 0; i < e->n; i++) e->runs[i].constant = (const char *const *)e->constant;
}

static bool load_runs(Experiment *e, Error *err) {
    DIR *d = opendir(e->dir);
    if (!d) return error_set(err, "no results for experiment '%s' (%s does not exist)", e->experiment, e->dir);
    char **names = NULL;
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        char *s = xasprintf("%s/%s/summary.json", e->dir, ent->d_name);
        if (path_exists(s)) {
            names = xrealloc(names, sizeof(char *) * (size_t)(n + 1));
            names[n++] = xstrdup(ent->d_name);
        }
        free(s);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    e->runs = xcalloc((size_t)(n ? n : 1), sizeof(PlotRun));
    for (int i = 0; i < n; i++) {
        PlotRun *r = &e->runs[e->n];
        r->name = names[i];
        r->dir = xasprintf("%s/%s", e->dir, names[i]);
        char *sp = xasprintf("%s/summary.json", r->dir), *cp = xasprintf("%s/config.lua", r->dir);
        char *stext = read_file(sp, NULL, NULL), *ctext = read_file(cp, NULL, NULL);
        Error e2;
        r->summary = stext ? cJSON_Parse(stext) : NULL;
        bool ok = r->summary && ctext && config_load_string(&r->cfg, ctext, cp, NULL, 0, &e2);
        free(stext);
        free(ctext);
        free(sp);
        free(cp);
        if (!ok) { /* a run without a readable record is left out, and said so */
            warn("plot: skipping %s (no readable summary.json and config.lua)", r->dir);
            cJSON_Delete(r->summary);
            free(r->dir);
            free(r->name);
            continue;
        }
        e->n++;
    }
    free(names);
    if (!e->n) return error_set(err, "experiment '%s' has no finished run to plot in %s", e->experiment, e->dir);
    find_constant_fields(e);
    return true;
}

static void plot_run_free(PlotRun *r) {
    config_free(&r->cfg);
    cJSON_Delete(r->summary);
    free(r->name);
    free(r->dir);
}

/* A sweep with `select` leaves selected.json: only the runs it chose are drawn, and the fields
 * it chose over leave the series names (a series is a setting at its best value). The runs it
 * did not choose are kept apart: the final-metric figure shows their scores lighter. A selection
 * that has chosen nothing yet (no tuning run has finished) is set aside, so that a sweep in
 * progress still shows its runs' loss curves. */
static bool apply_selection(Experiment *e, Error *err) {
    char *path = xasprintf("%s/selected.json", e->dir), *text = read_file(path, NULL, NULL);
    bool ok = true;
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *over = cJSON_GetObjectItemCaseSensitive(o, "over"), *runs = cJSON_GetObjectItemCaseSensitive(o, "runs"), *v;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metric");
    if (text && (!cJSON_IsArray(over) || !cJSON_IsArray(runs) || cJSON_GetArraySize(over) > 32))
        ok = error_set(err, "%s: not a selection written by attnlab run (expected the lists 'over' and 'runs')", path);
    if (ok && text && cJSON_GetArraySize(runs) == 0) e->selection_pending = true;
    else if (ok && text) {
        int n_over = 0;
        cJSON_ArrayForEach(v, over) if (cJSON_IsString(v)) e->over[n_over++] = xstrdup(v->valuestring);
        if (cJSON_IsString(m)) e->select_metric = xstrdup(m->valuestring);
        e->n_selected_from = e->n;
        e->others = xcalloc((size_t)e->n, sizeof(PlotRun));
        int kept = 0;
        for (int i = 0; i < e->n; i++) {
            bool chosen = false;
            cJSON_ArrayForEach(v, runs) chosen |= cJSON_IsString(v) && strcmp(v->valuestring, e->runs[i].name) == 0;
            PlotRun *to = chosen ? &e->runs[kept++] : &e->others[e->n_others++];
            *to = e->runs[i];
            to->hidden = (const char *const *)e->over;
        }
        e->n = kept;
    }
    cJSON_Delete(o);
    free(text);
    free(path);
    return ok;
}

double plot_metric(const PlotRun *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->summary, key);
    if (!cJSON_IsNumber(v)) v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->summary, "metrics"), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

bool plot_finished(const PlotRun *r) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r->summary, "status");
    return cJSON_IsString(s) && strcmp(s->valuestring, "finished") == 0;
}

static bool listed(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0) return true;
    return false;
}

/* "key=value" parts of the sweep's fields for which keep(field) holds, joined by commas, with
 * characters gnuplot's word lists and file names cannot take replaced; the key is the field's
 * last name (train.lr -> lr). */
static void sweep_fields(const PlotRun *r, const char *const *except, bool hidden, char *buf, size_t len) {
    const cJSON *sweep = cJSON_GetObjectItemCaseSensitive(r->summary, "sweep"), *item;
    size_t n = 0;
    buf[0] = '\0';
    cJSON_ArrayForEach(item, sweep) {
        bool skip = strcmp(item->string, "seed") == 0 || listed(except, item->string) ||
                    listed(r->hidden, item->string) != hidden || (!hidden && listed(r->constant, item->string));
        if (skip || !cJSON_IsString(item) || n >= len) continue;
        const char *key = strrchr(item->string, '.') ? strrchr(item->string, '.') + 1 : item->string;
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? "," : "", key, item->valuestring);
    }
    for (char *c = buf; *c; c++)
        if (*c == ' ' || *c == '\'' || *c == '"' || *c == '/') *c = '_';
}

void plot_label(const PlotRun *r, const char *const *except, char *buf, size_t len) {
    sweep_fields(r, except, false, buf, len);
    /* a run that sets nothing of its own: measurement runs by name, trained ones are "all" */
    if (!buf[0]) snprintf(buf, len, "%s", task_lookup(r->cfg.task)->measure ? r->name : "all");
}

void plot_chosen(const PlotRun *r, char *buf, size_t len) { sweep_fields(r, NULL, true, buf, len); }

/* ---- series names in numeric order ---- */

/* A whole string that is a finite number. */
static bool number_of(const char *s, double *x) {
    char *end;
    *x = strtod(s, &end);
    return *s && !*end && isfinite(*x);
}

/* The fraction of linear-time layers of "L:F", to order ratios from all attention to all linear;
 * -1 when s is not a ratio. */
static double linear_share(const char *ratio) {
    int l = 0, f = 0, used = 0;
    if (sscanf(ratio, "%d:%d%n", &l, &f, &used) != 2 || ratio[used] || l < 0 || f < 0 || l + f == 0) return -1;
    return (double)l / (l + f);
}

/* One "key=value" part of each name, of lengths na and nb. */
static int part_cmp(const char *a, size_t na, const char *b, size_t nb) {
    const char *ea = memchr(a, '=', na), *eb = memchr(b, '=', nb);
    if (ea && eb) {
        size_t ka = (size_t)(ea - a), kb = (size_t)(eb - b);
        int c = strncmp(a, b, ka < kb ? ka : kb);
        if (c || ka != kb) return c ? c : ka < kb ? -1 : 1;
        a += ka + 1, na -= ka + 1, b += kb + 1, nb -= kb + 1;
    }
    char va[256], vb[256];
    snprintf(va, sizeof va, "%.*s", (int)na, a);
    snprintf(vb, sizeof vb, "%.*s", (int)nb, b);
    double x, y;
    if (number_of(va, &x) && number_of(vb, &y) && x != y) return x < y ? -1 : 1;
    x = linear_share(va), y = linear_share(vb);
    if (x >= 0 && y >= 0 && x != y) return x < y ? -1 : 1;
    return strcmp(va, vb);
}

int plot_label_cmp(const char *a, const char *b) {
    while (*a && *b) {
        size_t na = strcspn(a, ","), nb = strcspn(b, ",");
        int c = part_cmp(a, na, b, nb);
        if (c) return c;
        a += na + (a[na] == ','), b += nb + (b[nb] == ',');
    }
    return (*a != '\0') - (*b != '\0');
}

/* ---- word lists ---- */

void words_add(Words *w, const char *word) {
    char *next = xasprintf("%s%s\"%s\"", w->text ? w->text : "", w->n ? " " : "", word);
    free(w->text);
    w->text = next;
    w->n++;
    w->longest = max_int(w->longest, (int)strlen(word));
}

void words_free(Words *w) {
    free(w->text);
    memset(w, 0, sizeof *w);
}

/* ---- aggregation: the mean, min and max of y per (label, x) over the runs (one per seed) ---- */

void table_add(Table *t, const char *label, double x, const char *xtext, double y) {
    if (!isfinite(y)) return;
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->cells[i].label, label) == 0 && t->cells[i].x == x) {
            Cell *c = &t->cells[i];
            c->sum += y;
            c->lo = fmin(c->lo, y);
            c->hi = fmax(c->hi, y);
            c->n++;
            return;
        }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->cells = xrealloc(t->cells, sizeof(Cell) * (size_t)t->cap);
    }
    Cell *c = &t->cells[t->n++];
    snprintf(c->label, sizeof c->label, "%s", label);
    snprintf(c->xtext, sizeof c->xtext, "%s", xtext ? xtext : "");
    c->x = x;
    c->sum = c->lo = c->hi = y;
    c->n = 1;
}

double cell_mean(const Cell *c) { return c->sum / c->n; }

static int cmp_cell(const void *a, const void *b) {
    const Cell *x = a, *y = b;
    int c = plot_label_cmp(x->label, y->label);
    return c ? c : (x->x > y->x) - (x->x < y->x);
}

FILE *data_file(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write '%s'", path);
    return f;
}

double log2_span(const Table *t) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < t->n; i++) lo = fmin(lo, t->cells[i].x), hi = fmax(hi, t->cells[i].x);
    return lo > 0 && hi > lo ? log2(hi / lo) : 0;
}

const char *series_title(const char *label) { return strcmp(label, "all") == 0 ? "mean over seeds" : label; }

void write_series(const Experiment *e, Table *t, const char *prefix, Words *files, Words *titles) {
    qsort(t->cells, (size_t)t->n, sizeof(Cell), cmp_cell);
    for (int i = 0; i < t->n;) {
        char *path = xasprintf("%s/%s%s.dat", e->data, prefix, t->cells[i].label);
        FILE *f = data_file(path);
        fprintf(f, "# %s: x, mean, min, max over n runs (seeds), n\n", t->cells[i].label);
        int j = i;
        for (; j < t->n && strcmp(t->cells[j].label, t->cells[i].label) == 0; j++) {
            const Cell *c = &t->cells[j];
            fprintf(f, "%.10g %.10g %.10g %.10g %d\n", c->x, cell_mean(c), c->lo, c->hi, c->n);
        }
        fclose(f);
        words_add(files, path);
        words_add(titles, series_title(t->cells[i].label));
        free(path);
        i = j;
    }
}

/* ---- drawing ---- */

/* Where the legend goes, as gnuplot's keypos and keyrows: outside at the right while it is narrow
 * (keyrows 0); below the plot, in rows of as many entries as fit across 700 pixels of plot (at 9
 * per character, SVG's font included), when its entries are many or long, so that the plot keeps
 * its width. The scripts make room for keyrows rows below. */
static void key_position(const Words *key, char *buf, size_t len) {
    if (!key || (key->n <= 12 && key->longest <= 26)) {
        snprintf(buf, len, "keypos='outside right top vertical'; keyrows=0");
        return;
    }
    int cols = 700 / (9 * key->longest + 100);
    cols = cols < 1 ? 1 : cols > key->n ? key->n : cols;
    snprintf(buf, len, "keypos='outside below center horizontal maxcols %d'; keyrows=%d", cols, (key->n + cols - 1) / cols);
}

/* text in single quotes for a POSIX shell */
static char *shell_quoted(const char *text) {
    size_t n = 2;
    for (const char *c = text; *c; c++) n += *c == '\'' ? 4 : 1;
    char *out = xmalloc(n + 1), *o = out;
    *o++ = '\'';
    for (const char *c = text; *c; c++) {
        if (*c == '\'') memcpy(o, "'\\''", 4), o += 4;
        else *o++ = *c;
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

void draw(Experiment *e, const char *script, const char *figure, const char *assignments, const Words *key) {
    char *path = xasprintf("%s/%s", e->scripts, script), keypos[128];
    key_position(key, keypos, sizeof keypos);
    for (int k = 0; k < 2; k++) {
        const char *fmt = k ? "svg" : "png";
        char *vars = xasprintf("%s; %s; out='%s/%s'; fmt='%s'; experiment='%s'", assignments, keypos, e->plots, figure,
                               fmt, e->experiment);
        if (k == 0) { /* the command, to draw the figure again by hand (after editing its script) */
            char *cmd_path = xasprintf("%s/%s.cmd", e->data, figure), *quoted = shell_quoted(vars);
            char *cmd = xasprintf("# %s.png, from the folder attnlab plot ran in (fmt='svg' for the SVG)\ngnuplot -e %s %s\n",
                                  figure, quoted, path);
            write_file_atomic(cmd_path, cmd, strlen(cmd));
            free(cmd);
            free(quoted);
            free(cmd_path);
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            execlp("gnuplot", "gnuplot", "-e", vars, path, (char *)NULL);
            fprintf(stderr, "attnlab: cannot run gnuplot (install gnuplot-nox, see make setup)\n");
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("plot: gnuplot failed on %s for %s", script, figure);
        free(vars);
    }
    free(path);
    printf("  %s/%s.png, .svg\n", e->plots, figure);
    e->drawn++;
}

/* ---- the figures along an axis (loss curves and final metrics: plot_settings.c) ---- */

static int distinct_ints(const Experiment *e, const char *task, size_t offset) {
    int values[256], n = 0;
    for (int i = 0; i < e->n; i++) {
        if (task && strcmp(e->runs[i].cfg.task, task) != 0) continue;
        int v = *(const int *)((const char *)&e->runs[i].cfg + offset);
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= values[k] == v;
        if (!seen && n < 256) values[n++] = v;
    }
    return n;
}

/* The legend of a figure whose script adds a chance line to the series' titles (chance > 0): the
 * titles and that line's, as the scripts title it, so that the legend's rows are counted in full.
 * The caller frees it. */
static Words key_with_chance(const Words *titles, double chance) {
    Words key = {titles->text ? xstrdup(titles->text) : NULL, titles->n, titles->longest};
    if (chance > 0) {
        char title[64];
        snprintf(title, sizeof title, "chance: 1/%.0f", 1 / chance);
        words_add(&key, title);
    }
    return key;
}

/* The chance accuracy of the runs of `task` when they all have the same, else 0: no line. */
static double common_chance(const Experiment *e, const char *task) {
    double chance = -1;
    for (int i = 0; i < e->n; i++) {
        if (strcmp(e->runs[i].cfg.task, task) != 0) continue;
        double c = task_chance_accuracy(&e->runs[i].cfg);
        if (chance >= 0 && c != chance) return 0;
        chance = c;
    }
    return chance > 0 ? chance : 0;
}

/* A sweep field's value in run r as a string, NULL when the run does not sweep it. */
static const char *swept_value(const PlotRun *r, const char *field) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->summary, "sweep"), field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool same_value(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static bool at_same_point(const PlotRun *a, const PlotRun *b, const char *const *axes) {
    for (; *axes; axes++)
        if (!same_value(swept_value(a, *axes), swept_value(b, *axes))) return false;
    return true;
}

/* `axes` followed by the sweep fields the axes decide (NULL-terminated, into `out`): a field
 * every two runs of `task` at the same point of the axes agree on, so that it names no series
 * of its own (Zoology's grid sets the heads by the width and the batch by the length). A field
 * counts only if some point holds two runs, else nothing says what varies beside the axes. */
static void axes_and_tied(const Experiment *e, const char *task, const char *const *axes, const char **out, int max) {
    int n = 0;
    while (axes[n] && n < max - 1) out[n] = axes[n], n++;
    out[n] = NULL; /* kept terminated: listed() reads it while it grows */
    bool shared_point = false;
    for (int i = 0; i < e->n; i++)
        for (int j = i + 1; j < e->n && !shared_point; j++)
            shared_point = strcmp(e->runs[i].cfg.task, task) == 0 && strcmp(e->runs[j].cfg.task, task) == 0 &&
                           at_same_point(&e->runs[i], &e->runs[j], axes);
    if (!shared_point) return;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(e->runs[0].summary, "sweep")) {
        if (n == max - 1 || listed(out, item->string) || strcmp(item->string, "seed") == 0) continue;
        bool tied = true;
        for (int i = 0; i < e->n && tied; i++)
            for (int j = i + 1; j < e->n && tied; j++) {
                const PlotRun *a = &e->runs[i], *b = &e->runs[j];
                if (strcmp(a->cfg.task, task) == 0 && strcmp(b->cfg.task, task) == 0 && at_same_point(a, b, axes))
                    tied = same_value(swept_value(a, item->string), swept_value(b, item->string));
            }
        if (tied) out[n++] = item->string, out[n] = NULL;
    }
}

static int cmp_label_ptr(const void *a, const void *b) { return plot_label_cmp(*(char *const *)a, *(char *const *)b); }

/* One panel per (sequence length, key-value pairs) pair, as Zoology varies them together. */
static void mqar_width(Experiment *e) {
    if (distinct_ints(e, "mqar", offsetof(Config, model.d_model)) < 2) return;
    static const char *const axes[] = {"model.d_model", "train.seq_len", "mqar.num_kv_pairs", NULL};
    const char *except[66];
    axes_and_tied(e, "mqar", axes, except, 66);
    enum { MAX_PANELS = 64 };
    Table t[MAX_PANELS] = {{0}};
    int panel_len[MAX_PANELS], panel_pairs[MAX_PANELS], n_panels = 0;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "mqar") != 0 || !plot_finished(r)) continue;
        int len = r->cfg.train.seq_len, pairs = r->cfg.mqar.num_kv_pairs, p = 0;
        while (p < n_panels && (panel_len[p] != len || panel_pairs[p] != pairs)) p++;
        if (p == MAX_PANELS) continue;
        if (p == n_panels) panel_len[n_panels] = len, panel_pairs[n_panels++] = pairs;
        char label[256];
        plot_label(r, except, label, sizeof label);
        table_add(&t[p], label, r->cfg.model.d_model, NULL, plot_metric(r, "val_accuracy"));
    }
    for (int a = 0; a < n_panels; a++) /* by length, then pairs */
        for (int b = a + 1; b < n_panels; b++)
            if (panel_len[b] < panel_len[a] || (panel_len[b] == panel_len[a] && panel_pairs[b] < panel_pairs[a])) {
                int x = panel_len[a], y = panel_pairs[a];
                Table z = t[a];
                panel_len[a] = panel_len[b], panel_pairs[a] = panel_pairs[b], t[a] = t[b];
                panel_len[b] = x, panel_pairs[b] = y, t[b] = z;
            }
    char lengths[512] = "", pairs[512] = "";
    size_t ln = 0, pn = 0;
    const char **names = NULL;
    int n_names = 0;
    for (int p = 0; p < n_panels; p++) {
        if (ln < sizeof lengths) ln += (size_t)snprintf(lengths + ln, sizeof lengths - ln, "%s%d", p ? " " : "", panel_len[p]);
        if (pn < sizeof pairs) pn += (size_t)snprintf(pairs + pn, sizeof pairs - pn, "%s%d", p ? " " : "", panel_pairs[p]);
        names = xrealloc(names, sizeof(char *) * (size_t)(n_names + t[p].n));
        for (int i = 0; i < t[p].n; i++) names[n_names++] = t[p].cells[i].label;
    }
    /* the series of every panel, each once, in order */
    qsort(names, (size_t)n_names, sizeof(char *), cmp_label_ptr);
    Words labels = {0}, files = {0}, titles = {0};
    for (int i = 0; i < n_names; i++)
        if (!i || strcmp(names[i], names[i - 1]) != 0) words_add(&labels, names[i]);
    free(names);
    if (labels.n) {
        double span = 0;
        for (int p = 0; p < n_panels; p++) { /* files mqar_T<len>_P<pairs>_<label>.dat */
            char prefix[64];
            span = fmax(span, log2_span(&t[p]));
            snprintf(prefix, sizeof prefix, "mqar_T%d_P%d_", panel_len[p], panel_pairs[p]);
            write_series(e, &t[p], prefix, &files, &titles);
        }
        double chance = common_chance(e, "mqar");
        char *vars = xasprintf("datadir='%s'; lengths='%s'; pairs='%s'; labels='%s'; chance=%.10g; xspan=%g", e->data,
                               lengths, pairs, words_text(&labels), chance, span);
        Words key = key_with_chance(&labels, chance);
        draw(e, "mqar_width.gp", "mqar_accuracy_vs_width", vars, &key);
        words_free(&key);
        free(vars);
    }
    for (int p = 0; p < n_panels; p++) free(t[p].cells);
    words_free(&labels);
    words_free(&files);
    words_free(&titles);
}

static void accuracy_vs_length(Experiment *e) {
    static const char *const tasks[] = {"mqar", "palindrome", "stack"};
    static const char *const axes[] = {"train.seq_len", "mqar.num_kv_pairs", "task", NULL}; /* one figure per task */
    for (int k = 0; k < 3; k++) {
        if (distinct_ints(e, tasks[k], offsetof(Config, train.seq_len)) < 2) continue;
        if (k == 0 && distinct_ints(e, "mqar", offsetof(Config, model.d_model)) > 1) continue; /* the width figure */
        const char *except[66];
        axes_and_tied(e, tasks[k], axes, except, 66);
        Table t = {0};
        for (int i = 0; i < e->n; i++) {
            const PlotRun *r = &e->runs[i];
            if (strcmp(r->cfg.task, tasks[k]) != 0 || !plot_finished(r)) continue;
            char label[256];
            plot_label(r, except, label, sizeof label);
            table_add(&t, label, r->cfg.train.seq_len, NULL, plot_metric(r, "val_accuracy"));
        }
        char prefix[64], figure[64];
        snprintf(prefix, sizeof prefix, "%s_length_", tasks[k]);
        snprintf(figure, sizeof figure, "%s_accuracy_vs_length", tasks[k]);
        Words files = {0}, titles = {0};
        write_series(e, &t, prefix, &files, &titles);
        if (files.n) {
            double chance = common_chance(e, tasks[k]);
            char *vars = xasprintf("files='%s'; titles='%s'; task='%s'; chance=%.10g; xspan=%g", words_text(&files),
                                   words_text(&titles), tasks[k], chance, log2_span(&t));
            Words key = key_with_chance(&titles, chance);
            draw(e, "accuracy_vs_length.gp", figure, vars, &key);
            words_free(&key);
            free(vars);
        }
        words_free(&files);
        words_free(&titles);
        free(t.cells);
    }
}

/* The first ratio from which a second panel draws the rest on its own y axis, -1 for none: the
 * first k (leaving 2 or more ratios) whose points from k on span less than a ZOOM_SPAN_FRACTION of
 * all points' span, so that the ratios before it (all-attention NoPE's perplexity, twice the
 * hybrids') do not squash the hybrids' differences into a flat line. lo[k], hi[k]: ratio k's
 * lowest and highest run. */
static const double ZOOM_SPAN_FRACTION = 0.2;

static int ratio_zoom(const double *lo, const double *hi, int n) {
    double all_lo = INFINITY, all_hi = -INFINITY;
    for (int k = 0; k < n; k++) all_lo = fmin(all_lo, lo[k]), all_hi = fmax(all_hi, hi[k]);
    for (int k = 1; k + 2 <= n; k++) {
        double from_lo = INFINITY, from_hi = -INFINITY;
        for (int j = k; j < n; j++) from_lo = fmin(from_lo, lo[j]), from_hi = fmax(from_hi, hi[j]);
        if (from_hi - from_lo < ZOOM_SPAN_FRACTION * (all_hi - all_lo)) return k;
    }
    return -1;
}

/* Perplexity at each hybrid ratio, from all attention to all linear, a line per setting (and,
 * where ratio_zoom finds ratios squashed by the ones before them, a second panel of those). */
static void ppl_vs_ratio(Experiment *e) {
    static const char *const except[] = {"model.hybrid.ratio", NULL};
    const char *ratios[64];
    int n_ratios = 0;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "lm") != 0 || !plot_finished(r) || !r->cfg.model.hybrid.ratio[0]) continue;
        int k = 0;
        while (k < n_ratios && strcmp(ratios[k], r->cfg.model.hybrid.ratio) != 0) k++;
        if (k == n_ratios && n_ratios < 64) ratios[n_ratios++] = r->cfg.model.hybrid.ratio;
    }
    if (n_ratios < 2) return;
    for (int a = 0; a < n_ratios; a++) /* by the share of linear-time layers */
        for (int b = a + 1; b < n_ratios; b++)
            if (linear_share(ratios[b]) < linear_share(ratios[a])) {
                const char *x = ratios[a];
                ratios[a] = ratios[b], ratios[b] = x;
            }
    Table t = {0};
    double lo[64], hi[64];
    for (int k = 0; k < n_ratios; k++) lo[k] = INFINITY, hi[k] = -INFINITY;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "lm") != 0 || !plot_finished(r) || !r->cfg.model.hybrid.ratio[0]) continue;
        int k = 0;
        while (k < n_ratios && strcmp(ratios[k], r->cfg.model.hybrid.ratio) != 0) k++;
        if (k == n_ratios) continue;
        char label[256];
        plot_label(r, except, label, sizeof label);
        double ppl = plot_metric(r, "val_perplexity");
        table_add(&t, label, k, ratios[k], ppl);
        if (isfinite(ppl)) lo[k] = fmin(lo[k], ppl), hi[k] = fmax(hi[k], ppl);
    }
    Words files = {0}, titles = {0}, names = {0};
    write_series(e, &t, "ppl_ratio_", &files, &titles);
    for (int k = 0; k < n_ratios; k++) words_add(&names, ratios[k]);
    if (files.n) {
        char *vars = xasprintf("files='%s'; titles='%s'; ratios='%s'; zoom=%d", words_text(&files), words_text(&titles),
                               words_text(&names), ratio_zoom(lo, hi, n_ratios));
        draw(e, "ppl_vs_ratio.gp", "perplexity_vs_ratio", vars, &titles);
        free(vars);
    }
    words_free(&files);
    words_free(&titles);
    words_free(&names);
    free(t.cells);
}

/* A final metric at 1x, 2x, 4x, ... train.seq_len (<prefix>1, <prefix>2, ...: lm's and needle's
 * length extrapolation) against the evaluation length, for runs of the given tasks that measured
 * it beyond 1x. */
typedef struct {
    const char *tasks[3];
    const char *prefix, *series, *figure, *what, *ylabel;
    double ymax;       /* a share's fixed axis top (so an all-zero share still draws); 0: gnuplot scales it */
    bool of_the_text; /* a perplexity: only runs that trained on the text (not needle answers alone) */
    /* a line per run whose share at 1x is LEARNED_ANSWER_SHARE or more, named by its seed: where
     * only some seeds leave a plateau, the mean over seeds is their share and hides how the
     * learned ones extrapolate */
    bool learned_runs;
} LengthFigure;

static const LengthFigure length_figures[] = {
    {{"lm", "needle"}, "val_perplexity_x", "ppl_length_", "perplexity_vs_length", "perplexity",
     "validation perplexity (per byte)", 0, true, false},
    {{"needle"}, "needle_accuracy_x", "needle_length_", "needle_accuracy_vs_length", "needle accuracy",
     "answers right in full (share)", 1.05, false, false},
    {{"needle"}, "needle_accuracy_x", "needle_learned_", "needle_accuracy_vs_length_learned",
     "needle accuracy", "answers right in full (share)", 1.05, false, true},
};

static bool task_in(const char *task, const char *const *tasks) {
    for (; *tasks; tasks++)
        if (strcmp(task, *tasks) == 0) return true;
    return false;
}

/* A needle run trained on the answers alone never learned the text: its perplexity is no finding. */
static bool trained_on_text(const Config *c) {
    return strcmp(c->task, "needle") != 0 || strcmp(c->needle.train_targets, "answer") != 0;
}

static void metric_vs_length(Experiment *e, const LengthFigure *fig) {
    static const char *const except[] = {NULL};
    Table t = {0};
    int train_len = 0;
    char key[48];
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        snprintf(key, sizeof key, "%s2", fig->prefix);
        if (!task_in(r->cfg.task, fig->tasks) || !plot_finished(r) || !isfinite(plot_metric(r, key))) continue;
        if (fig->of_the_text && !trained_on_text(&r->cfg)) continue;
        snprintf(key, sizeof key, "%s1", fig->prefix);
        if (fig->learned_runs && !(plot_metric(r, key) >= LEARNED_ANSWER_SHARE)) continue;
        char label[256];
        plot_label(r, except, label, sizeof label);
        if (fig->learned_runs) {
            size_t n = strlen(label);
            snprintf(label + n, sizeof label - n, ",seed=%d", r->cfg.seed);
        }
        train_len = r->cfg.train.seq_len;
        for (int f = 1; f <= 64; f *= 2) {
            snprintf(key, sizeof key, "%s%d", fig->prefix, f);
            table_add(&t, label, (double)f * r->cfg.train.seq_len, NULL, plot_metric(r, key));
        }
    }
    if (!t.n) return;
    Words files = {0}, titles = {0};
    write_series(e, &t, fig->series, &files, &titles);
    char *how = fig->learned_runs ? xasprintf("a line for each run right in full on %.0f%% or more at 1x", 100 * LEARNED_ANSWER_SHARE)
                                  : xstrdup("mean over seeds, bars: min to max");
    char *vars = xasprintf("files='%s'; titles='%s'; train_len='%d'; xspan=%g; what='%s'; ylabel='%s'; ymax=%g; how='%s'",
                           words_text(&files), words_text(&titles), train_len, log2_span(&t), fig->what, fig->ylabel,
                           fig->ymax, how);
    free(how);
    draw(e, "metric_vs_length.gp", fig->figure, vars, &titles);
    free(vars);
    words_free(&files);
    words_free(&titles);
    free(t.cells);
}

typedef struct {
    char label[256];
    const PlotRun *run;
} Labelled;

static int cmp_labelled(const void *a, const void *b) { return plot_label_cmp(((const Labelled *)a)->label, ((const Labelled *)b)->label); }

static void efficiency(Experiment *e) {
    Labelled *runs = xcalloc((size_t)e->n, sizeof(Labelled));
    int n = 0;
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->runs[i].cfg.task, "efficiency") == 0) {
            runs[n].run = &e->runs[i];
            plot_label(&e->runs[i], NULL, runs[n++].label, sizeof runs[0].label);
        }
    qsort(runs, (size_t)n, sizeof(Labelled), cmp_labelled);
    Words files = {0}, titles = {0};
    char device[32] = "cpu";
    for (int i = 0; i < n; i++) {
        const PlotRun *r = runs[i].run;
        char *csv = xasprintf("%s/efficiency.csv", r->dir);
        char *text = read_file(csv, NULL, NULL);
        free(csv);
        if (!text) continue;
        char *dp = xasprintf("%s/efficiency_%s.dat", e->data, runs[i].label);
        FILE *f = data_file(dp);
        fprintf(f, "# %s: context, decode ms per step, cache MiB per sequence, prefill ms\n", runs[i].label);
        char *line = strtok(text, "\n"); /* header */
        while ((line = strtok(NULL, "\n"))) {
            double ctx, prefill, pps, decode, dps, cache;
            if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf", &ctx, &prefill, &pps, &decode, &dps, &cache) == 6)
                fprintf(f, "%.0f %.8g %.8g %.8g\n", ctx, decode, cache / 1048576.0, prefill);
        }
        fclose(f);
        free(text);
        snprintf(device, sizeof device, "%s", r->cfg.device);
        words_add(&files, dp);
        words_add(&titles, runs[i].label);
        free(dp);
    }
    if (files.n) {
        char *vars = xasprintf("files='%s'; titles='%s'; device='%s'", words_text(&files), words_text(&titles), device);
        draw(e, "efficiency.gp", "decode_time_and_cache_vs_context", vars, &titles);
        free(vars);
    }
    words_free(&files);
    words_free(&titles);
    free(runs);
}

int plot_experiment(const char *where) {
    Experiment e = {0};
    Error err;
    /* a bare name is an experiment under results/; anything with a slash is its folder */
    e.dir = strchr(where, '/') ? xstrdup(where) : xasprintf("results/%s", where);
    size_t len = strlen(e.dir);
    while (len > 1 && e.dir[len - 1] == '/') e.dir[--len] = '\0';
    char *slash = strrchr(e.dir, '/');
    e.experiment = xstrdup(slash ? slash + 1 : e.dir);
    if (!load_runs(&e, &err) || !apply_selection(&e, &err)) die("%s", err.msg);
    e.scripts = scripts_dir();
    e.plots = xasprintf("%s/plots", e.dir);
    e.data = xasprintf("%s/data", e.plots);
    if (!mkdir_p(e.data, &err)) die("%s", err.msg);
    if (e.n_selected_from) printf("plot '%s': %d runs (chosen by selected.json from %d)\n", e.experiment, e.n, e.n_selected_from);
    else if (e.selection_pending)
        printf("plot '%s': %d run%s, all drawn (selected.json has chosen none yet: no tuning run has finished)\n",
               e.experiment, e.n, e.n == 1 ? "" : "s");
    else printf("plot '%s': %d run%s\n", e.experiment, e.n, e.n == 1 ? "" : "s");
    loss_curves(&e);
    final_metric(&e);
    mqar_width(&e);
    accuracy_vs_length(&e);
    ppl_vs_ratio(&e);
    for (size_t k = 0; k < sizeof length_figures / sizeof length_figures[0]; k++) metric_vs_length(&e, &length_figures[k]);
    efficiency(&e);
    if (!e.drawn) printf("  nothing to draw\n");
    for (int i = 0; i < e.n; i++) plot_run_free(&e.runs[i]);
    for (int i = 0; i < e.n_others; i++) plot_run_free(&e.others[i]);
    for (int k = 0; e.over[k]; k++) free(e.over[k]);
    for (int k = 0; e.constant[k]; k++) free(e.constant[k]);
    free(e.select_metric);
    free(e.runs);
    free(e.others);
    free(e.dir);
    free(e.plots);
    free(e.data);
    free(e.experiment);
    free(e.scripts);
    return 0;
}
