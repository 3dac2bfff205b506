/* A sweep's `select` (Zoology's protocol: each point of a comparison is the best of a
 * learning-rate sweep):
 *
 *   select = { metric = "val_accuracy", goal = "max", over = { "train.lr" } }
 *
 * - A setting is the set of runs that agree on every field the sweep sets except the `over`
 *   fields and `seed`. Within a setting, each value of the `over` fields is a candidate.
 * - A candidate's score is the mean of the metric over its runs that finished with a value (one
 *   per seed; a finished run without one counts as failed). A candidate all of whose runs
 *   finished ranks ahead of every candidate with a failed or unfinished run: those are ranked, by
 *   the runs that finished, only when no candidate of the setting is complete, and the row says
 *   so. Among complete candidates, one whose runs all learned their task ranks ahead of one with
 *   a run that did not ("learned": false in summary.json: accuracy near chance, loss on its first
 *   plateau), and the row says when the chosen one has such runs: noise is never ranked silently.
 *   The best score wins (goal max or min); a tie goes to the candidate the sweep runs first.
 * - Runs of another config kept by --keep-changed count, and the row says so.
 * - Each setting gets a row: the chosen value, the mean, min and max over the chosen candidate's
 *   seeds, how many of its seeds finished, how many candidates were tried, how many runs failed,
 *   a note, and the chosen runs; no numbers when no run of the setting finished.
 * Written to selected.csv (a row per setting), a section of summary.md, and selected.json (the
 * chosen runs and the `over` fields, which `attnlab plot` reads to draw only those runs).
 *
 * `tune_seeds = { 1 }` tunes on some seeds and reports all (the protocol that halves a grid's cost
 * when one seed tells the rates apart): candidates are scored by their runs of those seeds alone,
 * and a run of another seed is wanted only once every tuning run of its setting is done (finished
 * or failed), and then only if it belongs to the chosen candidate. The others are "not chosen":
 * never trained, left out of the counts and notes. The row's mean, min-max and seeds stay the
 * chosen candidate's over all its seeds. */
#include "sweep_select.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reading and checking ---- */

/* The field `key` of the table at idx, pushed without metamethods; returns its type. */
static int raw_field(lua_State *L, int idx, const char *key) {
    lua_pushstring(L, key);
    return lua_rawget(L, idx);
}

static const char *const SELECT_USAGE = "{ metric = \"val_accuracy\", goal = \"max\", over = { \"train.lr\" } }";

static bool parse_tune_seeds(SweepSelect *sel, lua_State *L, int idx, const char *path, Error *err) {
    if (lua_type(L, idx) == LUA_TNIL) return true;
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) == 0)
        return error_set(err, "%s: field 'select.tune_seeds': expected a non-empty list of seeds, e.g. { 1 }, got %s", path,
                         lua_type(L, idx) == LUA_TTABLE ? "an empty list" : luaL_typename(L, idx));
    int n = (int)lua_rawlen(L, idx);
    if (n > SWEEP_MAX_OVERRIDES)
        return error_set(err, "%s: field 'select.tune_seeds': %d seeds, at most %d", path, n, SWEEP_MAX_OVERRIDES);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int is_int = 0;
        lua_Integer v = lua_tointegerx(L, -1, &is_int);
        bool number = lua_type(L, -1) == LUA_TNUMBER;
        char got[64];
        snprintf(got, sizeof got, "%s", number ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
        if (!number || !is_int || v < 0 || v > 2147483647)
            return error_set(err, "%s: field 'select.tune_seeds': item %d: expected a seed (an integer from 0), got %s", path,
                             i, got);
        for (int k = 0; k < sel->n_tune_seeds; k++)
            if (sel->tune_seeds[k] == (int)v)
                return error_set(err, "%s: field 'select.tune_seeds': seed %d is listed twice", path, (int)v);
        sel->tune_seeds[sel->n_tune_seeds++] = (int)v;
    }
    return true;
}

static bool parse_over(SweepSelect *sel, lua_State *L, int idx, const char *path, Error *err) {
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) == 0)
        return error_set(err, "%s: field 'select.over': expected a non-empty list of fields, e.g. { \"train.lr\" }, got %s",
                         path, lua_type(L, idx) == LUA_TTABLE ? "an empty list" : luaL_typename(L, idx));
    int n = (int)lua_rawlen(L, idx);
    if (n > SWEEP_MAX_OVERRIDES)
        return error_set(err, "%s: field 'select.over': %d fields, at most %d", path, n, SWEEP_MAX_OVERRIDES);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        bool is_string = lua_type(L, -1) == LUA_TSTRING;
        char field[128];
        snprintf(field, sizeof field, "%s", is_string ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
        Error e2;
        if (!is_string)
            return error_set(err, "%s: field 'select.over': item %d: expected a field path, got %s", path, i, field);
        if (strcmp(field, "seed") == 0)
            return error_set(err, "%s: field 'select.over': 'seed' cannot be chosen: a candidate's seeds are averaged", path);
        if (config_is_section(field))
            return error_set(err, "%s: field 'select.over': '%s' is a section; name one of its fields", path, field);
        if (!config_find_field(field))
            return error_set(err, "%s (in select.over)", (config_unknown_field(field, path, &e2), e2.msg));
        for (int k = 0; k < sel->n_over; k++)
            if (strcmp(sel->over[k], field) == 0)
                return error_set(err, "%s: field 'select.over': '%s' is listed twice", path, field);
        sel->over[sel->n_over++] = xstrdup(field);
    }
    return true;
}

bool select_parse(SweepSelect *sel, lua_State *L, int idx, const char *path, Error *err) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        return error_set(err, "%s: 'select' must be a table %s, got %s", path, SELECT_USAGE, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a name)";
        if (strcmp(key, "metric") != 0 && strcmp(key, "goal") != 0 && strcmp(key, "over") != 0 &&
            strcmp(key, "tune_seeds") != 0) {
            error_set(err, "%s: unknown key '%s' in select (expected metric, goal, over, tune_seeds)", path, key);
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    bool ok = true;
    if (raw_field(L, idx, "metric") != LUA_TSTRING)
        ok = error_set(err, "%s: field 'select.metric': expected the name of a metric, e.g. \"val_accuracy\", got %s", path,
                       luaL_typename(L, -1));
    else sel->metric = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!ok) return false;
    const char *goal = raw_field(L, idx, "goal") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!goal || (strcmp(goal, "max") != 0 && strcmp(goal, "min") != 0)) {
        if (goal) ok = error_set(err, "%s: field 'select.goal': expected \"max\" or \"min\", got '%s'", path, goal);
        else ok = error_set(err, "%s: field 'select.goal': expected \"max\" or \"min\", got %s", path, luaL_typename(L, -1));
    } else {
        sel->maximize = strcmp(goal, "max") == 0;
    }
    lua_pop(L, 1);
    if (!ok) return false;
    raw_field(L, idx, "over");
    ok = parse_over(sel, L, -1, path, err);
    lua_pop(L, 1);
    if (!ok) return false;
    raw_field(L, idx, "tune_seeds");
    ok = parse_tune_seeds(sel, L, -1, path, err);
    lua_pop(L, 1);
    return ok;
}

/* The value of a field in a run, as text. */
static void value_of(const SweepRun *r, const char *field, char *buf, size_t len) {
    config_field_text(&r->cfg, config_find_field(field), buf, len);
}

bool select_check_over(const Sweep *sw, Error *err) {
    for (int k = 0; k < sw->select.n_over; k++) {
        const char *field = sw->select.over[k];
        bool set = false, varies = false;
        char first[256], v[256];
        value_of(&sw->runs[0], field, first, sizeof first);
        for (int i = 0; i < sw->n_runs; i++) {
            for (int j = 0; j < sw->runs[i].n_overrides; j++) set |= strcmp(sw->runs[i].paths[j], field) == 0;
            value_of(&sw->runs[i], field, v, sizeof v);
            varies |= strcmp(v, first) != 0;
        }
        if (!set)
            return error_set(err, "%s: field 'select.over': '%s' is not set by the grid or runs: nothing to choose between",
                             sw->source, field);
        if (!varies)
            return error_set(err, "%s: field 'select.over': '%s' is %s in every run: nothing to choose between", sw->source,
                             field, first);
    }
    for (int k = 0; k < sw->select.n_tune_seeds; k++) {
        bool used = false;
        char seeds[256] = "";
        size_t n = 0;
        for (int i = 0; i < sw->n_runs; i++) {
            int seed = sw->runs[i].cfg.seed;
            used |= seed == sw->select.tune_seeds[k];
            bool listed = false;
            for (int j = 0; j < i; j++) listed |= sw->runs[j].cfg.seed == seed;
            if (!listed && n < sizeof seeds) n += (size_t)snprintf(seeds + n, sizeof seeds - n, "%s%d", n ? ", " : "", seed);
        }
        if (!used)
            return error_set(err, "%s: field 'select.tune_seeds': seed %d is not the seed of any run (the runs' seeds: %s)",
                             sw->source, sw->select.tune_seeds[k], seeds);
    }
    return true;
}

/* The metrics a training run's summary.json can hold; bits per byte only for byte tokens. */
static const char *const STANDARD_METRICS[] = {"train_loss", "val_loss", "val_perplexity", "val_accuracy",
                                               "val_bits_per_byte"};
enum { N_STANDARD_METRICS = sizeof STANDARD_METRICS / sizeof STANDARD_METRICS[0] };

/* The metrics a run's summary.json holds a value for: the standard ones and the task's own. An
 * measuring run (t NULL) has none to select by. */
static int run_metrics(const Config *c, const Task *t, char names[][48], int max) {
    if (!t) return 0;
    int n = 0;
    for (int i = 0; i < N_STANDARD_METRICS && n < max; i++) snprintf(names[n++], 48, "%s", STANDARD_METRICS[i]);
    if (t->ops->metric_names) n += t->ops->metric_names(t, c, names + n, max - n);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (t->byte_tokens || !strstr(names[i], "bits_per_byte")) memmove(names[kept++], names[i], 48);
    return kept;
}

void select_note_run(MetricCheck *mc, const SweepSelect *sel, int run, const Config *c, const Task *t) {
    char names[64][48];
    int n = run_metrics(c, t, names, 64);
    bool reports = false;
    for (int i = 0; i < n; i++) {
        reports |= strcmp(names[i], sel->metric) == 0;
        bool seen = false;
        for (int k = 0; k < mc->n_known; k++) seen |= strcmp(mc->known[k], names[i]) == 0;
        if (!seen && mc->n_known < 64) memcpy(mc->known[mc->n_known++], names[i], 48);
    }
    if (!reports && mc->lacking < 0) mc->lacking = run;
}

bool select_check_metric(const MetricCheck *mc, const Sweep *sw, Error *err) {
    const char *metric = sw->select.metric;
    bool known = false;
    for (int i = 0; i < N_STANDARD_METRICS; i++) known |= strcmp(STANDARD_METRICS[i], metric) == 0;
    const char *nearest = NULL;
    int best = 1 << 30;
    char list[1024] = "";
    size_t n = 0;
    for (int k = 0; k < mc->n_known; k++) {
        known |= strcmp(mc->known[k], metric) == 0;
        /* a near spelling, or the start of a name (val_acc) */
        int d = strncmp(mc->known[k], metric, strlen(metric)) == 0 ? 0 : edit_distance(metric, mc->known[k]);
        if (d < best) best = d, nearest = mc->known[k];
        if (n < sizeof list) n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", k ? ", " : "", mc->known[k]);
    }
    if (!known && nearest && best <= max_int(2, (int)strlen(metric) / 3))
        return error_set(err, "%s: field 'select.metric': unknown metric '%s' (did you mean '%s'? the runs report %s)",
                         sw->source, metric, nearest, list);
    if (!known)
        return error_set(err, "%s: field 'select.metric': unknown metric '%s' (the runs report %s)", sw->source, metric,
                         mc->n_known ? list : "none: their tasks measure time and memory");
    if (mc->lacking >= 0) {
        const SweepRun *r = &sw->runs[mc->lacking];
        const char *why = task_lookup(r->cfg.task)->measure ? ": its task measures time and memory"
                          : strstr(metric, "bits_per_byte")     ? ": its tokens are not bytes of text"
                                                                : "";
        return error_set(err, "%s: field 'select.metric': run '%s' (task %s) does not report '%s'%s", sw->source, r->name,
                         r->cfg.task, metric, why);
    }
    return true;
}

void select_free(SweepSelect *sel) {
    free(sel->metric);
    for (int k = 0; k < sel->n_over; k++) free(sel->over[k]);
    memset(sel, 0, sizeof *sel);
}

/* ---- choosing ---- */

typedef enum { RUN_COUNTED, RUN_FAILED, RUN_NOT_DONE } RunState;

typedef struct {
    int index;
    char *setting, *value; /* the setting's and the `over` fields' values, joined */
} Keyed;

static int cmp_keyed(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    int c = strcmp(x->setting, y->setting);
    if (!c) c = strcmp(x->value, y->value);
    return c ? c : x->index - y->index;
}

static bool is_over(const SweepSelect *sel, const char *field) {
    for (int k = 0; k < sel->n_over; k++)
        if (strcmp(sel->over[k], field) == 0) return true;
    return false;
}

/* The values of `fields` in run r, each ended by the unit separator (0x1f), which names and
 * numbers never hold. */
static char *joined_values(const SweepRun *r, const char *const *fields, int n) {
    char *out = xstrdup(""), v[256];
    for (int k = 0; k < n; k++) {
        value_of(r, fields[k], v, sizeof v);
        char *next = xasprintf("%s%s\x1f", out, v);
        free(out);
        out = next;
    }
    return out;
}

static double metric_value(const cJSON *summary, const char *metric) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(summary, metric);
    if (!cJSON_IsNumber(v)) v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(summary, "metrics"), metric);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static RunState run_state(const cJSON *summary, double value) {
    const char *status = summary ? sweep_json_string(summary, "status") : NULL;
    if (status && strcmp(status, "finished") == 0) return isfinite(value) ? RUN_COUNTED : RUN_FAILED;
    if (status && strcmp(status, "failed") == 0) return RUN_FAILED;
    return RUN_NOT_DONE;
}

/* A candidate's runs as they count for choosing (the tuning seeds') or for reporting (all). */
typedef struct {
    int n, counted;
    int not_learned, stale; /* among the counted runs */
    double sum, lo, hi;
} Tally;

typedef struct {
    int first;       /* its first run in sweep order */
    Tally all, tune; /* without tune_seeds the two are the same */
} Candidate;

typedef struct {
    int first;
    int cand_begin, cand_end; /* its candidates, [begin, end) in `cands` */
    int n, failed, not_done;  /* over the runs that are or may be trained (not the not-chosen ones) */
    int tune_not_done;        /* tuning runs not finished or failed yet: the choice may still change */
    int chosen;               /* index into cands, or -1 */
} Setting;

/* Every run's candidate and setting, and each setting's choice. */
typedef struct {
    Candidate *cands;
    Setting *settings;
    int n_cands, n_settings;
    int *cand_of, *setting_of, *by_first; /* by run; by_first: candidates in sweep order */
    RunNeed *need;                        /* by run */
    const char **setting_fields;          /* every swept field but the `over` ones and the seed */
    int n_setting;
} Selection;

static bool is_tune_seed(const SweepSelect *sel, int seed) {
    for (int k = 0; k < sel->n_tune_seeds; k++)
        if (sel->tune_seeds[k] == seed) return true;
    return sel->n_tune_seeds == 0;
}

static void tally_add(Tally *t, RunState st, double v, bool not_learned, bool stale) {
    t->n++;
    if (st != RUN_COUNTED) return;
    t->counted++;
    t->not_learned += not_learned;
    t->stale += stale;
    t->sum += v;
    t->lo = fmin(t->lo, v);
    t->hi = fmax(t->hi, v);
}

/* A candidate all of whose tuning runs finished and learned ranks ahead of one all of whose
 * tuning runs finished, which ranks ahead of one with failed or unfinished runs. */
static int choose(const SweepSelect *sel, const Candidate *cands, const Setting *s, const int *by_first) {
    for (int pass = 0; pass < 3; pass++) {
        int best = -1;
        for (int j = s->cand_begin; j < s->cand_end; j++) {
            const Tally *t = &cands[by_first[j]].tune;
            if (!t->counted || (pass < 2 && t->counted < t->n) || (pass == 0 && t->not_learned)) continue;
            double mean = t->sum / t->counted, best_mean = best < 0 ? 0 : cands[best].tune.sum / cands[best].tune.counted;
            if (best < 0 || (sel->maximize ? mean > best_mean : mean < best_mean)) best = by_first[j];
        }
        if (best >= 0) return best;
    }
    return -1;
}

/* A run of a tuning seed is wanted; another waits until its setting's tuning runs are done, and
 * is then wanted only in the chosen candidate. */
static RunNeed run_need(const Sweep *sw, const Selection *x, int i) {
    if (is_tune_seed(&sw->select, sw->runs[i].cfg.seed)) return RUN_WANTED;
    const Setting *s = &x->settings[x->setting_of[i]];
    if (s->tune_not_done) return RUN_WAITING;
    return s->chosen >= 0 && x->cand_of[i] == s->chosen ? RUN_WANTED : RUN_NOT_CHOSEN;
}

static void selection_build(Selection *x, const Sweep *sw, cJSON *const *sums, const char *const *fields, int n_fields) {
    const SweepSelect *sel = &sw->select;
    int n = sw->n_runs;
    memset(x, 0, sizeof *x);
    x->setting_fields = xcalloc((size_t)n_fields + 1, sizeof(char *));
    for (int k = 0; k < n_fields; k++)
        if (!is_over(sel, fields[k]) && strcmp(fields[k], "seed") != 0) x->setting_fields[x->n_setting++] = fields[k];
    /* group the runs: sorted by (setting, value, position in the sweep) */
    Keyed *keyed = xcalloc((size_t)n + 1, sizeof(Keyed));
    for (int i = 0; i < n; i++) {
        keyed[i].index = i;
        keyed[i].setting = joined_values(&sw->runs[i], x->setting_fields, x->n_setting);
        keyed[i].value = joined_values(&sw->runs[i], (const char *const *)sel->over, sel->n_over);
    }
    qsort(keyed, (size_t)n, sizeof(Keyed), cmp_keyed);
    x->cands = xcalloc((size_t)n + 1, sizeof(Candidate));
    x->settings = xcalloc((size_t)n + 1, sizeof(Setting));
    x->cand_of = xcalloc((size_t)n + 1, sizeof(int));
    x->setting_of = xcalloc((size_t)n + 1, sizeof(int));
    x->by_first = xcalloc((size_t)n + 1, sizeof(int));
    x->need = xcalloc((size_t)n + 1, sizeof(RunNeed));
    RunState *state = xcalloc((size_t)n + 1, sizeof(RunState));
    for (int j = 0; j < n; j++) {
        const Keyed *k = &keyed[j];
        bool new_setting = j == 0 || strcmp(k->setting, keyed[j - 1].setting) != 0;
        if (new_setting || strcmp(k->value, keyed[j - 1].value) != 0) { /* the first of a group has its lowest index */
            if (new_setting) x->settings[x->n_settings++] = (Setting){.first = k->index, .cand_begin = x->n_cands, .chosen = -1};
            Tally empty = {.lo = INFINITY, .hi = -INFINITY};
            x->cands[x->n_cands++] = (Candidate){.first = k->index, .all = empty, .tune = empty};
            x->settings[x->n_settings - 1].cand_end = x->n_cands;
        }
        int i = k->index;
        Candidate *c = &x->cands[x->n_cands - 1];
        Setting *s = &x->settings[x->n_settings - 1];
        x->cand_of[i] = x->n_cands - 1;
        x->setting_of[i] = x->n_settings - 1;
        double v = sums[i] ? metric_value(sums[i], sel->metric) : NAN;
        state[i] = run_state(sums[i], v);
        bool not_learned = state[i] == RUN_COUNTED && sweep_not_learned(sums[i]), stale = sw->runs[i].stale != NULL;
        tally_add(&c->all, state[i], v, not_learned, stale);
        if (is_tune_seed(sel, sw->runs[i].cfg.seed)) {
            tally_add(&c->tune, state[i], v, not_learned, stale);
            s->tune_not_done += state[i] == RUN_NOT_DONE;
        }
    }
    /* within a setting, candidates in sweep order (ties go to the first) */
    for (int c = 0; c < x->n_cands; c++) x->by_first[c] = c;
    for (int si = 0; si < x->n_settings; si++) {
        Setting *s = &x->settings[si];
        for (int a = s->cand_begin; a < s->cand_end; a++)
            for (int b = a + 1; b < s->cand_end; b++)
                if (x->cands[x->by_first[b]].first < x->cands[x->by_first[a]].first) {
                    int t = x->by_first[a];
                    x->by_first[a] = x->by_first[b];
                    x->by_first[b] = t;
                }
        s->chosen = choose(sel, x->cands, s, x->by_first);
    }
    /* what may still train, and the counts over it */
    for (int i = 0; i < n; i++) {
        x->need[i] = run_need(sw, x, i);
        if (x->need[i] == RUN_NOT_CHOSEN) continue;
        Setting *s = &x->settings[x->setting_of[i]];
        s->n++;
        s->failed += state[i] == RUN_FAILED;
        s->not_done += state[i] == RUN_NOT_DONE;
    }
    for (int i = 0; i < n; i++) {
        free(keyed[i].setting);
        free(keyed[i].value);
    }
    free(keyed);
    free(state);
}

static void selection_free(Selection *x) {
    free(x->cands);
    free(x->settings);
    free(x->cand_of);
    free(x->setting_of);
    free(x->by_first);
    free(x->need);
    free(x->setting_fields);
}

void select_run_needs(const Sweep *sw, cJSON *const *sums, RunNeed *need) {
    if (!sw->select.metric || !sw->select.n_tune_seeds) {
        for (int i = 0; i < sw->n_runs; i++) need[i] = RUN_WANTED;
        return;
    }
    const char *fields[64];
    int n_fields = sweep_swept_fields(sw, fields, 64);
    Selection x;
    selection_build(&x, sw, sums, fields, n_fields);
    memcpy(need, x.need, sizeof(RunNeed) * (size_t)sw->n_runs);
    selection_free(&x);
}

static void setting_note(const Setting *s, const Candidate *chosen, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    if (!chosen) {
        if (s->failed == s->n) snprintf(buf, len, "all %d runs failed", s->n);
        else snprintf(buf, len, "no run finished yet (%d not done; %d failed)", s->not_done, s->failed);
        return;
    }
    const Tally *t = &chosen->all;
    if (t->counted < t->n) n += (size_t)snprintf(buf + n, len - n, "incomplete: %d of %d seeds finished", t->counted, t->n);
    if (s->not_done && n < len) /* once the tuning runs are done, only the chosen value's other seeds remain */
        n += (size_t)snprintf(buf + n, len - n, "%s%s%d run%s not done", n ? "; " : "", s->tune_not_done ? "provisional: " : "",
                              s->not_done, s->not_done == 1 ? "" : "s");
    if (s->failed && n < len)
        n += (size_t)snprintf(buf + n, len - n, "%s%d run%s failed", n ? "; " : "", s->failed, s->failed == 1 ? "" : "s");
    if (t->not_learned && n < len)
        n += (size_t)snprintf(buf + n, len - n, "%snot learned: %d of %d seeds", n ? "; " : "", t->not_learned, t->counted);
    if (t->stale && n < len)
        snprintf(buf + n, len - n, "%sstale: %d run%s of another config", n ? "; " : "", t->stale, t->stale == 1 ? "" : "s");
}

/* ---- writing ---- */

static void write_header(FILE *csv, FILE *md, const SweepSelect *sel, const char *const *setting_fields, int n_setting) {
    for (int k = 0; k < n_setting + sel->n_over; k++) {
        const char *field = k < n_setting ? setting_fields[k] : sel->over[k - n_setting];
        if (k) fputc(',', csv);
        sweep_csv_cell(csv, field);
        fprintf(md, "| %s ", field);
    }
    const char *m = sel->metric;
    fprintf(csv, ",%s_mean,%s_min,%s_max,seeds_finished,seeds,candidates,failed_runs,note,runs\n", m, m, m);
    fprintf(md, "| %s mean | min-max | seeds | candidates | note |\n", m);
    for (int k = 0; k < n_setting + sel->n_over + 5; k++) fputs("| --- ", md);
    fputs("|\n", md);
}

/* The names of the runs of candidate `cand`, separated by spaces (names hold none). */
static char *candidate_runs(const Sweep *sw, const int *cand_of, int cand) {
    char *out = xstrdup("");
    for (int i = 0; cand >= 0 && i < sw->n_runs; i++)
        if (cand_of[i] == cand) {
            char *next = xasprintf("%s%s%s", out, out[0] ? " " : "", sw->runs[i].name);
            free(out);
            out = next;
        }
    return out;
}

static void write_row(FILE *csv, FILE *md, const Sweep *sw, const Setting *s, const Candidate *cands, const int *cand_of,
                      const char *const *setting_fields, int n_setting) {
    const SweepSelect *sel = &sw->select;
    const Candidate *c = s->chosen >= 0 ? &cands[s->chosen] : NULL;
    char v[256], num[3][64], note[256];
    for (int k = 0; k < n_setting + sel->n_over; k++) {
        v[0] = '\0';
        if (k < n_setting) value_of(&sw->runs[s->first], setting_fields[k], v, sizeof v);
        else if (c) value_of(&sw->runs[c->first], sel->over[k - n_setting], v, sizeof v);
        if (k) fputc(',', csv);
        sweep_csv_cell(csv, v);
        fprintf(md, "| %s ", v[0] ? v : "-");
    }
    const Tally *t = c ? &c->all : NULL;
    double stats[3] = {t ? t->sum / t->counted : NAN, t ? t->lo : NAN, t ? t->hi : NAN};
    for (int k = 0; k < 3; k++) {
        sweep_number_text(num[k], sizeof num[k], stats[k], false);
        fprintf(csv, ",%s", num[k]);
    }
    setting_note(s, c, note, sizeof note);
    int n_cands = s->cand_end - s->cand_begin;
    fprintf(csv, ",%d,%d,%d,%d,", t ? t->counted : 0, t ? t->n : 0, n_cands, s->failed);
    sweep_csv_cell(csv, note);
    fputc(',', csv);
    char *runs = candidate_runs(sw, cand_of, s->chosen);
    sweep_csv_cell(csv, runs);
    fputc('\n', csv);
    free(runs);
    for (int k = 0; k < 3; k++) sweep_number_text(num[k], sizeof num[k], stats[k], true);
    if (t) fprintf(md, "| %s | %s-%s | %d/%d ", num[0], num[1], num[2], t->counted, t->n);
    else fputs("| - | - | - ", md);
    fprintf(md, "| %d | %s |\n", n_cands, note);
}

static void write_json(const Sweep *sw, const Setting *settings, int n_settings, const int *cand_of, const char *path) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "metric", sw->select.metric);
    cJSON_AddStringToObject(o, "goal", sw->select.maximize ? "max" : "min");
    cJSON *over = cJSON_AddArrayToObject(o, "over"), *runs = cJSON_AddArrayToObject(o, "runs");
    for (int k = 0; k < sw->select.n_over; k++) cJSON_AddItemToArray(over, cJSON_CreateString(sw->select.over[k]));
    for (int s = 0; s < n_settings; s++)
        for (int i = 0; settings[s].chosen >= 0 && i < sw->n_runs; i++)
            if (cand_of[i] == settings[s].chosen) cJSON_AddItemToArray(runs, cJSON_CreateString(sw->runs[i].name));
    char *text = cJSON_Print(o);
    char *line = xasprintf("%s\n", text);
    write_file_atomic(path, line, strlen(line));
    free(line);
    free(text);
    cJSON_Delete(o);
}

static void remove_if_there(const char *path) {
    if (unlink(path) != 0 && errno != ENOENT) die("cannot remove '%s': %s", path, strerror(errno));
}

void select_write(const Sweep *sw, cJSON *const *sums, const char *const *fields, int n_fields, FILE *md) {
    const SweepSelect *sel = &sw->select;
    char *csv_path = xasprintf("%s/selected.csv", sw->dir), *json_path = xasprintf("%s/selected.json", sw->dir);
    if (!sel->metric) {
        remove_if_there(csv_path);
        remove_if_there(json_path);
        free(csv_path);
        free(json_path);
        return;
    }
    Selection x;
    selection_build(&x, sw, sums, fields, n_fields);
    Setting *settings = x.settings; /* written in sweep order */
    for (int a = 0; a < x.n_settings; a++)
        for (int b = a + 1; b < x.n_settings; b++)
            if (settings[b].first < settings[a].first) {
                Setting t = settings[a];
                settings[a] = settings[b];
                settings[b] = t;
            }
    AtomicFile csv;
    Error err;
    if (!atomic_open(&csv, csv_path, &err)) die("%s", err.msg);
    char over[512] = "";
    for (int k = 0, len = 0; k < sel->n_over; k++)
        len += snprintf(over + len, sizeof over - (size_t)len, "%s%s", k ? ", " : "", sel->over[k]);
    fprintf(md, "\n## Selected: %s by the mean %s over seeds (%s)\n\n", over, sel->metric, sel->maximize ? "max" : "min");
    char scored[320] = "its runs that finished";
    if (sel->n_tune_seeds) { /* "its runs of seed 1 (select.tune_seeds) that finished" */
        int len = snprintf(scored, sizeof scored, "its runs of seed%s", sel->n_tune_seeds > 1 ? "s" : "");
        for (int k = 0; k < sel->n_tune_seeds && len < (int)sizeof scored; k++)
            len += snprintf(scored + len, sizeof scored - (size_t)len, "%s %d", k ? "," : "", sel->tune_seeds[k]);
        if (len < (int)sizeof scored)
            snprintf(scored + len, sizeof scored - (size_t)len,
                     " (select.tune_seeds) that finished; the other seeds train only at the chosen value");
    }
    fprintf(md, "A setting is the runs that agree on every swept field but %s and seed. Each value of %s is scored by the "
                "mean %s of %s; a value whose seeds all finished ranks ahead of one with failed or "
                "unfinished seeds, and among those, one whose seeds all learned ahead of one with a seed that did not "
                "(the note says when the chosen value did not learn). min-max and seeds (finished/run) belong to the "
                "chosen value; figures draw its runs.\n\n",
            over, over, sel->metric, scored);
    write_header(csv.f, md, sel, x.setting_fields, x.n_setting);
    for (int s = 0; s < x.n_settings; s++)
        write_row(csv.f, md, sw, &settings[s], x.cands, x.cand_of, x.setting_fields, x.n_setting);
    if (!atomic_commit(&csv, &err)) die("%s", err.msg);
    write_json(sw, settings, x.n_settings, x.cand_of, json_path);
    selection_free(&x);
    free(csv_path);
    free(json_path);
}
