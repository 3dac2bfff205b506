/* See lua_sandbox.h. The limits live in the allocator's user data and an instruction-count
 * hook; the restricted library is the standard one with the dangerous entries swapped for stubs
 * (so a config that calls one learns which, rather than "attempt to call a nil value"). */
#include "lua_sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua_bounds.h"

static bool trusted;
static double time_limit = SANDBOX_MAX_SECONDS;

void sandbox_set_time_limit(double seconds) { time_limit = seconds > 0 ? seconds : SANDBOX_MAX_SECONDS; }

void sandbox_trust(bool t) { trusted = t; }
bool sandbox_trusted(void) { return trusted; }

typedef struct {
    size_t used, limit;
    bool over;         /* an allocation was refused for the limit */
    bool endless;      /* the instruction limit was reached */
    atomic_bool overtime; /* set by the watchdog: the config ran SANDBOX_MAX_SECONDS */
    long instructions; /* counted in steps of HOOK_STEP */
} Budget;

enum { HOOK_STEP = 10000 };

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    Budget *b = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        b->used -= old;
        return NULL;
    }
    if (b->limit && nsize > old && b->used - old + nsize > b->limit) {
        b->over = true;
        return NULL; /* Lua raises "not enough memory" */
    }
    if (nsize > old && atomic_load(&b->overtime)) return NULL; /* ends a growing C call past the time limit */
    void *p = realloc(ptr, nsize);
    if (p) b->used = b->used - old + nsize;
    return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    Budget *b;
    lua_getallocf(L, (void **)&b);
    b->instructions += HOOK_STEP;
    if (b->instructions > SANDBOX_MAX_INSTRUCTIONS || atomic_load(&b->overtime)) {
        b->endless = true;
        luaL_error(L, "instruction limit");
    }
}

/* a refused function: raises an error naming it */
static int refused(lua_State *L) {
    return luaL_error(L, "%s is not allowed in a config (it could reach the machine); run with --trust-config "
                         "to allow it",
                      lua_tostring(L, lua_upvalueindex(1)));
}

static void refuse(lua_State *L, int table, const char *lib, const char *name) {
    table = lua_absindex(L, table);
    char full[64];
    snprintf(full, sizeof full, "%s%s%s", lib ? lib : "", lib ? "." : "", name);
    lua_pushstring(L, full);
    lua_pushcclosure(L, refused, 1);
    lua_setfield(L, table, name);
}

/* load(chunk [, name [, mode [, env]]]) with the mode forced to text: binary chunks can break
 * the interpreter's safety. The real load is upvalue 1. */
static int text_only_load(lua_State *L) {
    lua_settop(L, lua_gettop(L) < 2 ? 2 : lua_gettop(L));
    lua_pushstring(L, "t");
    if (lua_gettop(L) > 3) lua_replace(L, 3);
    return lua_call_upvalue(L);
}

/* package.searchers[2] replacement: name.lua (dots as folders) from the allowed folders only
 * (upvalue 1: the config's folder or nil; "configs" always), whatever package.path says */
static int allowed_searcher(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    char rel[256];
    size_t n = strlen(name);
    if (n + 5 > sizeof rel || strstr(name, "..")) {
        lua_pushfstring(L, "no module '%s' (names are folder.file under the config's folder or configs/)", name);
        return 1;
    }
    for (size_t i = 0; i <= n; i++) rel[i] = name[i] == '.' ? '/' : name[i];
    strcat(rel, ".lua");
    const char *dirs[2] = {lua_tostring(L, lua_upvalueindex(1)), "configs"};
    luaL_Buffer tried;
    luaL_buffinit(L, &tried);
    for (int d = 0; d < 2; d++) {
        if (!dirs[d]) continue;
        const char *file = lua_pushfstring(L, "%s/%s", dirs[d], rel);
        FILE *f = fopen(file, "r");
        if (f) {
            fclose(f);
            if (luaL_loadfilex(L, file, "t") != LUA_OK)
                return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name, file, lua_tostring(L, -1));
            lua_pushstring(L, file);
            return 2;
        }
        lua_pop(L, 1);
        lua_pushfstring(L, "\n\tno file '%s/%s'", dirs[d], rel);
        luaL_addvalue(&tried);
    }
    luaL_pushresult(&tried);
    return 1;
}

/* setmetatable without finalizers: Lua runs __gc with its hooks off, so a finalizer that loops
 * would escape the instruction limit. The real setmetatable is upvalue 1. */
static int setmetatable_no_gc(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        bool has_gc = lua_rawget(L, 2) != LUA_TNIL;
        lua_pop(L, 1);
        if (has_gc)
            return luaL_error(L, "a __gc finalizer is not allowed in a config (it would run outside the instruction "
                                 "limit); run with --trust-config to allow it");
    }
    return lua_call_upvalue(L);
}

/* a table of stubs standing in for a whole library */
static void refuse_library(lua_State *L, const char *lib, const char *const *names) {
    lua_newtable(L);
    for (int i = 0; names[i]; i++) refuse(L, -1, lib, names[i]);
    lua_setglobal(L, lib);
}

static void restrict_library(lua_State *L, const char *config_dir) {
    /* base */
    lua_pushglobaltable(L);
    refuse(L, -1, NULL, "dofile");
    refuse(L, -1, NULL, "loadfile");
    lua_getfield(L, -1, "load");
    lua_pushcclosure(L, text_only_load, 1);
    lua_setfield(L, -2, "load");
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, setmetatable_no_gc, 1);
    lua_setfield(L, -2, "setmetatable");
    lua_pop(L, 1);
    /* os: the clock only */
    lua_getglobal(L, "os");
    static const char *const os_refused[] = {"execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale", NULL};
    for (int i = 0; os_refused[i]; i++) refuse(L, -1, "os", os_refused[i]);
    lua_pop(L, 1);
    static const char *const io_names[] = {"close", "flush", "input", "lines", "open", "output", "popen", "read",
                                           "tmpfile", "type", "write", NULL};
    refuse_library(L, "io", io_names);
    static const char *const debug_names[] = {"debug", "gethook", "getinfo", "getlocal", "getmetatable", "getregistry",
                                              "getupvalue", "getuservalue", "sethook", "setlocal", "setmetatable",
                                              "setupvalue", "setuservalue", "traceback", "upvalueid", "upvaluejoin",
                                              NULL};
    refuse_library(L, "debug", debug_names);
    lua_getglobal(L, "string");
    refuse(L, -1, "string", "dump");
    lua_pop(L, 1);
    lua_bound_library_work(L);
    /* package: Lua files beside the config and under configs/, no C libraries */
    lua_getglobal(L, "package");
    refuse(L, -1, "package", "loadlib");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "searchers"); /* the preload searcher, then ours */
    for (int i = (int)luaL_len(L, -1); i > 1; i--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
    }
    if (config_dir) lua_pushstring(L, config_dir);
    else lua_pushnil(L);
    lua_pushcclosure(L, allowed_searcher, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

lua_State *sandbox_new(const char *config_path, Error *err) {
    Budget *b = calloc(1, sizeof *b);
    if (!b) die("out of memory");
    b->limit = trusted ? 0 : (size_t)SANDBOX_MAX_BYTES;
    lua_State *L = lua_newstate(limited_alloc, b);
    if (!L) {
        free(b);
        error_set(err, "%s: cannot create a Lua state", config_path ? config_path : "config");
        return NULL;
    }
    luaL_openlibs(L);
    char *dir = config_path ? path_dirname(config_path) : NULL;
    if (trusted) {
        if (dir) { /* the usual search path, with the config's folder and configs/ first */
            lua_getglobal(L, "package");
            lua_getfield(L, -1, "path");
            char *path = xasprintf("%s/?.lua;configs/?.lua;%s", dir, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
            lua_pop(L, 1);
            lua_pushstring(L, path);
            lua_setfield(L, -2, "path");
            lua_pop(L, 1);
            free(path);
        }
    } else {
        restrict_library(L, dir);
        lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    }
    free(dir);
    return L;
}

/* A time limit behind the instruction limit: C library functions (a long string concatenation)
 * do much work in few Lua instructions. A thread waits time_limit seconds for the config; then it
 * marks the budget overtime, which the count hook turns into an error at the next Lua
 * instruction and the allocator at the next allocation. A config stuck inside one C call that
 * does neither (lua_bounds.c guards the ones known to) gets as long again, and then the process
 * ends with the message (nothing is written while configs run). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
    const char *source;
    Budget *budget;
} Watchdog;

static void *watchdog_main(void *arg) {
    Watchdog *w = arg;
    struct timespec start, deadline;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_mutex_lock(&w->lock);
    for (int stage = 0; stage < 2 && !w->done; stage++) {
        long long ns = (long long)(time_limit * (stage + 1) * 1e9) + start.tv_nsec;
        deadline.tv_sec = start.tv_sec + (time_t)(ns / 1000000000);
        deadline.tv_nsec = (long)(ns % 1000000000);
        while (!w->done && pthread_cond_timedwait(&w->done_cond, &w->lock, &deadline) != ETIMEDOUT) {}
        if (w->done) break;
        if (stage == 0) {
            atomic_store(&w->budget->overtime, true);
        } else {
            dprintf(STDERR_FILENO, "attnlab: %s: the config ran more than %g s inside a library function; stopped\n",
                    w->source, 2 * time_limit);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static int run_watched(lua_State *L, const char *source) {
    Budget *b;
    lua_getallocf(L, (void **)&b);
    Watchdog w = {.done = false, .source = source, .budget = b};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w.done_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w.lock, NULL);
    pthread_t thread;
    bool watching = pthread_create(&thread, NULL, watchdog_main, &w) == 0;
    int status = lua_pcall(L, 0, 1, 0);
    if (watching) {
        pthread_mutex_lock(&w.lock);
        w.done = true;
        pthread_cond_signal(&w.done_cond);
        pthread_mutex_unlock(&w.lock);
        pthread_join(thread, NULL);
    }
    pthread_cond_destroy(&w.done_cond);
    pthread_mutex_destroy(&w.lock);
    /* a config that finished just as the limit passed: reading its result must be able to allocate */
    if (status == LUA_OK) atomic_store(&b->overtime, false);
    return status;
}

bool sandbox_run(lua_State *L, int load_status, const char *source, Error *err) {
    if (load_status == LUA_OK && (trusted ? lua_pcall(L, 0, 1, 0) : run_watched(L, source)) == LUA_OK) return true;
    Budget *b;
    lua_getallocf(L, (void **)&b);
    if (b->over)
        return error_set(err, "%s: the config allocated more than %ld MiB; stopped", source, SANDBOX_MAX_BYTES >> 20);
    if (atomic_load(&b->overtime))
        return error_set(err, "%s: the config ran more than %g s; stopped", source, time_limit);
    if (b->endless)
        return error_set(err, "%s: the config ran more than %ld million Lua instructions (an endless loop?); stopped",
                         source, SANDBOX_MAX_INSTRUCTIONS / 1000000);
    const char *msg = lua_tostring(L, -1);
    if (!msg)
        return error_set(err, "%s: the config raised an error whose value is a %s, not a message", source,
                         luaL_typename(L, -1));
    /* one line: Lua lists a failed require's candidates on lines of their own */
    /* a newline may become "; ", two bytes for one */
    char *flat = xmalloc(2 * strlen(msg) + 1), *w = flat;
    for (const char *r = msg; *r; r++) {
        if (*r == '\n') {
            while (r[1] == '\t' || r[1] == '\n') r++;
            if (r[1] && w > flat && w[-1] != ':') *w++ = ';';
            if (r[1]) *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    error_set(err, "%s", flat);
    free(flat);
    return false;
}

void sandbox_close(lua_State *L) {
    if (!L) return;
    Budget *b;
    lua_getallocf(L, (void **)&b);
    lua_close(L);
    free(b);
}
