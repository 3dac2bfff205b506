/* Sweeps (see sweep.h). A sweep file returns a table:
 *
 *   return {
 *     experiment = "hybrid_ratio",                  -- optional: the results folder
 *     base = { model = { ... }, train = { ... } },  -- the config every run starts from
 *     grid = { ["model.hybrid.ratio"] = { "1:1", "3:1" }, seed = { 1, 2, 3 } },
 *     runs = { { ["model.d_model"] = 64 }, { model = { d_model = 128 }, run = "wide" } },
 *     select = { metric = "val_loss", goal = "min", over = { "train.lr" } },  -- sweep_select.c
 *   }
 *
 * Every entry of `runs` (or one empty entry) is combined with every point of `grid`; the grid's
 * fields are taken in sorted order, the first varying slowest. A run is named after the fields
 * it sets ("ratio=3:1,seed=2") unless it sets `run`. */
#include "sweep.h"

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/config/fingerprint.h"
#include "core/config/lua_sandbox.h"
#include "core/io/checkpoint.h"
#include "core/learned.h"
#include "core/parallel/collective.h"
#include "core/parallel/launch.h"
#include "core/task.h"
#include "core/train.h"
#include "sweep_select.h"

/* ---- building the runs ---- */

/* A field set by a sweep: its path and its Lua value (a registry reference). */
typedef struct {
    char path[128];
    int ref;
} Leaf;

typedef struct {
    Leaf *items;
    int n, cap;
} Leaves;

static void leaves_push(Leaves *l, const char *path, int ref) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->items = xrealloc(l->items, sizeof(Leaf) * (size_t)l->cap);
    }
    snprintf(l->items[l->n].path, sizeof l->items[l->n].path, "%s", path);
    l->items[l->n++].ref = ref;
}

static int cmp_leaf(const void *a, const void *b) { return strcmp(((const Leaf *)a)->path, ((const Leaf *)b)->path); }

/* Collects the fields of an override table (the value at the top of the stack), descending into
 * section tables; pops the table. */
static void flatten(lua_State *L, const char *prefix, Leaves *out) {
    int idx = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char path[128];
        if (lua_type(L, -2) == LUA_TSTRING)
            snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", lua_tostring(L, -2));
        else snprintf(path, sizeof path, "%s%s[%s]", prefix, prefix[0] ? "." : "", luaL_typename(L, -2));
        if (lua_type(L, -1) == LUA_TTABLE && config_is_section(path)) {
            flatten(L, path, out); /* pops the value */
        } else {
            leaves_push(out, path, luaL_ref(L, LUA_REGISTRYINDEX)); /* pops the value */
        }
    }
    lua_pop(L, 1);
}

/* Applies one field: {[path] = value} over c, with the same checks as a config file. */
static bool apply_leaf(Config *c, lua_State *L, const Leaf *leaf, const char *source, Error *err) {
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, leaf->ref);
    lua_setfield(L, -2, leaf->path);
    bool ok = config_apply_table(c, L, -1, source, err);
    lua_pop(L, 1);
    return ok;
}

static const char *last_component(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* The value of a swept field in a run, as text. */
static char *field_text(const Config *c, const char *path) {
    const Field *f = config_find_field(path);
    char buf[256];
    if (!f) return xstrdup("?");
    config_field_text(c, f, buf, sizeof buf);
    return xstrdup(buf);
}

static bool is_sweep_key(const char *key) {
    return strcmp(key, "experiment") == 0 || strcmp(key, "base") == 0 || strcmp(key, "grid") == 0 ||
           strcmp(key, "runs") == 0 || strcmp(key, "select") == 0;
}


typedef struct {
    Leaf key;
    int n_values;
    int *refs;
} GridAxis;

static bool load_lua(lua_State *L, const char *path, Error *err) {
    if (!sandbox_run(L, luaL_loadfilex(L, path, "t"), path, err)) return false;
    if (lua_type(L, -1) != LUA_TTABLE)
        return error_set(err, "%s: expected the config to return a table, got %s", path, luaL_typename(L, -1));
    return true;
}

/* What a sweep file sets, read before any run is built. */
typedef struct {
    lua_State *L;
    const char *path;
    int top; /* the file's table */
    bool is_sweep;
    Leaves *entries; /* one Leaves per entry of `runs` */
    int n_entries;
    GridAxis *axes;
    int n_axes;
    long combos; /* the grid's points */
    Leaves swept; /* every path any run sets, for naming */
} SweepFile;

static void sweep_file_free(SweepFile *sf) {
    for (int e = 0; e < sf->n_entries && sf->entries; e++) free(sf->entries[e].items);
    free(sf->entries);
    for (int a = 0; a < sf->n_axes; a++) free(sf->axes[a].refs);
    free(sf->axes);
    free(sf->swept.items);
}

/* A file with any of a sweep's keys but `experiment` is a sweep, and has only those keys at the top. */
static bool read_kind(SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    lua_pushnil(L);
    while (lua_next(L, sf->top)) {
        if (lua_type(L, -2) == LUA_TSTRING && is_sweep_key(lua_tostring(L, -2)) && strcmp(lua_tostring(L, -2), "experiment") != 0)
            sf->is_sweep = true;
        lua_pop(L, 1);
    }
    if (!sf->is_sweep) return true;
    lua_pushnil(L);
    while (lua_next(L, sf->top)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a name)";
        if (!is_sweep_key(key)) {
            error_set(err, "%s: unknown key '%s' in a sweep (expected experiment, base, grid, runs, select)", sf->path,
                      key);
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    return true;
}

/* `runs`: each entry's fields, sorted by path. */
static bool read_runs_list(SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    lua_getfield(L, sf->top, "runs");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE || lua_rawlen(L, -1) == 0)
            return error_set(err, "%s: 'runs' must be a non-empty list of tables of fields", sf->path);
        sf->n_entries = (int)lua_rawlen(L, -1);
        sf->entries = xcalloc((size_t)sf->n_entries, sizeof(Leaves));
        for (int i = 0; i < sf->n_entries; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (lua_type(L, -1) != LUA_TTABLE)
                return error_set(err, "%s: runs[%d] must be a table of fields, got %s", sf->path, i + 1,
                                 luaL_typename(L, -1));
            flatten(L, "", &sf->entries[i]);
            /* Lua's table order changes from one process to the next (its string hashes are
             * seeded at random): sorted, a run gets the same name when the sweep restarts */
            qsort(sf->entries[i].items, (size_t)sf->entries[i].n, sizeof(Leaf), cmp_leaf);
        }
    }
    lua_pop(L, 1);
    return true;
}

/* One entry of `grid` (its key at -2, its list of values at -1) as an axis. */
static bool read_axis(SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    const char *path = sf->path;
    if (lua_type(L, -2) != LUA_TSTRING) return error_set(err, "%s: grid keys must be field paths", path);
    const char *key = lua_tostring(L, -2);
    if (!config_find_field(key)) {
        Error e2;
        if (config_is_section(key))
            return error_set(err, "%s: grid key '%s' is a section; name one of its fields", path, key);
        return error_set(err, "%s (in the grid)", (config_unknown_field(key, path, &e2), e2.msg));
    }
    if (lua_type(L, -1) != LUA_TTABLE || lua_rawlen(L, -1) == 0)
        return error_set(err, "%s: grid '%s' is empty: give a list of at least one value", path, key);
    sf->axes = xrealloc(sf->axes, sizeof(GridAxis) * (size_t)(sf->n_axes + 1));
    GridAxis *ax = &sf->axes[sf->n_axes++];
    snprintf(ax->key.path, sizeof ax->key.path, "%s", key);
    ax->n_values = (int)lua_rawlen(L, -1);
    ax->refs = xcalloc((size_t)ax->n_values, sizeof(int));
    for (int v = 0; v < ax->n_values; v++) {
        lua_rawgeti(L, -1, v + 1);
        ax->refs[v] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return true;
}

/* `grid`: an axis per field, sorted by path. */
static bool read_grid(SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    lua_getfield(L, sf->top, "grid");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE)
            return error_set(err, "%s: 'grid' must be a table of field = list of values", sf->path);
        int gi = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, gi)) {
            if (!read_axis(sf, err)) return false;
            lua_pop(L, 1);
        }
        /* Lua's table order is not stable: sort the axes by path */
        for (int a = 0; a < sf->n_axes; a++)
            for (int b = a + 1; b < sf->n_axes; b++)
                if (strcmp(sf->axes[a].key.path, sf->axes[b].key.path) > 0) {
                    GridAxis t = sf->axes[a];
                    sf->axes[a] = sf->axes[b];
                    sf->axes[b] = t;
                }
    }
    lua_pop(L, 1);
    return true;
}

/* The grid's size, and every path a run sets. */
static bool count_points(SweepFile *sf, Error *err) {
    sf->combos = 1;
    for (int a = 0; a < sf->n_axes; a++) {
        sf->combos *= sf->axes[a].n_values;
        if (sf->combos > 100000) return error_set(err, "%s: the grid has more than 100,000 points", sf->path);
    }
    for (int e = 0; e < sf->n_entries; e++)
        for (int i = 0; i < sf->entries[e].n; i++)
            if (strcmp(sf->entries[e].items[i].path, "run") != 0)
                leaves_push(&sf->swept, sf->entries[e].items[i].path, 0);
    for (int a = 0; a < sf->n_axes; a++) leaves_push(&sf->swept, sf->axes[a].key.path, 0);
    return true;
}

/* The file's table (at the top of the stack): its kind, runs, grid and selection. */
static bool read_sweep_file(SweepFile *sf, SweepSelect *select, Error *err) {
    lua_State *L = sf->L;
    sf->top = lua_gettop(L);
    if (!read_kind(sf, err)) return false;
    if (sf->is_sweep) {
        if (!read_runs_list(sf, err) || !read_grid(sf, err)) return false;
        /* the selection: read now, checked against the runs once they exist */
        lua_getfield(L, sf->top, "select");
        if (!lua_isnil(L, -1) && !select_parse(select, L, -1, sf->path, err)) return false;
        lua_pop(L, 1);
    }
    if (!sf->n_entries) {
        sf->entries = xcalloc(1, sizeof(Leaves));
        sf->n_entries = 1;
    }
    return count_points(sf, err);
}

/* A sweep's `base`, or the whole file when it is one run. */
static bool apply_base(Config *c, const SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    if (!sf->is_sweep) return config_apply_table(c, L, sf->top, sf->path, err);
    lua_getfield(L, sf->top, "base");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE) return error_set(err, "%s: 'base' must be a config table", sf->path);
        if (!config_apply_table(c, L, -1, sf->path, err)) return false;
    }
    lua_pop(L, 1);
    return true;
}

/* The run's own fields, then its grid point (first axis slowest); `set` collects their paths. */
static bool apply_fields(Config *c, const SweepFile *sf, int e, long p, Leaves *set, Error *err) {
    for (int i = 0; i < sf->entries[e].n; i++) {
        if (!apply_leaf(c, sf->L, &sf->entries[e].items[i], sf->path, err)) return false;
        leaves_push(set, sf->entries[e].items[i].path, sf->entries[e].items[i].ref);
    }
    long rest = p;
    for (int a = sf->n_axes - 1; a >= 0; a--) {
        int v = (int)(rest % sf->axes[a].n_values);
        rest /= sf->axes[a].n_values;
        Leaf leaf = sf->axes[a].key;
        leaf.ref = sf->axes[a].refs[v];
        if (!apply_leaf(c, sf->L, &leaf, sf->path, err)) return false;
    }
    for (int a = 0; a < sf->n_axes; a++) leaves_push(set, sf->axes[a].key.path, 0);
    return true;
}

/* the experiment is the sweep's: its own key, else base's, else the file's name */
static bool apply_experiment(Config *c, const SweepFile *sf, Error *err) {
    lua_State *L = sf->L;
    if (!sf->is_sweep) return true;
    lua_getfield(L, sf->top, "experiment");
    if (lua_type(L, -1) == LUA_TSTRING) {
        free(c->experiment);
        c->experiment = xstrdup(lua_tostring(L, -1));
    } else if (!lua_isnil(L, -1)) {
        return error_set(err, "%s: 'experiment' must be a string", sf->path);
    }
    lua_pop(L, 1);
    return true;
}

/* The command line's --set, last: over the sweep's experiment too, but never over a field the
 * sweep itself varies (that would make its runs one run). */
static bool apply_sets(Config *c, const SweepFile *sf, char **sets, int n_sets, Error *err) {
    for (int i = 0; i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        size_t n = eq ? (size_t)(eq - sets[i]) : strlen(sets[i]);
        for (int k = 0; k < sf->swept.n; k++)
            if (strlen(sf->swept.items[k].path) == n && strncmp(sf->swept.items[k].path, sets[i], n) == 0)
                return error_set(err, "--set %s: %s varies %.*s across its runs; set it in the sweep instead", sets[i],
                                 sf->path, (int)n, sets[i]);
        if (!config_set(c, sets[i], err)) return false;
    }
    return true;
}

static bool check_run(Config *c, int run, Error *err) {
    if (config_check(c, err)) return true;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return error_set(err, "%s (run %d)", msg, run);
}

/* What a run sets, as text, and its name from them ("ratio=3:1,seed=2", a field's whole path
 * where another swept field ends the same), unless it sets `run`. */
static void name_run(SweepRun *r, Config *c, const Leaves *set, const Leaves *swept) {
    bool named = false;
    char name[512] = "";
    size_t nl = 0;
    for (int i = 0; i < set->n && r->n_overrides < SWEEP_MAX_OVERRIDES; i++) {
        const char *fp = set->items[i].path;
        if (strcmp(fp, "run") == 0) {
            named = true;
            continue;
        }
        r->paths[r->n_overrides] = xstrdup(fp);
        r->values[r->n_overrides] = field_text(c, fp);
        const char *shown = last_component(fp);
        for (int j = 0; j < swept->n; j++)
            if (strcmp(swept->items[j].path, fp) != 0 && strcmp(last_component(swept->items[j].path), shown) == 0)
                shown = fp;
        if (nl < sizeof name)
            nl += (size_t)snprintf(name + nl, sizeof name - nl, "%s%s=%s", nl ? "," : "", shown,
                                   r->values[r->n_overrides]);
        r->n_overrides++;
    }
    for (char *ch = name; *ch; ch++)
        if (*ch == '/' || *ch == ' ') *ch = '_';
    r->name = xstrdup(named || !name[0] ? c->run : name);
    if (!named && name[0]) {
        free(c->run);
        c->run = xstrdup(name);
    }
}

/* The next run: entry e of `runs` at grid point p, with the command line's overrides, checked and named. */
static bool build_run(Sweep *sw, const SweepFile *sf, int e, long p, char **sets, int n_sets, Error *err) {
    SweepRun *r = &sw->runs[sw->n_runs++];
    Config *c = &r->cfg;
    config_defaults(c);
    c->source_path = xstrdup(sf->path);
    Leaves set = {0};
    bool ok = apply_base(c, sf, err) && apply_fields(c, sf, e, p, &set, err) && apply_experiment(c, sf, err) &&
              apply_sets(c, sf, sets, n_sets, err) && check_run(c, sw->n_runs, err);
    if (ok) name_run(r, c, &set, &sf->swept);
    free(set.items);
    if (!ok) return false;
    for (int k = 0; k < sw->n_runs - 1; k++)
        if (strcmp(sw->runs[k].name, r->name) == 0)
            return error_set(err, "%s: two runs are both named '%s'; give them different 'run' fields", sf->path,
                             r->name);
    return true;
}

static bool build_runs(Sweep *sw, const SweepFile *sf, char **sets, int n_sets, Error *err) {
    sw->runs = xcalloc((size_t)(sf->n_entries * sf->combos), sizeof(SweepRun));
    for (int e = 0; e < sf->n_entries; e++)
        for (long p = 0; p < sf->combos; p++)
            if (!build_run(sw, sf, e, p, sets, n_sets, err)) return false;
    return true;
}

/* every run's task parameters (and what it reports, for the selection) are checked before
 * the first run starts */
static bool check_tasks(Sweep *sw, Error *err) {
    MetricCheck metrics = {.lacking = -1};
    for (int i = 0; i < sw->n_runs; i++) {
        Config *c = &sw->runs[i].cfg;
        Task *t = NULL;
        Error e2;
        const TaskOps *ops = task_lookup(c->task);
        if (ops->measure) {
            if (!ops->check(c, err)) return false;
        } else if (!(t = task_create(c, &e2))) {
            return error_set(err, "run '%s': %s", sw->runs[i].name, e2.msg);
        }
        if (sw->select.metric) select_note_run(&metrics, &sw->select, i, c, t);
        if (t) t->ops->destroy(t);
    }
    return !sw->select.metric || select_check_metric(&metrics, sw, err);
}

/* Each --set must change some run (as it must change a single config: config_set_takes_effect). */
static bool check_sets_take_effect(const Sweep *sw, char **sets, int n_sets, Error *err) {
    for (int i = 0; i < n_sets; i++) {
        char why[256] = "";
        bool somewhere = false;
        for (int r = 0; r < sw->n_runs && !somewhere; r++)
            somewhere = config_set_takes_effect(&sw->runs[r].cfg, sets[i], why, sizeof why);
        if (!somewhere) return error_set(err, "--set %s has no effect in any run of %s: %s", sets[i], sw->source, why);
    }
    return true;
}

bool sweep_load(Sweep *sw, const char *path, char **sets, int n_sets, Error *err) {
    memset(sw, 0, sizeof *sw);
    sw->source = xstrdup(path);
    lua_State *L = sandbox_new(path, err);
    if (!L) return false;
    SweepFile sf = {.L = L, .path = path};
    bool ok = load_lua(L, path, err) && read_sweep_file(&sf, &sw->select, err) &&
              build_runs(sw, &sf, sets, n_sets, err) && check_sets_take_effect(sw, sets, n_sets, err);
    if (ok) {
        sw->experiment = xstrdup(sw->runs[0].cfg.experiment);
        sw->dir = xasprintf("%s/%s", sw->runs[0].cfg.out_dir, sw->experiment);
        ok = (!sw->select.metric || select_check_over(sw, err)) && check_tasks(sw, err);
    }
    sweep_file_free(&sf);
    sandbox_close(L);
    return ok;
}

bool sweep_file_is_sweep(const char *path, bool *is_sweep, Error *err) {
    lua_State *L = sandbox_new(path, err);
    if (!L) return false;
    SweepFile sf = {.L = L, .path = path};
    bool ok = load_lua(L, path, err);
    if (ok) {
        sf.top = lua_gettop(L);
        ok = read_kind(&sf, err);
    }
    *is_sweep = sf.is_sweep;
    sandbox_close(L);
    return ok;
}

void sweep_free(Sweep *sw) {
    gpu_list_free(&sw->gpus);
    for (int i = 0; i < sw->n_runs; i++) {
        SweepRun *r = &sw->runs[i];
        free(r->name);
        for (int j = 0; j < r->n_overrides; j++) {
            free(r->paths[j]);
            free(r->values[j]);
        }
        config_free(&r->cfg);
        free(r->stale);
    }
    free(sw->runs);
    free(sw->pick);
    select_free(&sw->select);
    free(sw->source);
    free(sw->experiment);
    free(sw->dir);
    memset(sw, 0, sizeof *sw);
}

/* ---- the summary table ---- */

char *sweep_run_dir(const Sweep *sw, const SweepRun *r) { return xasprintf("%s/%s", sw->dir, r->name); }

char *sweep_run_checkpoint(const Sweep *sw, const SweepRun *r) {
    return xasprintf("%s/%s/checkpoint.safetensors", sw->dir, r->name);
}

/* A finished run's "learned" as the rule of this code (core/learned.h) judges its summary's
 * numbers, so that the tables of runs trained before the rule changed follow it. A task judged by
 * loss alone needs its data (lm's plateau): its run keeps the judgment it was written with. */
static void judge_again(cJSON *o, const Config *cfg) {
    const char *status = sweep_json_string(o, "status");
    const TaskOps *ops = task_lookup(cfg->task);
    if (!status || strcmp(status, "finished") != 0 || !ops) return;
    Summary s = {0};
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(o, "val_accuracy");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(o, "val_loss");
    s.val_accuracy = cJSON_IsNumber(acc) ? acc->valuedouble : NAN;
    s.val_loss = cJSON_IsNumber(loss) ? loss->valuedouble : NAN;
    const cJSON *m, *metrics = cJSON_GetObjectItemCaseSensitive(o, "metrics");
    cJSON_ArrayForEach(m, metrics) {
        if (!cJSON_IsNumber(m) || s.n_metrics == (int)(sizeof s.metric_values / sizeof s.metric_values[0])) continue;
        snprintf(s.metric_names[s.n_metrics], sizeof s.metric_names[0], "%s", m->string);
        s.metric_values[s.n_metrics++] = m->valuedouble;
    }
    char reason[LEARNED_REASON_LEN];
    Learned l = learned_judge(&s, ops, cfg, NULL, reason, sizeof reason);
    if (l == LEARNED_NOT_JUDGED) return;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "learned");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "learned_reason");
    cJSON_AddBoolToObject(o, "learned", l == LEARNED_YES);
    cJSON_AddStringToObject(o, "learned_reason", reason);
}

cJSON *sweep_read_summary(const Sweep *sw, const SweepRun *r) {
    char *dir = sweep_run_dir(sw, r), *path = xasprintf("%s/summary.json", dir);
    char *text = read_file(path, NULL, NULL);
    free(dir);
    free(path);
    if (!text) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (o) judge_again(o, &r->cfg);
    return o;
}

const char *sweep_json_string(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool sweep_not_learned(const cJSON *summary) {
    return summary && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(summary, "learned"));
}

static const char *const NUMBER_COLUMNS[] = {"step",           "train_loss",   "val_loss", "val_bits_per_byte",
                                             "val_perplexity", "val_accuracy", "tokens_per_s", "wall_s", "params"};
enum { N_NUMBER_COLUMNS = sizeof NUMBER_COLUMNS / sizeof NUMBER_COLUMNS[0] };

/* A CSV cell: quoted when it holds a comma, a quote or a newline. */
void sweep_csv_cell(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void sweep_number_text(char *buf, size_t len, double v, bool markdown) {
    if (!isfinite(v)) snprintf(buf, len, "%s", markdown ? "-" : "");
    else if (markdown && fabs(v) >= 1000) snprintf(buf, len, "%.0f", v);
    else if (markdown) snprintf(buf, len, "%.4g", v);
    else snprintf(buf, len, "%.10g", v);
}

static void number_text(char *buf, size_t len, const cJSON *v, bool markdown) {
    sweep_number_text(buf, len, cJSON_IsNumber(v) ? v->valuedouble : NAN, markdown);
}

/* One number (or a blank for none) as a cell of summary.csv and of summary.md. */
static void number_cells(FILE *csv, FILE *md, const cJSON *v) {
    char num[64];
    number_text(num, sizeof num, v, false);
    fprintf(csv, ",%s", num);
    number_text(num, sizeof num, v, true);
    fprintf(md, " %s |", num);
}

static void write_summary_files(const Sweep *sw);

/* Under a lock: sweeps of one experiment in several processes (Slurm array tasks, each with
 * --only) each rewrite the tables from every run's summary.json, one after another, so the last
 * to write has read every run that finished before it. */
void sweep_write_summary(const Sweep *sw) {
    Error err;
    char *path = xasprintf("%s/.summary.lock", sw->dir);
    int fd = lock_file(path, &err);
    if (fd < 0) die("%s", err.msg);
    write_summary_files(sw);
    unlock_file(fd);
    free(path);
}

int sweep_swept_fields(const Sweep *sw, const char **fields, int max) {
    int n_fields = 0;
    for (int i = 0; i < sw->n_runs; i++)
        for (int j = 0; j < sw->runs[i].n_overrides; j++) {
            bool seen = false;
            for (int k = 0; k < n_fields; k++) seen |= strcmp(fields[k], sw->runs[i].paths[j]) == 0;
            if (!seen && n_fields < max) fields[n_fields++] = sw->runs[i].paths[j];
        }
    return n_fields;
}

static cJSON **read_summaries(const Sweep *sw) {
    cJSON **sums = xcalloc((size_t)sw->n_runs + 1, sizeof(cJSON *));
    for (int i = 0; i < sw->n_runs; i++) sums[i] = sweep_read_summary(sw, &sw->runs[i]);
    return sums;
}

static void free_summaries(const Sweep *sw, cJSON **sums) {
    for (int i = 0; i < sw->n_runs; i++) cJSON_Delete(sums[i]);
    free(sums);
}

RunNeed *sweep_run_needs(const Sweep *sw) {
    RunNeed *need = xcalloc((size_t)sw->n_runs + 1, sizeof(RunNeed)); /* RUN_WANTED */
    if (!sw->select.metric || !sw->select.n_tune_seeds) return need;   /* no summary to read */
    cJSON **sums = read_summaries(sw);
    select_run_needs(sw, sums, need);
    free_summaries(sw, sums);
    return need;
}

/* The state a run without a summary shows in the tables and --status. */
const char *sweep_unstarted_state(RunNeed need) {
    return need == RUN_NOT_CHOSEN ? "not chosen" : need == RUN_WAITING ? "waiting" : "pending";
}

static void write_summary_files(const Sweep *sw) {
    /* columns: run, status, reason, every swept field, the standard numbers, every task metric */
    const char *fields[64];
    int n_fields = sweep_swept_fields(sw, fields, 64);
    cJSON **sums = read_summaries(sw);
    RunNeed *need = xcalloc((size_t)sw->n_runs + 1, sizeof(RunNeed));
    select_run_needs(sw, sums, need);
    char metrics[64][48];
    int n_metrics = 0;
    for (int i = 0; i < sw->n_runs; i++) {
        const cJSON *m = sums[i] ? cJSON_GetObjectItemCaseSensitive(sums[i], "metrics") : NULL;
        const cJSON *item;
        cJSON_ArrayForEach(item, m) {
            bool seen = false;
            for (int k = 0; k < n_metrics; k++) seen |= strcmp(metrics[k], item->string) == 0;
            if (!seen && n_metrics < 64) snprintf(metrics[n_metrics++], 48, "%s", item->string);
        }
    }
    char *csv_path = xasprintf("%s/summary.csv", sw->dir), *md_path = xasprintf("%s/summary.md", sw->dir);
    AtomicFile csv, md;
    Error err;
    if (!atomic_open(&csv, csv_path, &err) || !atomic_open(&md, md_path, &err)) die("%s", err.msg);
    fputs("run,status,reason", csv.f);
    fputs("| run | status |", md.f);
    for (int k = 0; k < n_fields; k++) {
        fputc(',', csv.f);
        sweep_csv_cell(csv.f, fields[k]);
        fprintf(md.f, " %s |", fields[k]);
    }
    for (int k = 0; k < N_NUMBER_COLUMNS; k++) {
        fprintf(csv.f, ",%s", NUMBER_COLUMNS[k]);
        fprintf(md.f, " %s |", NUMBER_COLUMNS[k]);
    }
    for (int k = 0; k < n_metrics; k++) {
        fprintf(csv.f, ",%s", metrics[k]);
        fprintf(md.f, " %s |", metrics[k]);
    }
    fputs(",learned,stale", csv.f); /* last, so that the columns before keep their places */
    fputc('\n', csv.f);
    fputs("\n|", md.f);
    for (int k = 0; k < 2 + n_fields + N_NUMBER_COLUMNS + n_metrics; k++) fputs(" --- |", md.f);
    fputc('\n', md.f);
    for (int i = 0; i < sw->n_runs; i++) {
        const SweepRun *r = &sw->runs[i];
        const cJSON *o = sums[i];
        const char *status = o && sweep_json_string(o, "status") ? sweep_json_string(o, "status") : sweep_unstarted_state(need[i]);
        const char *reason = o && sweep_json_string(o, "reason") ? sweep_json_string(o, "reason") : "";
        sweep_csv_cell(csv.f, r->name);
        fputc(',', csv.f);
        sweep_csv_cell(csv.f, status);
        fputc(',', csv.f);
        sweep_csv_cell(csv.f, reason);
        /* Markdown: the status, then its reason, "not learned" and "stale: ..." in parentheses */
        const cJSON *learned = o ? cJSON_GetObjectItemCaseSensitive(o, "learned") : NULL;
        char notes[1024];
        size_t nn = (size_t)snprintf(notes, sizeof notes, "%s", reason);
        if (sweep_not_learned(o) && nn < sizeof notes)
            nn += (size_t)snprintf(notes + nn, sizeof notes - nn, "%snot learned", nn ? "; " : "");
        if (r->stale && nn < sizeof notes) snprintf(notes + nn, sizeof notes - nn, "%sstale: %s", nn ? "; " : "", r->stale);
        fprintf(md.f, "| %s | %s%s%s%s |", r->name, status, notes[0] ? " (" : "", notes, notes[0] ? ")" : "");
        for (int k = 0; k < n_fields; k++) {
            const char *v = "";
            for (int j = 0; j < r->n_overrides; j++)
                if (strcmp(r->paths[j], fields[k]) == 0) v = r->values[j];
            fputc(',', csv.f);
            sweep_csv_cell(csv.f, v);
            fprintf(md.f, " %s |", v);
        }
        for (int k = 0; k < N_NUMBER_COLUMNS; k++)
            number_cells(csv.f, md.f, o ? cJSON_GetObjectItemCaseSensitive(o, NUMBER_COLUMNS[k]) : NULL);
        const cJSON *m = o ? cJSON_GetObjectItemCaseSensitive(o, "metrics") : NULL;
        for (int k = 0; k < n_metrics; k++)
            number_cells(csv.f, md.f, m ? cJSON_GetObjectItemCaseSensitive(m, metrics[k]) : NULL);
        fprintf(csv.f, ",%s,", cJSON_IsBool(learned) ? (cJSON_IsTrue(learned) ? "yes" : "no") : "");
        sweep_csv_cell(csv.f, r->stale ? r->stale : "");
        fputc('\n', csv.f);
        fputc('\n', md.f);
    }
    select_write(sw, sums, fields, n_fields, md.f);
    if (!atomic_commit(&csv, &err) || !atomic_commit(&md, &err)) die("%s", err.msg);
    free_summaries(sw, sums);
    free(need);
    free(csv_path);
    free(md_path);
}

/* ---- runs whose config changed ---- */

/* A run whose folder holds results or a checkpoint of another config than the run's now. */
typedef struct {
    int run;
    bool finished;
    char **items; /* "path: before -> after" for each field that changes results, or why it cannot be told */
    int n_items;
} ChangedRun;

static void push_item(ChangedRun *c, char *item) {
    c->items = xrealloc(c->items, sizeof(char *) * (size_t)(c->n_items + 1));
    c->items[c->n_items++] = item;
}

/* The config run r's folder was trained with (its config.lua) against r's now: false when the
 * folder holds nothing a restart would use (no finished results, no checkpoint) or the same
 * config. summary.json's fingerprint tells most runs apart at once; a run whose fingerprint
 * differs, or that predates fingerprints, has its config.lua compared field by field, and one
 * resumed with changed fields (resumed_with_changes) is never the run its config describes. */
static bool changed_config(const Sweep *sw, int i, const cJSON *summary, ChangedRun *out) {
    const SweepRun *r = &sw->runs[i];
    char *dir = sweep_run_dir(sw, r), *checkpoint = sweep_run_checkpoint(sw, r);
    const char *status = summary ? sweep_json_string(summary, "status") : NULL;
    *out = (ChangedRun){.run = i, .finished = status && strcmp(status, "finished") == 0};
    bool reusable = out->finished || path_exists(checkpoint);
    const cJSON *resumed = reusable && summary ? cJSON_GetObjectItemCaseSensitive(summary, "resumed_with_changes") : NULL;
    const cJSON *item;
    const char *recorded = summary ? sweep_json_string(summary, "config_fingerprint") : NULL;
    char fingerprint[FINGERPRINT_HEX];
    config_fingerprint(&r->cfg, fingerprint);
    if (reusable && !(recorded && strcmp(recorded, fingerprint) == 0)) {
        char *path = xasprintf("%s/config.lua", dir);
        Config before;
        Error err;
        memset(&before, 0, sizeof before);
        if (!path_exists(path)) {
            push_item(out, xstrdup("its config.lua is missing"));
        } else if (!config_load(&before, path, NULL, 0, &err)) {
            push_item(out, xasprintf("its config.lua does not load: %s", err.msg));
        } else {
            ConfigChanges ch = config_changes(&before, &r->cfg);
            for (int k = 0; k < ch.n; k++)
                if (ch.items[k].affects_results) push_item(out, config_change_text(&ch.items[k]));
            config_changes_free(&ch);
        }
        config_free(&before);
        free(path);
    }
    cJSON_ArrayForEach(item, resumed)
        if (cJSON_IsString(item)) push_item(out, xasprintf("resumed with %s", item->valuestring));
    free(checkpoint);
    free(dir);
    return out->n_items > 0;
}

char *sweep_run_changes(const Sweep *sw, int i) {
    cJSON *o = sweep_read_summary(sw, &sw->runs[i]);
    ChangedRun c;
    char *text = changed_config(sw, i, o, &c) ? join_texts(c.items, c.n_items, ", ", 3) : NULL;
    cJSON_Delete(o);
    for (int k = 0; k < c.n_items; k++) free(c.items[k]);
    free(c.items);
    return text;
}

/* "NAME NAME NAME and 2 more (path: a -> b, ...)" of the changed runs that `kept` says (-1: all):
 * a few names (they hold no spaces) and a few of their distinct differences. */
static char *describe_changed(const Sweep *sw, const ChangedRun *changed, int n, int kept) {
    char **names = xcalloc((size_t)n + 1, sizeof(char *)), **items = NULL;
    int n_names = 0, n_items = 0;
    for (int c = 0; c < n; c++) {
        if (kept >= 0 && (sw->runs[changed[c].run].stale != NULL) != kept) continue;
        names[n_names++] = sw->runs[changed[c].run].name;
        for (int k = 0; k < changed[c].n_items; k++) {
            bool seen = false;
            for (int d = 0; d < n_items; d++) seen |= strcmp(items[d], changed[c].items[k]) == 0;
            if (seen) continue;
            items = xrealloc(items, sizeof(char *) * (size_t)(n_items + 1));
            items[n_items++] = changed[c].items[k];
        }
    }
    char *run_list = join_texts(names, n_names, " ", 3), *item_list = join_texts(items, n_items, ", ", 3);
    char *out = xasprintf("%s (%s)", run_list, item_list);
    free(run_list);
    free(item_list);
    free(names);
    free(items);
    return out;
}

/* Before anything runs, runs whose folder holds results or a checkpoint of another config
 * stop the sweep with one line naming them and the fields, or (--rerun-changed) have their
 * folder cleared and run again from step 0, or (--keep-changed) keep a finished run's results,
 * marked stale in the summaries, and start an unfinished one again from step 0. */
static void free_changed(ChangedRun *changed, int n) {
    for (int c = 0; c < n; c++) {
        for (int k = 0; k < changed[c].n_items; k++) free(changed[c].items[k]);
        free(changed[c].items);
    }
    free(changed);
}

void sweep_settle_changed_runs(Sweep *sw) {
    ChangedRun *changed = xcalloc((size_t)sw->n_runs, sizeof(ChangedRun));
    int n = 0, n_finished = 0;
    for (int i = 0; i < sw->n_runs; i++) {
        cJSON *o = sweep_read_summary(sw, &sw->runs[i]);
        bool differs = changed_config(sw, i, o, &changed[n]);
        cJSON_Delete(o);
        if (!differs) continue;
        if (sw->only && i != sw->only - 1) { /* another task's run: only its stale mark, for the tables */
            if (sw->on_changed == CHANGED_KEEP && changed[n].finished)
                sw->runs[i].stale = join_texts(changed[n].items, changed[n].n_items, ", ", changed[n].n_items);
            for (int k = 0; k < changed[n].n_items; k++) free(changed[n].items[k]);
            free(changed[n].items);
            continue;
        }
        n_finished += changed[n++].finished;
    }
    if (n && sw->on_changed == CHANGED_REFUSE) {
        char *what = describe_changed(sw, changed, n, -1), msg[2048];
        if (n_finished == n)
            snprintf(msg, sizeof msg, "sweep '%s': %d finished run%s trained with another config: %s; --rerun-changed "
                     "runs %s again, --keep-changed keeps %s results, marked stale", sw->experiment, n,
                     n == 1 ? " was" : "s were", what, n == 1 ? "it" : "them", n == 1 ? "its" : "their");
        else
            snprintf(msg, sizeof msg, "sweep '%s': %d run%s results or a checkpoint of another config (%d finished, %d "
                     "to resume): %s; --rerun-changed runs them again from step 0, --keep-changed keeps the finished "
                     "ones' results, marked stale, and starts the others again", sw->experiment, n,
                     n == 1 ? " holds" : "s hold", n_finished, n - n_finished, what);
        free(what);
        free_changed(changed, n); /* nothing left for a leak checker to report at the exit */
        die("%s", msg);
    }
    int kept = 0;
    for (int c = 0; c < n; c++) {
        SweepRun *r = &sw->runs[changed[c].run];
        if (sw->on_changed == CHANGED_KEEP && changed[c].finished) {
            r->stale = join_texts(changed[c].items, changed[c].n_items, ", ", changed[c].n_items);
            kept++;
            continue;
        }
        /* never resumed into another config: its folder goes, and it starts from step 0 */
        char *dir = sweep_run_dir(sw, r);
        Error err;
        if (!lock_run_dir(dir, &err)) die("%s", err.msg);
        remove_tree(dir);
        free(dir);
    }
    for (int group = 1; group >= 0; group--) {
        int count = group ? kept : n - kept;
        if (!count) continue;
        char *what = describe_changed(sw, changed, n, group);
        if (group) printf("sweep '%s': keeping %d finished run%s of another config, marked stale in the summaries: %s\n",
                          sw->experiment, count, count == 1 ? "" : "s", what);
        else printf("sweep '%s': running %d run%s of another config again from step 0: %s\n", sw->experiment, count,
                    count == 1 ? "" : "s", what);
        free(what);
    }
    free_changed(changed, n);
}

/* ---- running ---- */

static volatile sig_atomic_t sweep_stop;

static void on_sweep_signal(int sig) { sweep_stop = sig; }

/* The latest step and loss of a run in progress, from the end of its metrics.jsonl. */
static bool latest_metrics(const char *dir, int *step, double *loss) {
    char *path = xasprintf("%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f) return false;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f), from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end = strrchr(buf, '\n');
    if (!end) return false;
    *end = '\0';
    char *start = strrchr(buf, '\n');
    cJSON *o = cJSON_Parse(start ? start + 1 : buf);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step"), *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
    bool ok = cJSON_IsNumber(s);
    if (ok) {
        *step = (int)s->valuedouble;
        *loss = cJSON_IsNumber(l) ? l->valuedouble : NAN;
    }
    cJSON_Delete(o);
    return ok;
}

static pid_t sweep_pid; /* the process that forks the runs */

/* The child: one run, its output in logs/<run>.log. */
bool sweep_uses_gpus(const Sweep *sw) {
    for (int i = 0; i < sw->n_runs; i++)
        if (strcmp(sw->runs[i].cfg.device, "cuda") == 0) return true;
    return false;
}

int sweep_data_parallel(const Sweep *sw) {
    int most = 1;
    for (int i = 0; i < sw->n_runs; i++)
        if (strcmp(sw->runs[i].cfg.device, "cuda") == 0) most = max_int(most, sw->runs[i].cfg.train.data_parallel);
    return most;
}

/* A data-parallel run of the sweep: its ranks on the slot's GPUs (CUDA_VISIBLE_DEVICES). */
typedef struct {
    Config *cfg;
    const TrainOptions *opt;
} SweepRank;

static int sweep_rank(void *ctx, const RankEnv *e) {
    SweepRank *sr = ctx;
    TrainOptions opt = *sr->opt;
    opt.ranks = e;
    return train_run(sr->cfg, &opt);
}

static int train_data_parallel(Config *cfg, const TrainOptions *opt) {
    GpuList gpus;
    Error err;
    char why[256];
    if (!collective_available(why, sizeof why)) die("train.data_parallel = %d: %s", cfg->train.data_parallel, why);
    if (!gpu_list_visible(&gpus, NULL, NULL, &err)) die("%s", err.msg);
    while (gpus.n > cfg->train.data_parallel) free(gpus.names[--gpus.n]); /* a group larger than this run needs */
    if (gpus.n < cfg->train.data_parallel)
        die("train.data_parallel = %d but this run's slot has %d GPU%s", cfg->train.data_parallel, gpus.n,
            gpus.n == 1 ? "" : "s");
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    setenv("ATTNLAB_RANK_GPUS", visible ? visible : "", 1);
    SweepRank sr = {cfg, opt};
    int code = launch_ranks(&gpus, sweep_rank, &sr);
    gpu_list_free(&gpus);
    return code;
}

static const char *slot_gpu(const Sweep *sw, int slot) { return sw->gpus.n ? sw->gpus.names[slot % sw->gpus.n] : NULL; }

static _Noreturn void run_child(const Sweep *sw, SweepRun *r, int jobs, int slot) {
    /* a run dies with its sweep (even a SIGKILLed one), so a restarted sweep never finds it
     * still writing; the restart resumes it from its checkpoint */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != sweep_pid) _exit(1);
    char *log = xasprintf("%s/logs/%s.log", sw->dir, r->name);
    FILE *f = fopen(log, "a");
    if (!f) {
        fprintf(stderr, "attnlab: cannot write '%s'\n", log);
        _exit(1);
    }
    fflush(stdout);
    dup2(fileno(f), STDOUT_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    fclose(f);
    free(log);
    /* a run of its own process group: a Ctrl-C reaches only the sweep, which passes it on once */
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* its GPU: the parent never touches CUDA, so the child's first CUDA call sees only this one */
    if (slot_gpu(sw, slot)) setenv("CUDA_VISIBLE_DEVICES", slot_gpu(sw, slot), 1);
    /* the cores are shared between the jobs */
    if (r->cfg.threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        r->cfg.threads = (int)(cores / jobs > 0 ? cores / jobs : 1);
    }
    const TaskOps *task = task_lookup(r->cfg.task);
    if (task->measure) _exit(task->measure(&r->cfg, r->n_overrides, (const char **)r->paths, (const char **)r->values));
    TrainOptions opt = sweep_run_options(r);
    fflush(NULL);
    opt.ranks = sw->ranks;
    if (!sw->ranks && strcmp(r->cfg.device, "cuda") == 0 && r->cfg.train.data_parallel > 1)
        _exit(train_data_parallel(&r->cfg, &opt));
    _exit(train_run(&r->cfg, &opt));
}

static bool on_terminal;

static void status_line(const Sweep *sw, int done, int total, const int *running_idx, int n_running) {
    char line[1024];
    size_t n = (size_t)snprintf(line, sizeof line, "runs %d/%d done", done, total);
    for (int i = 0; i < n_running && n < sizeof line; i++) {
        const SweepRun *r = &sw->runs[running_idx[i]];
        char *dir = sweep_run_dir(sw, r);
        int step;
        double loss;
        if (latest_metrics(dir, &step, &loss))
            n += (size_t)snprintf(line + n, sizeof line - n, " | %s: step %d/%d, loss %.4f", r->name, step,
                                  r->cfg.train.steps, loss);
        else n += (size_t)snprintf(line + n, sizeof line - n, " | %s: starting", r->name);
        free(dir);
    }
    printf("\r\033[K%s", line);
    set_status_line_open(true);
    fflush(stdout);
}

/* The runs of a sweep in flight, a process per slot. */
typedef struct {
    Sweep *sw;
    int jobs, total, done, failed, next, n_running;
    bool *todo, *started;
    int *order; /* run indices in the order they start (start_order) */
    pid_t *pids;
    bool *told; /* a stop was passed to this slot's run */
    int *slot_run;
    double last_status;
} Jobs;

TrainOptions sweep_run_options(const SweepRun *r) {
    TrainOptions opt = {.resume = true, .in_sweep = true};
    train_options_set_overrides(&opt, r->n_overrides, r->paths, r->values);
    return opt;
}

bool sweep_run_finished(const Sweep *sw, const SweepRun *r) {
    cJSON *o = sweep_read_summary(sw, r);
    const char *st = o ? sweep_json_string(o, "status") : NULL;
    bool finished = st && strcmp(st, "finished") == 0;
    cJSON_Delete(o);
    return finished;
}

/* whether run i is one --runs names (every run without --runs) */
static bool picked(const Sweep *sw, int i) {
    if (!sw->pick) return true;
    for (int k = 0; k < sw->n_pick; k++)
        if (sw->pick[k] == i) return true;
    return false;
}

/* Marks the runs still to do and counts the runs the sweep will have trained (total): only a
 * finished run is done (a failed one is tried again from its last checkpoint: a full disk passes,
 * a non-finite loss comes back at once; the others resume). With select.tune_seeds a run is to do
 * once it is wanted (sweep_select.c), and the runs are found again as tuning runs end; a run this
 * sweep started already is never started twice. Returns the runs waiting for their tuning. */
static int find_todo(Jobs *j) {
    const Sweep *sw = j->sw;
    RunNeed *need = sweep_run_needs(sw);
    int waiting = 0;
    j->total = 0;
    for (int i = 0; i < sw->n_runs; i++) {
        bool over = sweep_run_finished(sw, &sw->runs[i]);
        j->todo[i] = !over && !j->started[i] && need[i] == RUN_WANTED && (!sw->only || i == sw->only - 1) &&
                     picked(sw, i);
        j->total += picked(sw, i) && (over || need[i] != RUN_NOT_CHOSEN);
        waiting += !over && need[i] == RUN_WAITING;
    }
    j->next = 0;
    free(need);
    return waiting;
}

/* the finished runs among those the sweep trains (--runs: those it names) */
static int count_finished(const Sweep *sw) {
    int done = 0;
    for (int i = 0; i < sw->n_runs; i++) done += picked(sw, i) && sweep_run_finished(sw, &sw->runs[i]);
    return done;
}

static void install_sweep_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sweep_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* "started NAME", or "resumed NAME at step N" when its checkpoint says where it goes on from;
 * "on GPU g" with placement. */
static void say_started(const Sweep *sw, const SweepRun *r, const char *gpu) {
    char *checkpoint = sweep_run_checkpoint(sw, r);
    Error err = {0};
    int step;
    if (path_exists(checkpoint) && checkpoint_read_step(checkpoint, &step, &err))
        printf("resumed %s at step %d", r->name, step);
    else
        printf("started %s", r->name);
    if (gpu) printf(" on GPU%s %s", strchr(gpu, ',') ? "s" : "", gpu);
    printf("\n");
    free(checkpoint);
}

/* Runs start seed by seed (by number within a seed): every setting's first seed before any
 * setting's second, so a sweep cut short by a time limit leaves a whole picture at one seed
 * rather than every seed of the first settings and nothing of the rest. */
static int *start_order(const Sweep *sw) {
    int *order = xmalloc(sizeof(int) * (size_t)(sw->n_runs ? sw->n_runs : 1));
    if (sw->pick) { /* --runs: its order, then the others (never to do) */
        int n = 0;
        for (int k = 0; k < sw->n_pick; k++) order[n++] = sw->pick[k];
        for (int i = 0; i < sw->n_runs; i++)
            if (!picked(sw, i)) order[n++] = i;
        return order;
    }
    for (int i = 0; i < sw->n_runs; i++) { /* insertion sort: stable, and sweeps are small */
        int k = i;
        while (k > 0 && sw->runs[order[k - 1]].cfg.seed > sw->runs[i].cfg.seed) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
    }
    return order;
}

/* Forks the next runs to do into the free slots; none once a stop was asked for. */
static void start_runs(Jobs *j) {
    while (!sweep_stop && j->n_running < j->jobs) {
        while (j->next < j->sw->n_runs && !j->todo[j->order[j->next]]) j->next++;
        if (j->next == j->sw->n_runs) break;
        int slot = 0, run = j->order[j->next++];
        while (j->pids[slot]) slot++;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) die("cannot start a run: fork failed");
        if (pid == 0) run_child(j->sw, &j->sw->runs[run], j->jobs, slot);
        j->pids[slot] = pid;
        j->started[run] = true;
        j->told[slot] = false;
        j->slot_run[slot] = run;
        j->n_running++;
        if (!on_terminal) say_started(j->sw, &j->sw->runs[j->slot_run[slot]], slot_gpu(j->sw, slot));
    }
}

/* While no run ends: a stop passed on to each run once, the status line, a short sleep. */
static void wait_for_runs(Jobs *j) {
    if (sweep_stop)
        for (int s = 0; s < j->jobs; s++)
            if (j->pids[s] && !j->told[s]) { /* each run finishes its step, checkpoints and stops */
                kill(j->pids[s], SIGINT);
                j->told[s] = true;
            }
    if (on_terminal && now_seconds() - j->last_status > 0.5) {
        int idx[64], k = 0;
        for (int s = 0; s < j->jobs && k < 64; s++)
            if (j->pids[s]) idx[k++] = j->slot_run[s];
        status_line(j->sw, j->done, j->total, idx, k);
        j->last_status = now_seconds();
    }
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* How an ended run went, from its exit status and summary.json; counts it done or failed. */
static void describe_end(Jobs *j, const SweepRun *r, int status, bool told, char *what, size_t len) {
    const Sweep *sw = j->sw;
    cJSON *o = sweep_read_summary(sw, r);
    const char *st = o ? sweep_json_string(o, "status") : NULL;
    if (WIFSIGNALED(status) && told) {
        /* the run's own handler takes the first stop and checkpoints: dying of it means the handler
         * was not in place yet, or that another signal reached the run from outside the sweep */
        snprintf(what, len, "ended by signal %d without checkpointing the stop (before training began, or a "
                 "second signal from outside the sweep); its last checkpoint, if any, resumes it", WTERMSIG(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(what, len, "crashed (signal %d); see %s/logs/%s.log", WTERMSIG(status), sw->dir, r->name);
        j->failed++;
    } else if (st && strcmp(st, "failed") == 0) {
        snprintf(what, len, "failed: %s", sweep_json_string(o, "reason") ? sweep_json_string(o, "reason") : "?");
        j->failed++;
        j->done++;
    } else if (st && strcmp(st, "finished") == 0 && task_lookup(r->cfg.task)->measure) {
        snprintf(what, len, "finished (%s)", task_lookup(r->cfg.task)->result_file);
        j->done++;
    } else if (st && strcmp(st, "finished") == 0) {
        const cJSON *vl = cJSON_GetObjectItemCaseSensitive(o, "val_loss");
        const cJSON *va = cJSON_GetObjectItemCaseSensitive(o, "val_accuracy");
        snprintf(what, len, "finished: val loss %.4f, accuracy %.4f%s", cJSON_IsNumber(vl) ? vl->valuedouble : NAN,
                 cJSON_IsNumber(va) ? va->valuedouble : NAN, sweep_not_learned(o) ? " (not learned)" : "");
        j->done++;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && !(st && strcmp(st, "interrupted") == 0)) {
        snprintf(what, len, "stopped with status %d; see %s/logs/%s.log", WEXITSTATUS(status), sw->dir, r->name);
        j->failed++;
    } else {
        snprintf(what, len, "%s", st ? st : "ended");
    }
    cJSON_Delete(o);
}

/* Process pid ended: its slot is freed, its line printed, the summary rewritten. */
static void run_ended(Jobs *j, pid_t pid, int status) {
    int slot = 0;
    while (slot < j->jobs && j->pids[slot] != pid) slot++;
    if (slot == j->jobs) return;
    SweepRun *r = &j->sw->runs[j->slot_run[slot]];
    j->pids[slot] = 0;
    j->n_running--;
    char what[256];
    describe_end(j, r, status, j->told[slot], what, sizeof what);
    end_status_line();
    printf("[%d/%d] %s %s\n", j->done, j->total, r->name, what);
    fflush(stdout);
    sweep_write_summary(j->sw);
    if (j->sw->select.n_tune_seeds) find_todo(j); /* the tuning may have chosen */
}

int sweep_run(Sweep *sw, int jobs) {
    Error err;
    sweep_settle_changed_runs(sw);
    char *logs = xasprintf("%s/logs", sw->dir);
    if (!mkdir_p(logs, &err)) die("%s", err.msg);
    free(logs);
    on_terminal = isatty(STDOUT_FILENO);
    Jobs j = {.sw = sw, .jobs = jobs, .todo = xcalloc((size_t)sw->n_runs + 1, sizeof(bool)),
              .started = xcalloc((size_t)sw->n_runs + 1, sizeof(bool)), .order = start_order(sw)};
    int waiting = find_todo(&j);
    j.done = count_finished(sw);
    if (sw->only) {
        RunNeed *need = sweep_run_needs(sw);
        const SweepRun *r = &sw->runs[sw->only - 1];
        RunNeed n = need[sw->only - 1];
        free(need);
        bool over = sweep_run_finished(sw, r);
        if (!over && n != RUN_WANTED) { /* select.tune_seeds */
            printf("sweep '%s': run %d (%s) %s; nothing run\n", sw->experiment, sw->only, r->name,
                   n == RUN_WAITING ? "waits for the tuning runs of its setting (select.tune_seeds): run it when they are done"
                                    : "is not chosen: its setting's tuning runs chose another value (select.tune_seeds)");
            free(j.todo);
            free(j.started);
            free(j.order);
            return n == RUN_WAITING ? 1 : 0;
        }
        printf("sweep '%s': run %d of %d (%s)%s; results in %s/ (logs in %s/logs/)\n", sw->experiment, sw->only,
               sw->n_runs, r->name, over ? ", already done" : "", sw->dir, sw->dir);
    } else if (sw->pick) {
        printf("sweep '%s': %d of its %d runs (--runs), %d already done, %d job%s; results in %s/ (logs in %s/logs/)\n",
               sw->experiment, j.total, sw->n_runs, j.done, jobs, jobs == 1 ? "" : "s", sw->dir, sw->dir);
    } else {
        printf("sweep '%s': %d run%s, %d already done, %d job%s; results in %s/ (logs in %s/logs/)\n",
               sw->experiment, j.total, j.total == 1 ? "" : "s", j.done, jobs, jobs == 1 ? "" : "s", sw->dir, sw->dir);
        if (sw->select.n_tune_seeds)
            printf("select.tune_seeds: %d run%s of other seeds train once their settings' tuning runs are done, %d "
                   "not chosen\n", waiting, waiting == 1 ? "" : "s", sw->n_runs - j.total);
    }
    fflush(stdout);
    sweep_write_summary(sw);
    install_sweep_signal_handlers();
    j.pids = xcalloc((size_t)jobs, sizeof(pid_t));
    j.told = xcalloc((size_t)jobs, sizeof(bool));
    j.slot_run = xcalloc((size_t)jobs, sizeof(int));
    sweep_pid = getpid();
    double start = now_seconds();
    bool timed_out = false;
    for (;;) {
        if (sw->stop_after > 0 && !sweep_stop && now_seconds() - start >= sw->stop_after) {
            end_status_line();
            printf("sweep '%s': --stop-after %g s reached: no run starts, each running one stops at the end of its "
                   "step with a checkpoint\n", sw->experiment, sw->stop_after);
            fflush(stdout);
            sweep_stop = SIGINT; /* what a Ctrl-C does */
            timed_out = true;
        }
        start_runs(&j);
        if (j.n_running == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == EINTR)) wait_for_runs(&j);
        else if (pid < 0) break;
        else run_ended(&j, pid, status);
    }
    end_status_line();
    sweep_write_summary(sw);
    printf("sweep '%s': %d of %d runs done%s; %s/summary.csv, summary.md%s\n", sw->experiment, j.done, j.total,
           j.failed ? " (some failed: see the status column)" : "", sw->dir, sw->select.metric ? ", selected.csv" : "");
    free(j.todo);
    free(j.started);
    free(j.order);
    free(j.pids);
    free(j.told);
    free(j.slot_run);
    return timed_out ? 124 : sweep_stop ? 130 : 0;
}
