/* `attnlab plot EXPERIMENT`: reads every run of an experiment (summary.json, config.lua,
 * metrics.jsonl, efficiency.csv), works out which figures its results support, writes their data
 * (means and spreads over seeds) under plots/data/, and draws them with the gnuplot scripts in
 * plots/ as PNG and SVG into results/<experiment>/plots/. */
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

typedef struct {
    char *name, *dir;
    Config cfg;
    cJSON *summary;
    const char *const *hidden; /* fields left out of series names: those a selection chose */
} PlotRun;

typedef struct {
    char *dir, *plots, *data, *experiment, *scripts;
    PlotRun *runs;
    int n;
    int drawn;
    char *over[33]; /* a selection's `over` fields, NULL-terminated */
    int n_selected_from; /* runs on disk before the selection, 0 without one */
} Experiment;

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
    return true;
}

static void plot_run_free(PlotRun *r) {
    config_free(&r->cfg);
    cJSON_Delete(r->summary);
    free(r->name);
    free(r->dir);
}

/* A sweep with `select` leaves selected.json: only the runs it chose are drawn, and the fields
 * it chose over leave the series names (a series is a setting at its best value). */
static bool apply_selection(Experiment *e, Error *err) {
    char *path = xasprintf("%s/selected.json", e->dir), *text = read_file(path, NULL, NULL);
    bool ok = true;
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *over = cJSON_GetObjectItemCaseSensitive(o, "over"), *runs = cJSON_GetObjectItemCaseSensitive(o, "runs"), *v;
    if (text && (!cJSON_IsArray(over) || !cJSON_IsArray(runs) || cJSON_GetArraySize(over) > 32))
        ok = error_set(err, "%s: not a selection written by attnlab run (expected the lists 'over' and 'runs')", path);
    if (ok && text) {
        int n_over = 0;
        cJSON_ArrayForEach(v, over) if (cJSON_IsString(v)) e->over[n_over++] = xstrdup(v->valuestring);
        e->n_selected_from = e->n;
        int kept = 0;
        for (int i = 0; i < e->n; i++) {
            bool chosen = false;
            cJSON_ArrayForEach(v, runs) chosen |= cJSON_IsString(v) && strcmp(v->valuestring, e->runs[i].name) == 0;
            if (!chosen) {
                plot_run_free(&e->runs[i]);
                continue;
            }
            e->runs[kept] = e->runs[i];
            e->runs[kept++].hidden = (const char *const *)e->over;
        }
        e->n = kept;
    }
    cJSON_Delete(o);
    free(text);
    free(path);
    return ok;
}

static double metric(const PlotRun *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->summary, key);
    if (!cJSON_IsNumber(v)) v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->summary, "metrics"), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static bool finished(const PlotRun *r) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r->summary, "status");
    return cJSON_IsString(s) && strcmp(s->valuestring, "finished") == 0;
}

/* A run's series name: the fields its sweep set, except the seed and those in `except` (the
 * figure's axes), with characters gnuplot's word lists and file names cannot take replaced. */
static void label_of(const PlotRun *r, const char *const *except, char *buf, size_t len) {
    const cJSON *sweep = cJSON_GetObjectItemCaseSensitive(r->summary, "sweep"), *item;
    size_t n = 0;
    buf[0] = '\0';
    cJSON_ArrayForEach(item, sweep) {
        bool skip = strcmp(item->string, "seed") == 0;
        for (const char *const *x = except; x && *x; x++) skip |= strcmp(*x, item->string) == 0;
        for (const char *const *x = r->hidden; x && *x; x++) skip |= strcmp(*x, item->string) == 0;
        if (skip || !cJSON_IsString(item) || n >= len) continue;
        const char *key = strrchr(item->string, '.') ? strrchr(item->string, '.') + 1 : item->string;
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? "," : "", key, item->valuestring);
    }
    /* a run that sets nothing of its own: measurement runs by name, trained ones are "all" */
    if (!buf[0]) snprintf(buf, len, "%s", task_lookup(r->cfg.task)->measure ? r->name : "all");
    for (char *c = buf; *c; c++)
        if (*c == ' ' || *c == '\'' || *c == '"' || *c == '/') *c = '_';
}

/* ---- aggregation: the mean and spread (sample standard deviation) of y per (label, x) ---- */

typedef struct {
    char label[256];
    double x, sum, sum2;
    int n;
    char xtext[64];
} Cell;

typedef struct {
    Cell *cells;
    int n, cap;
} Table;

static void table_add(Table *t, const char *label, double x, const char *xtext, double y) {
    if (!isfinite(y)) return;
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->cells[i].label, label) == 0 && t->cells[i].x == x) {
            t->cells[i].sum += y;
            t->cells[i].sum2 += y * y;
            t->cells[i].n++;
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
    c->sum = y;
    c->sum2 = y * y;
    c->n = 1;
}

static double cell_mean(const Cell *c) { return c->sum / c->n; }
static double cell_spread(const Cell *c) {
    if (c->n < 2) return 0;
    double m = cell_mean(c), v = (c->sum2 - c->n * m * m) / (c->n - 1);
    return v > 0 ? sqrt(v) : 0;
}

static int cmp_cell(const void *a, const void *b) {
    const Cell *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    return c ? c : (x->x > y->x) - (x->x < y->x);
}

/* Distinct labels of a table, in order, as a space-separated list. */
static char *labels_of(Table *t) {
    qsort(t->cells, (size_t)t->n, sizeof(Cell), cmp_cell);
    char *out = xstrdup("");
    for (int i = 0; i < t->n; i++) {
        if (i && strcmp(t->cells[i].label, t->cells[i - 1].label) == 0) continue;
        char *next = xasprintf("%s%s%s", out, out[0] ? " " : "", t->cells[i].label);
        free(out);
        out = next;
    }
    return out;
}

/* One data file per label: "x mean spread", named <prefix><label>.dat; returns the file list. */
static char *write_series(const Experiment *e, Table *t, const char *prefix) {
    char *files = xstrdup("");
    qsort(t->cells, (size_t)t->n, sizeof(Cell), cmp_cell);
    for (int i = 0; i < t->n;) {
        char *path = xasprintf("%s/%s%s.dat", e->data, prefix, t->cells[i].label);
        FILE *f = fopen(path, "w");
        if (!f) die("cannot write '%s'", path);
        int j = i;
        for (; j < t->n && strcmp(t->cells[j].label, t->cells[i].label) == 0; j++)
            fprintf(f, "%.10g %.10g %.10g\n", t->cells[j].x, cell_mean(&t->cells[j]), cell_spread(&t->cells[j]));
        fclose(f);
        char *next = xasprintf("%s%s%s", files, files[0] ? " " : "", path);
        free(files);
        files = next;
        free(path);
        i = j;
    }
    return files;
}

/* Runs one gnuplot script for PNG and SVG with the given "name='value'" assignments. */
static void draw(Experiment *e, const char *script, const char *figure, const char *assignments) {
    for (int k = 0; k < 2; k++) {
        const char *fmt = k ? "svg" : "png";
        char *vars = xasprintf("%s; out='%s/%s'; fmt='%s'; experiment='%s'", assignments, e->plots, figure, fmt,
                               e->experiment);
        char *path = xasprintf("%s/%s", e->scripts, script);
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
        free(path);
    }
    printf("  %s/%s.png, .svg\n", e->plots, figure);
    e->drawn++;
}

/* ---- the figures ---- */

static void loss_curves(Experiment *e) {
    char *files = xstrdup(""), *titles = xstrdup("");
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        char *mp = xasprintf("%s/metrics.jsonl", e->runs[i].dir);
        char *text = read_file(mp, NULL, NULL);
        free(mp);
        if (!text) continue;
        char *dp = xasprintf("%s/loss_%s.dat", e->data, e->runs[i].name);
        FILE *f = fopen(dp, "w");
        if (!f) die("cannot write '%s'", dp);
        int rows = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step"), *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
            if (cJSON_IsNumber(s) && cJSON_IsNumber(l)) {
                fprintf(f, "%d %.8g\n", (int)s->valuedouble, l->valuedouble);
                rows++;
            }
            cJSON_Delete(o);
        }
        fclose(f);
        free(text);
        if (rows) {
            char label[256];
            snprintf(label, sizeof label, "%s", e->runs[i].name);
            for (char *c = label; *c; c++)
                if (*c == ' ' || *c == '\'') *c = '_';
            char *nf = xasprintf("%s%s%s", files, n ? " " : "", dp), *nt = xasprintf("%s%s%s", titles, n ? " " : "", label);
            free(files);
            free(titles);
            files = nf;
            titles = nt;
            n++;
        }
        free(dp);
    }
    if (n) {
        char *vars = xasprintf("files='%s'; titles='%s'", files, titles);
        draw(e, "loss_curves.gp", "loss_curves", vars);
        free(vars);
    }
    free(files);
    free(titles);
}

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

/* One panel per (sequence length, key-value pairs) pair, as Zoology varies them together. */
static void mqar_width(Experiment *e) {
    if (distinct_ints(e, "mqar", offsetof(Config, model.d_model)) < 2) return;
    static const char *const except[] = {"model.d_model", "train.seq_len", "mqar.num_kv_pairs", NULL};
    Table t = {0};
    int panel_len[64], panel_pairs[64], n_panels = 0;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "mqar") != 0 || !finished(r)) continue;
        int len = r->cfg.train.seq_len, pairs = r->cfg.mqar.num_kv_pairs;
        char label[256], full[300];
        label_of(r, except, label, sizeof label);
        snprintf(full, sizeof full, "T%d_P%d_%s", len, pairs, label);
        table_add(&t, full, r->cfg.model.d_model, NULL, metric(r, "val_accuracy"));
        bool seen = false;
        for (int k = 0; k < n_panels; k++) seen |= panel_len[k] == len && panel_pairs[k] == pairs;
        if (!seen && n_panels < 64) {
            panel_len[n_panels] = len;
            panel_pairs[n_panels++] = pairs;
        }
    }
    for (int a = 0; a < n_panels; a++) /* by length, then pairs */
        for (int b = a + 1; b < n_panels; b++)
            if (panel_len[b] < panel_len[a] || (panel_len[b] == panel_len[a] && panel_pairs[b] < panel_pairs[a])) {
                int x = panel_len[a], y = panel_pairs[a];
                panel_len[a] = panel_len[b], panel_pairs[a] = panel_pairs[b];
                panel_len[b] = x, panel_pairs[b] = y;
            }
    char lengths[512] = "", pairs[512] = "";
    size_t ln = 0, pn = 0;
    for (int k = 0; k < n_panels && ln < sizeof lengths && pn < sizeof pairs; k++) {
        ln += (size_t)snprintf(lengths + ln, sizeof lengths - ln, "%s%d", k ? " " : "", panel_len[k]);
        pn += (size_t)snprintf(pairs + pn, sizeof pairs - pn, "%s%d", k ? " " : "", panel_pairs[k]);
    }
    char *files = write_series(e, &t, "mqar_"); /* files mqar_T<len>_P<pairs>_<label>.dat */
    /* the mixer labels without the panel prefix */
    char *labels = xstrdup("");
    for (int i = 0; i < t.n; i++) {
        const char *l = strchr(strchr(t.cells[i].label, '_') + 1, '_') + 1;
        char needle[300];
        snprintf(needle, sizeof needle, " %s ", l);
        char *hay = xasprintf(" %s ", labels);
        if (!strstr(hay, needle)) {
            char *nl = xasprintf("%s%s%s", labels, labels[0] ? " " : "", l);
            free(labels);
            labels = nl;
        }
        free(hay);
    }
    char *vars = xasprintf("datadir='%s'; lengths='%s'; pairs='%s'; labels='%s'", e->data, lengths, pairs, labels);
    draw(e, "mqar_width.gp", "mqar_accuracy_vs_width", vars);
    free(vars);
    free(labels);
    free(files);
    free(t.cells);
}

static void accuracy_vs_length(Experiment *e) {
    static const char *const tasks[] = {"mqar", "palindrome", "stack"};
    static const char *const except[] = {"train.seq_len", "mqar.num_kv_pairs", "task", NULL}; /* one figure per task */
    for (int k = 0; k < 3; k++) {
        if (distinct_ints(e, tasks[k], offsetof(Config, train.seq_len)) < 2) continue;
        if (k == 0 && distinct_ints(e, "mqar", offsetof(Config, model.d_model)) > 1) continue; /* the width figure */
        Table t = {0};
        for (int i = 0; i < e->n; i++) {
            const PlotRun *r = &e->runs[i];
            if (strcmp(r->cfg.task, tasks[k]) != 0 || !finished(r)) continue;
            char label[256];
            label_of(r, except, label, sizeof label);
            table_add(&t, label, r->cfg.train.seq_len, NULL, metric(r, "val_accuracy"));
        }
        char prefix[64], figure[64];
        snprintf(prefix, sizeof prefix, "%s_length_", tasks[k]);
        snprintf(figure, sizeof figure, "%s_accuracy_vs_length", tasks[k]);
        char *labels = labels_of(&t), *files = write_series(e, &t, prefix);
        char *vars = xasprintf("files='%s'; titles='%s'; task='%s'", files, labels, tasks[k]);
        draw(e, "accuracy_vs_length.gp", figure, vars);
        free(vars);
        free(labels);
        free(files);
        free(t.cells);
    }
}

/* The fraction of linear-time layers of "L:F", to order ratios from all attention to all linear. */
static double linear_share(const char *ratio) {
    int l = 0, f = 0;
    if (sscanf(ratio, "%d:%d", &l, &f) != 2 || l + f == 0) return -1;
    return (double)l / (l + f);
}

static void ppl_vs_ratio(Experiment *e) {
    Table t = {0};
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "lm") != 0 || !finished(r) || !r->cfg.model.hybrid.ratio[0]) continue;
        table_add(&t, "ratio", linear_share(r->cfg.model.hybrid.ratio), r->cfg.model.hybrid.ratio,
                  metric(r, "val_perplexity"));
    }
    if (t.n < 2) {
        free(t.cells);
        return;
    }
    qsort(t.cells, (size_t)t.n, sizeof(Cell), cmp_cell);
    char *path = xasprintf("%s/ppl_vs_ratio.dat", e->data);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write '%s'", path);
    for (int i = 0; i < t.n; i++)
        fprintf(f, "%d %s %.10g %.10g\n", i, t.cells[i].xtext, cell_mean(&t.cells[i]), cell_spread(&t.cells[i]));
    fclose(f);
    char *vars = xasprintf("file='%s'", path);
    draw(e, "ppl_vs_ratio.gp", "perplexity_vs_ratio", vars);
    free(vars);
    free(path);
    free(t.cells);
}

static void ppl_vs_length(Experiment *e) {
    static const char *const except[] = {NULL};
    Table t = {0};
    int train_len = 0;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "lm") != 0 || !finished(r) || !isfinite(metric(r, "val_perplexity_x2"))) continue;
        char label[256];
        label_of(r, except, label, sizeof label);
        train_len = r->cfg.train.seq_len;
        for (int f = 1; f <= 64; f *= 2) {
            char key[48];
            snprintf(key, sizeof key, "val_perplexity_x%d", f);
            table_add(&t, label, (double)f * r->cfg.train.seq_len, NULL, metric(r, key));
        }
    }
    if (!t.n) return;
    char *labels = labels_of(&t), *files = write_series(e, &t, "ppl_length_");
    char *vars = xasprintf("files='%s'; titles='%s'; train_len='%d'", files, labels, train_len);
    draw(e, "ppl_vs_length.gp", "perplexity_vs_length", vars);
    free(vars);
    free(labels);
    free(files);
    free(t.cells);
}

static void efficiency(Experiment *e) {
    char *files = xstrdup(""), *titles = xstrdup(""), device[32] = "cpu";
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        const PlotRun *r = &e->runs[i];
        if (strcmp(r->cfg.task, "efficiency") != 0) continue;
        char *csv = xasprintf("%s/efficiency.csv", r->dir);
        char *text = read_file(csv, NULL, NULL);
        free(csv);
        if (!text) continue;
        char label[256];
        label_of(r, NULL, label, sizeof label);
        char *dp = xasprintf("%s/efficiency_%s.dat", e->data, label);
        FILE *f = fopen(dp, "w");
        if (!f) die("cannot write '%s'", dp);
        char *line = strtok(text, "\n"); /* header */
        while ((line = strtok(NULL, "\n"))) {
            double ctx, prefill, pps, decode, dps, cache;
            if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf", &ctx, &prefill, &pps, &decode, &dps, &cache) == 6)
                fprintf(f, "%.0f %.8g %.8g %.8g\n", ctx, decode, cache / 1048576.0, prefill);
        }
        fclose(f);
        free(text);
        snprintf(device, sizeof device, "%s", r->cfg.device);
        char *nf = xasprintf("%s%s%s", files, n ? " " : "", dp), *nt = xasprintf("%s%s%s", titles, n ? " " : "", label);
        free(files);
        free(titles);
        files = nf;
        titles = nt;
        free(dp);
        n++;
    }
    if (n) {
        char *vars = xasprintf("files='%s'; titles='%s'; device='%s'", files, titles, device);
        draw(e, "efficiency.gp", "decode_time_and_cache_vs_context", vars);
        free(vars);
    }
    free(files);
    free(titles);
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
    else printf("plot '%s': %d runs\n", e.experiment, e.n);
    loss_curves(&e);
    mqar_width(&e);
    accuracy_vs_length(&e);
    ppl_vs_ratio(&e);
    ppl_vs_length(&e);
    efficiency(&e);
    if (!e.drawn) printf("  nothing to draw\n");
    for (int i = 0; i < e.n; i++) plot_run_free(&e.runs[i]);
    for (int k = 0; e.over[k]; k++) free(e.over[k]);
    free(e.runs);
    free(e.dir);
    free(e.plots);
    free(e.data);
    free(e.experiment);
    free(e.scripts);
    return 0;
}
