/* Loading and validating Lua configs against the schema in config_schema.c. Error messages
 * follow Lua's own: they name the file, the field path, what was expected and what came. */
#include "config.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mixer.h"
#include "core/task.h"
#include "lua_sandbox.h"

/* ---- the field table: the core's, with each registered mixer's section among the model fields ---- */

static Field *all_fields;
static int n_all_fields;

/* the registry's names and defaults where the core's table holds placeholders */
static const char *filled(const char *text) {
    static const struct {
        const char *placeholder;
        MixerSet set;
        bool is_default;
    } slots[] = {{MIXER_NAMES_ALL, MIXERS_ALL, false},        {MIXER_NAMES_LINEAR, MIXERS_LINEAR, false},
                 {MIXER_NAMES_FULL, MIXERS_FULL, false},      {MIXER_DEFAULT, MIXERS_ALL, true},
                 {MIXER_DEFAULT_LINEAR, MIXERS_LINEAR, true}, {MIXER_DEFAULT_FULL, MIXERS_FULL, true}};
    for (size_t i = 0; text && i < sizeof slots / sizeof slots[0]; i++)
        if (strcmp(text, slots[i].placeholder) == 0)
            return slots[i].is_default ? mixer_default(slots[i].set) : mixer_names(slots[i].set);
    return text;
}

static void build_fields(void) {
    int extra = 0, last_model = -1;
    for (int i = 0; i < mixer_count(); i++) extra += mixer_at(i)->n_fields;
    for (int i = 0; i < config_n_core_fields; i++)
        if (strncmp(config_core_fields[i].path, "model.", 6) == 0) last_model = i;
    Field *t = xcalloc((size_t)(config_n_core_fields + extra), sizeof(Field));
    int n = 0;
    for (int i = 0; i < config_n_core_fields; i++) {
        t[n] = config_core_fields[i];
        t[n].choices = filled(t[n].choices);
        t[n].fallback = filled(t[n].fallback);
        n++;
        for (int j = 0; i == last_model && j < mixer_count(); j++) { /* the mixers' sections follow the model's fields */
            const MixerOps *ops = mixer_at(j);
            for (int k = 0; k < ops->n_fields; k++) {
                t[n] = ops->fields[k];
                t[n].path = xasprintf("model.%s.%s", ops->name, ops->fields[k].path);
                t[n++].mixer = j + 1;
            }
        }
    }
    n_all_fields = n;
    all_fields = t;
}

bool config_fields_built(void) { return all_fields != NULL; }

int config_field_count(void) {
    if (!all_fields) build_fields();
    return n_all_fields;
}

const Field *config_field(int i) {
    if (!all_fields) build_fields();
    return &all_fields[i];
}

/* ---- field access ---- */

static void *field_ptr(const Config *c, const Field *f) {
    return f->mixer ? (char *)c->model.mixer_cfg[f->mixer - 1] + f->offset : (char *)c + f->offset;
}

const Field *config_find_field(const char *path) {
    for (int i = 0; i < config_field_count(); i++)
        if (strcmp(config_field(i)->path, path) == 0) return config_field(i);
    return NULL;
}

/* A section is a proper prefix of some field path ("model", "model.hybrid"). */
bool config_is_section(const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < config_field_count(); i++)
        if (strncmp(config_field(i)->path, path, n) == 0 && config_field(i)->path[n] == '.') return true;
    return false;
}

static const char *type_name(const Field *f) {
    switch (f->type) {
    case FIELD_INT: return "an integer";
    case FIELD_NUM: return "a number";
    case FIELD_BOOL: return "a boolean (true or false)";
    case FIELD_STR: return "a string";
    case FIELD_ENUM: return "a string";
    case FIELD_LIST: return "a list of names";
    }
    return "?";
}

static bool enum_has(const char *choices, const char *value) {
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* Formats the allowed range of a numeric field: "in [1, 65536]", "> 0" ... */
static void describe_range(const Field *f, char *buf, size_t len) {
    if (f->type == FIELD_INT) snprintf(buf, len, "an integer in [%.0f, %.0f]", f->min, f->max);
    else snprintf(buf, len, "a number in [%g, %g]", f->min, f->max);
}

/* Stores a number into an int or double field after checking type and range. `where` prefixes
 * messages ("configs/x.lua: field 'train.lr'" or "--set train.lr=..."). */
static bool store_number(Config *c, const Field *f, double v, bool is_integer, const char *where, Error *err) {
    char range[96];
    describe_range(f, range, sizeof range);
    if (f->type == FIELD_INT && (!is_integer && v != floor(v))) return error_set(err, "%s: expected %s, got %g", where, range, v);
    if (!(v >= f->min && v <= f->max)) return error_set(err, "%s: expected %s, got %g", where, range, v);
    if (f->type == FIELD_INT) *(int *)field_ptr(c, f) = (int)v;
    else *(double *)field_ptr(c, f) = v;
    return true;
}

static bool store_string(Config *c, const Field *f, const char *s, const char *where, Error *err) {
    if (f->type == FIELD_ENUM && !enum_has(f->choices, s)) {
        return error_set(err, "%s: expected one of %s, got '%s'", where, f->choices, s);
    }
    char **slot = field_ptr(c, f);
    free(*slot);
    *slot = xstrdup(s);
    return true;
}

static void list_clear(NameList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static bool list_append(NameList *l, const Field *f, const char *item, int index, const char *where, Error *err) {
    if (!enum_has(f->choices, item))
        return error_set(err, "%s: item %d: expected one of %s, got '%s'", where, index, f->choices, item);
    l->items = xrealloc(l->items, sizeof(char *) * (size_t)(l->n + 1));
    l->items[l->n++] = xstrdup(item);
    return true;
}

/* Sets a field from command-line text; the defaults in the schema go through here too. */
static bool set_from_text(Config *c, const Field *f, const char *text, const char *where, Error *err) {
    switch (f->type) {
    case FIELD_INT: {
        long v;
        double d;
        if (parse_long(text, &v)) return store_number(c, f, (double)v, true, where, err);
        if (parse_double(text, &d)) return store_number(c, f, d, false, where, err);
        char range[96];
        describe_range(f, range, sizeof range);
        return error_set(err, "%s: expected %s, got '%s'", where, range, text);
    }
    case FIELD_NUM: {
        double d;
        if (!parse_double(text, &d) || !isfinite(d)) {
            char range[96];
            describe_range(f, range, sizeof range);
            return error_set(err, "%s: expected %s, got '%s'", where, range, text);
        }
        return store_number(c, f, d, false, where, err);
    }
    case FIELD_BOOL:
        if (strcmp(text, "true") == 0) *(bool *)field_ptr(c, f) = true;
        else if (strcmp(text, "false") == 0) *(bool *)field_ptr(c, f) = false;
        else return error_set(err, "%s: expected true or false, got '%s'", where, text);
        return true;
    case FIELD_STR:
    case FIELD_ENUM: return store_string(c, f, text, where, err);
    case FIELD_LIST: { /* comma-separated: --set model.layers=a,a,a,b */
        NameList *l = field_ptr(c, f);
        list_clear(l);
        char *copy = xstrdup(text), *save = NULL;
        int index = 1;
        bool ok = true;
        for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save))
            ok = list_append(l, f, tok, index++, where, err);
        free(copy);
        return ok;
    }
    }
    return false;
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < mixer_count(); i++) c->model.mixer_cfg[i] = xcalloc(1, mixer_at(i)->config_size + 1);
    for (int i = 0; i < config_field_count(); i++) {
        const Field *f = config_field(i);
        Error err;
        if (!set_from_text(c, f, f->fallback, f->path, &err)) die("internal: bad default for %s: %s", f->path, err.msg);
    }
}

/* ---- "did you mean" ---- */

static const char *closest_name(const char *path) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; i < config_field_count(); i++) {
        /* fields and the sections above them are both candidates */
        const char *p = config_field(i)->path;
        for (const char *dot = p;; dot++) {
            if (*dot == '.' || *dot == '\0') {
                char cand[128];
                size_t n = (size_t)(dot - p);
                if (n >= sizeof cand) break;
                memcpy(cand, p, n);
                cand[n] = '\0';
                int d = edit_distance(path, cand);
                if (d < best_d) {
                    best_d = d;
                    best = config_find_field(cand) ? config_find_field(cand)->path : NULL;
                    if (!best) { /* a section name: find a stable pointer to it */
                        static char section[128];
                        strcpy(section, cand);
                        best = section;
                    }
                }
            }
            if (*dot == '\0') break;
        }
    }
    int limit = (int)strlen(path) / 3;
    if (limit < 2) limit = 2;
    return best_d <= limit ? best : NULL;
}

bool config_unknown_field(const char *path, const char *source, Error *err) {
    const char *guess = closest_name(path);
    if (guess) return error_set(err, "unknown field '%s' in %s (did you mean '%s'?)", path, source, guess);
    return error_set(err, "unknown field '%s' in %s (see 'attnlab help config')", path, source);
}

/* ---- Lua tables ---- */

static bool apply_table(lua_State *L, int idx, const char *prefix, Config *c, const char *source, Error *err) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return error_set(err, "%s: %s%shas a key that is not a name (%s); config tables hold named fields", source,
                             prefix[0] ? "table '" : "the returned table ", prefix[0] ? prefix : "",
                             luaL_typename(L, -2));
        }
        const char *key = lua_tostring(L, -2);
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
        const Field *f = config_find_field(path);
        char where[320];
        snprintf(where, sizeof where, "%s: field '%s'", source, path);
        bool ok = true;
        if (f) {
            int t = lua_type(L, -1);
            if ((f->type == FIELD_INT || f->type == FIELD_NUM) && t == LUA_TNUMBER) {
                ok = store_number(c, f, lua_tonumber(L, -1), lua_isinteger(L, -1), where, err);
            } else if (f->type == FIELD_BOOL && t == LUA_TBOOLEAN) {
                *(bool *)field_ptr(c, f) = lua_toboolean(L, -1);
            } else if ((f->type == FIELD_STR || f->type == FIELD_ENUM) && t == LUA_TSTRING) {
                ok = store_string(c, f, lua_tostring(L, -1), where, err);
            } else if (f->type == FIELD_LIST && t == LUA_TTABLE) {
                NameList *l = field_ptr(c, f);
                list_clear(l);
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= n && ok; i++) {
                    lua_rawgeti(L, -1, i);
                    if (lua_type(L, -1) != LUA_TSTRING)
                        ok = error_set(err, "%s: item %lld: expected one of %s, got %s", where, (long long)i, f->choices,
                                       luaL_typename(L, -1));
                    else ok = list_append(l, f, lua_tostring(L, -1), (int)i, where, err);
                    lua_pop(L, 1);
                }
            } else {
                char what[128];
                if (f->type == FIELD_ENUM) snprintf(what, sizeof what, "one of %s", f->choices);
                else if (f->type == FIELD_LIST) snprintf(what, sizeof what, "a list of %s", f->choices);
                else if (f->type == FIELD_INT || f->type == FIELD_NUM) describe_range(f, what, sizeof what);
                else snprintf(what, sizeof what, "%s", type_name(f));
                ok = error_set(err, "%s: expected %s, got %s", where, what, luaL_typename(L, -1));
            }
        } else if (config_is_section(path)) {
            if (lua_type(L, -1) != LUA_TTABLE)
                ok = error_set(err, "%s: expected a table (a section of fields), got %s", where, luaL_typename(L, -1));
            else ok = apply_table(L, -1, path, c, source, err);
        } else {
            ok = config_unknown_field(path, source, err);
        }
        lua_pop(L, 1);
        if (!ok) {
            lua_pop(L, 1);
            return false;
        }
    }
    return true;
}

static void format_number(double v, char *out, size_t len);

bool config_apply_table(Config *c, lua_State *L, int idx, const char *source, Error *err) {
    return apply_table(L, idx, "", c, source, err);
}

void config_field_text(const Config *c, const Field *f, char *buf, size_t len) {
    const void *p = field_ptr(c, f);
    switch (f->type) {
    case FIELD_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case FIELD_NUM: format_number(*(const double *)p, buf, len); break;
    case FIELD_BOOL: snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false"); break;
    case FIELD_STR:
    case FIELD_ENUM: snprintf(buf, len, "%s", *(char *const *)p); break;
    case FIELD_LIST: {
        const NameList *l = p;
        size_t n = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && n < len; i++) n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", l->items[i]);
        break;
    }
    }
}

/* "--set a=1, b=2" for messages */
static void sets_text(char **sets, int n, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "--set ");
    for (int i = 0; i < n && k < len; i++) k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", sets[i]);
}

static bool load_chunk(Config *c, lua_State *L, int load_status, const char *source, char **overrides,
                       int n_overrides, Error *err) {
    if (!sandbox_run(L, load_status, source, err)) return false;
    if (lua_type(L, -1) != LUA_TTABLE)
        return error_set(err, "%s: expected the config to return a table, got %s", source, luaL_typename(L, -1));
    if (!apply_table(L, -1, "", c, source, err)) return false;
    Error file_err;
    bool file_ok = n_overrides && config_check(c, &file_err); /* the file alone, to blame the right one */
    for (int i = 0; i < n_overrides; i++)
        if (!config_set(c, overrides[i], err)) return false;
    if (!config_check(c, err)) {
        size_t n = strlen(source);
        if (file_ok && strncmp(err->msg, source, n) == 0 && strncmp(err->msg + n, ": ", 2) == 0) {
            char rule[sizeof err->msg], sets[512];
            snprintf(rule, sizeof rule, "%s", err->msg + n + 2);
            sets_text(overrides, n_overrides, sets, sizeof sets);
            error_set(err, "%s: %s", sets, rule);
        }
        return false;
    }
    for (int i = 0; i < n_overrides; i++) {
        char why[256];
        if (!config_set_takes_effect(c, overrides[i], why, sizeof why))
            return error_set(err, "--set %s has no effect: %s", overrides[i], why);
    }
    return true;
}

bool config_set_takes_effect(const Config *c, const char *assignment, char *why, size_t len) {
    const ModelConfig *m = &c->model;
    const char *eq = strchr(assignment, '=');
    char path[128];
    snprintf(path, sizeof path, "%.*s", eq ? (int)(eq - assignment) : (int)strlen(assignment), assignment);
    if (strcmp(path, "model.mixer") == 0 && (m->layers.n || m->hybrid.ratio[0]))
        return snprintf(why, len, "%s lays out the layers (set model.hybrid.linear or model.hybrid.full)",
                        m->layers.n ? "model.layers" : "model.hybrid.ratio"), false;
    if (strncmp(path, "model.hybrid.", 13) == 0 && strcmp(path, "model.hybrid.ratio") != 0 && !m->hybrid.ratio[0])
        return snprintf(why, len, "model.hybrid.ratio is not set"), false;
    /* a mixer's own section acts only where a layer is that mixer */
    for (int i = 0; i < mixer_count(); i++) {
        const char *name = mixer_at(i)->name;
        size_t n = strlen(name);
        if (strncmp(path, "model.", 6) == 0 && strncmp(path + 6, name, n) == 0 && path[6 + n] == '.' &&
            !config_uses_mixer(m, name))
            return snprintf(why, len, "no layer of the model is %s", name), false;
    }
    /* a task's own section acts only in that task */
    const char *dot = strchr(path, '.');
    char section[64];
    snprintf(section, sizeof section, "%.*s", dot ? (int)(dot - path) : 0, path);
    if (dot && task_lookup(section) && strcmp(section, c->task) != 0)
        return snprintf(why, len, "the task is %s, not %s", c->task, section), false;
    return true;
}

bool config_load(Config *c, const char *path, char **overrides, int n_overrides, Error *err) {
    config_defaults(c);
    c->source_path = xstrdup(path);
    lua_State *L = sandbox_new(path, err);
    if (!L) return false;
    bool ok = load_chunk(c, L, luaL_loadfilex(L, path, "t"), path, overrides, n_overrides, err);
    sandbox_close(L);
    return ok;
}

bool config_load_string(Config *c, const char *source, const char *chunk_name, char **overrides, int n_overrides,
                        Error *err) {
    config_defaults(c);
    c->source_path = xstrdup(chunk_name);
    lua_State *L = sandbox_new(NULL, err);
    if (!L) return false;
    char *name = xasprintf("=%s", chunk_name);
    bool ok = load_chunk(c, L, luaL_loadbufferx(L, source, strlen(source), name, "t"), chunk_name, overrides,
                         n_overrides, err);
    free(name);
    sandbox_close(L);
    return ok;
}

bool config_set(Config *c, const char *assignment, Error *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return error_set(err, "--set %s: expected path=value, e.g. --set train.lr=3e-4", assignment);
    char path[256];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof path) return error_set(err, "--set: field path too long");
    memcpy(path, assignment, n);
    path[n] = '\0';
    const Field *f = config_find_field(path);
    if (!f) {
        if (config_is_section(path)) return error_set(err, "--set %s: '%s' is a section; set one of its fields", assignment, path);
        return config_unknown_field(path, "--set", err);
    }
    char where[320];
    snprintf(where, sizeof where, "--set %s", assignment);
    return set_from_text(c, f, eq + 1, where, err);
}

/* ---- rules between fields ---- */

int config_head_dim(const ModelConfig *m) { return m->head_dim ? m->head_dim : m->d_model / m->n_heads; }

int config_d_ff(const ModelConfig *m) {
    if (m->d_ff) return m->d_ff;
    int h = (8 * m->d_model + 2) / 3;
    return (h + 63) / 64 * 64;
}

/* "L:F" with whole numbers, not both zero. */
static bool parse_ratio(const char *ratio, int *lin, int *full) {
    long a, b;
    const char *colon = strchr(ratio, ':');
    if (!colon || colon == ratio) return false;
    char left[32];
    size_t n = (size_t)(colon - ratio);
    if (n >= sizeof left) return false;
    memcpy(left, ratio, n);
    left[n] = '\0';
    if (!parse_long(left, &a) || !parse_long(colon + 1, &b) || a < 0 || b < 0 || a + b == 0 || a > 1024 || b > 1024)
        return false;
    *lin = (int)a;
    *full = (int)b;
    return true;
}

/* Layer i (from the bottom, 0-based) of an "L:F" hybrid is full attention when i mod (L + F) >= L:
 * a depth that is not a multiple of L + F ends inside a period, linear layers first. */
const char *config_layer_mixer(const ModelConfig *m, int layer) {
    if (m->layers.n) return m->layers.items[layer];
    int lin, full;
    if (m->hybrid.ratio[0] && parse_ratio(m->hybrid.ratio, &lin, &full))
        return layer % (lin + full) >= lin ? m->hybrid.full : m->hybrid.linear;
    return m->mixer;
}

bool config_uses_mixer(const ModelConfig *m, const char *name) {
    for (int l = 0; l < m->n_layers; l++)
        if (strcmp(config_layer_mixer(m, l), name) == 0) return true;
    return false;
}

/* The distinct mixers in the order the layers first use them, with their counts; the number of them. */
static int count_layer_mixers(const ModelConfig *m, const char **names, int *counts, int max) {
    int n = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const char *name = config_layer_mixer(m, l);
        int i = 0;
        while (i < n && strcmp(names[i], name) != 0) i++;
        if (i == max) continue;
        if (i == n) names[n] = name, counts[n++] = 0;
        counts[i]++;
    }
    return n;
}

void config_mixers_text(const ModelConfig *m, char *out, size_t len) {
    enum { MAX_KINDS = 32 }; /* distinct mixers: the registry's few */
    const char *names[MAX_KINDS];
    int counts[MAX_KINDS];
    int n = count_layer_mixers(m, names, counts, MAX_KINDS);
    if (n <= 1) {
        snprintf(out, len, "%s", n ? names[0] : m->mixer);
        return;
    }
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%d %s", i ? ", " : "", counts[i], names[i]);
}

void config_layers_text(const ModelConfig *m, char *out, size_t len) {
    char mixers[128];
    config_mixers_text(m, mixers, sizeof mixers);
    bool mixed = strchr(mixers, ' ') != NULL;
    snprintf(out, len, "%d layer%s%s%s%s", m->n_layers, m->n_layers == 1 ? "" : "s", mixed ? " (" : " of ", mixers,
             mixed ? ")" : "");
}

double config_out_init_std(const ModelConfig *m) {
    return m->rescale_residual_init ? m->init_std / sqrt(2.0 * m->n_layers) : m->init_std;
}

static bool check_model(const ModelConfig *m, const char *src, Error *err) {
    if (!m->head_dim && m->d_model % m->n_heads != 0)
        return error_set(err, "%s: model.d_model (%d) is not a multiple of model.n_heads (%d); set model.head_dim", src,
                         m->d_model, m->n_heads);
    int lin, full;
    if (m->hybrid.ratio[0] && strcmp(m->hybrid.ratio, "0:0") == 0)
        return error_set(err, "%s: field 'model.hybrid.ratio': '0:0' has no layers (L + F must be at least 1)", src);
    if (m->hybrid.ratio[0] && !parse_ratio(m->hybrid.ratio, &lin, &full))
        return error_set(err, "%s: field 'model.hybrid.ratio': expected 'L:F' with whole numbers, e.g. '3:1', got '%s'",
                         src, m->hybrid.ratio);
    if (m->layers.n && m->hybrid.ratio[0])
        return error_set(err, "%s: model.layers and model.hybrid.ratio both set the layer pattern; keep one", src);
    if (m->layers.n && m->layers.n != m->n_layers)
        return error_set(err, "%s: model.layers lists %d mixers but model.n_layers is %d", src, m->layers.n, m->n_layers);
    /* each mixer checks its own section, when some layer uses it */
    for (int i = 0; i < mixer_count(); i++) {
        const MixerOps *ops = mixer_at(i);
        if (ops->check && config_uses_mixer(m, ops->name) && !ops->check(ops, m, m->mixer_cfg[i], src, err)) return false;
    }
    return true;
}

bool config_check(Config *c, Error *err) {
    const char *src = c->source_path ? c->source_path : "config";
    if (!check_model(&c->model, src, err)) return false;
    if (c->experiment[0] == '\0') {
        free(c->experiment);
        c->experiment = c->source_path ? path_stem(c->source_path) : xstrdup("default");
    }
    const char *names[2] = {c->experiment, c->run};
    const char *fields[2] = {"experiment", "run"};
    for (int i = 0; i < 2; i++) {
        const char *s = names[i];
        if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strchr(s, '/'))
            return error_set(err, "%s: field '%s': expected a plain folder name, got '%s'", src, fields[i], s);
    }
    if (strcmp(c->task, "mqar") == 0 && c->mqar.epochs > 0) {
        /* epochs are counted in whole steps: every example is seen at least `epochs` times */
        if (c->mqar.train_examples == 0)
            return error_set(err, "%s: field 'mqar.epochs' = %d needs a fixed training set: set mqar.train_examples", src,
                             c->mqar.epochs);
        long long per_step = (long long)c->train.batch_size * c->train.grad_accum;
        long long steps = ((long long)c->mqar.epochs * c->mqar.train_examples + per_step - 1) / per_step;
        const Field *f = config_find_field("train.steps");
        if (steps > (long long)f->max)
            return error_set(err, "%s: mqar.epochs = %d of %d examples is %lld steps, more than train.steps allows (%.0f)",
                             src, c->mqar.epochs, c->mqar.train_examples, steps, f->max);
        c->train.steps = (int)steps;
    }
    if (c->debug.nan_layer >= c->model.n_layers)
        return error_set(err, "%s: field 'debug.nan_layer': expected a layer below model.n_layers = %d, got %d", src,
                         c->model.n_layers, c->debug.nan_layer);
    return true;
}

/* ---- writing the resolved config ---- */

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    while (*len + (size_t)n + 1 > *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        *buf = xrealloc(*buf, *cap);
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

/* Shortest %g form that reads back to the same double. */
static void format_number(double v, char *out, size_t len) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static void append_quoted(char **buf, size_t *len, size_t *cap, const char *s) {
    append(buf, len, cap, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') append(buf, len, cap, "\\%c", *p);
        else if (*p < 32 || *p == 127) append(buf, len, cap, "\\%03d", *p);
        else append(buf, len, cap, "%c", *p);
    }
    append(buf, len, cap, "\"");
}

/* Number of leading path components two section paths share. */
static int common_depth(char parts_a[][64], int na, char parts_b[][64], int nb) {
    int d = 0;
    while (d < na && d < nb && strcmp(parts_a[d], parts_b[d]) == 0) d++;
    return d;
}

static int split_path(const char *path, char parts[][64], int max) {
    int n = 0;
    const char *p = path;
    while (*p && n < max) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len > 63) len = 63;
        memcpy(parts[n], p, len);
        parts[n][len] = '\0';
        n++;
        if (!dot) break;
        p = dot + 1;
    }
    return n;
}

char *config_to_lua(const Config *c, const char *header_comment) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (header_comment) append(&buf, &len, &cap, "-- %s\n", header_comment);
    append(&buf, &len, &cap, "return {\n");
    char open[8][64];
    int depth = 0;
    for (int i = 0; i < config_field_count(); i++) {
        const Field *f = config_field(i);
        char parts[8][64];
        int np = split_path(f->path, parts, 8);
        int keep = common_depth(open, depth, parts, np - 1);
        while (depth > keep) {
            depth--;
            append(&buf, &len, &cap, "%*s},\n", 2 * (depth + 1), "");
        }
        while (depth < np - 1) {
            append(&buf, &len, &cap, "%*s%s = {\n", 2 * (depth + 1), "", parts[depth]);
            strcpy(open[depth], parts[depth]);
            depth++;
        }
        append(&buf, &len, &cap, "%*s%s = ", 2 * (depth + 1), "", parts[np - 1]);
        const void *p = field_ptr(c, f);
        char num[64];
        switch (f->type) {
        case FIELD_INT: append(&buf, &len, &cap, "%d", *(const int *)p); break;
        case FIELD_NUM:
            format_number(*(const double *)p, num, sizeof num);
            append(&buf, &len, &cap, "%s", num);
            break;
        case FIELD_BOOL: append(&buf, &len, &cap, "%s", *(const bool *)p ? "true" : "false"); break;
        case FIELD_STR:
        case FIELD_ENUM: append_quoted(&buf, &len, &cap, *(char *const *)p); break;
        case FIELD_LIST: {
            const NameList *l = p;
            append(&buf, &len, &cap, "{");
            for (int j = 0; j < l->n; j++) {
                append(&buf, &len, &cap, j ? ", " : " ");
                append_quoted(&buf, &len, &cap, l->items[j]);
            }
            append(&buf, &len, &cap, l->n ? " }" : "}");
            break;
        }
        }
        append(&buf, &len, &cap, ",\n");
    }
    while (depth > 0) {
        depth--;
        append(&buf, &len, &cap, "%*s},\n", 2 * (depth + 1), "");
    }
    append(&buf, &len, &cap, "}\n");
    return buf;
}

/* ---- help ---- */

void config_print_help(FILE *out) {
    fprintf(out, "Config fields (a Lua file returns a table of these; --set path=value overrides any):\n");
    const char *prev = NULL; /* the previous field's path; its section is its first prev_len chars */
    size_t prev_len = 0;
    for (int i = 0; i < config_field_count(); i++) {
        const Field *f = config_field(i);
        const char *dot = strrchr(f->path, '.');
        size_t slen = dot ? (size_t)(dot - f->path) : 0;
        if (!prev || prev_len != slen || strncmp(prev, f->path, slen) != 0)
            fprintf(out, "\n[%.*s]\n", slen ? (int)slen : 9, slen ? f->path : "top level");
        prev = f->path;
        prev_len = slen;
        char type[160];
        switch (f->type) {
        case FIELD_INT: snprintf(type, sizeof type, "int %.0f..%.0f", f->min, f->max); break;
        case FIELD_NUM: snprintf(type, sizeof type, "number %g..%g", f->min, f->max); break;
        case FIELD_BOOL: snprintf(type, sizeof type, "bool"); break;
        case FIELD_STR: snprintf(type, sizeof type, "string"); break;
        case FIELD_ENUM: snprintf(type, sizeof type, "%s", f->choices); break;
        case FIELD_LIST: snprintf(type, sizeof type, "list"); break;
        }
        const char *def = f->fallback[0] ? f->fallback : f->type == FIELD_LIST ? "{}" : "\"\"";
        fprintf(out, "  %-28s %-24s default %-10s %s\n", f->path, type, def, f->doc);
    }
}

void config_free(Config *c) {
    for (int i = 0; i < config_field_count() && c->model.mixer_cfg[0]; i++) {
        const Field *f = config_field(i);
        if (f->type == FIELD_STR || f->type == FIELD_ENUM) free(*(char **)field_ptr(c, f));
        if (f->type == FIELD_LIST) list_clear(field_ptr(c, f));
    }
    for (int i = 0; i < MIXERS_MAX; i++) free(c->model.mixer_cfg[i]);
    free(c->source_path);
    memset(c, 0, sizeof *c);
}
