/* See lua_bounds.h. string.rep's guard is C; the others are Lua functions that check their
 * arguments with the C checks below and then call the library's own function. */
#include "lua_bounds.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int lua_call_upvalue(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* Raises msg at the position of the config: level 1 is the guard, level 2 its caller. */
static int error_at_caller(lua_State *L, const char *msg) {
    luaL_where(L, 2);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    return lua_error(L);
}

/* string.rep(s, n [, sep]) in C (configs call it in loops): with s and sep empty the result is ""
 * for any n, where Lua's loop would still run n times (up to 2^63). Otherwise the result's size
 * bounds the loop and the memory limit bounds the size. The arguments are checked here, as
 * lstrlib checks them, so that errors name the config's line (an error raised by the library's
 * function under this one would name no line). */
static int rep_bounded(lua_State *L) {
    size_t len, sep_len;
    luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &sep_len);
    if (n <= 0 || len + sep_len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (len + sep_len < len || len + sep_len > (size_t)INT_MAX / (lua_Unsigned)n)
        return luaL_error(L, "resulting string too large");
    return lua_call_upvalue(L);
}

/* check_move(f, e): table.move visits e - f + 1 indices whatever the tables hold. */
static int check_move(lua_State *L) {
    int f_ok, e_ok; /* 2^40 is a float: what table.move accepts as an integer counts */
    lua_Integer f = lua_tointegerx(L, 1, &f_ok), e = lua_tointegerx(L, 2, &e_ok);
    if (!f_ok || !e_ok) return 0; /* table.move reports bad arguments */
    if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= (lua_Unsigned)LUA_MAX_MOVE) {
        char msg[192];
        snprintf(msg, sizeof msg,
                 "table.move of %llu elements: more than a config may move (%ld); run with --trust-config to allow it",
                 (unsigned long long)((lua_Unsigned)e - (lua_Unsigned)f) + 1ULL, (long)LUA_MAX_MOVE);
        return error_at_caller(L, msg);
    }
    return 0;
}

/* Skips one single-character class of a Lua pattern starting at p[i] (".", "%a", "x", "[set]"). */
static size_t skip_class(const char *p, size_t lp, size_t i) {
    if (p[i] == '%') return i + 2 <= lp ? i + 2 : lp;
    if (p[i] != '[') return i + 1;
    i++;
    if (i < lp && p[i] == '^') i++;
    do { /* a ']' right after '[' or '[^' is literal */
        if (i < lp && p[i] == '%') i++;
        i++;
    } while (i < lp && p[i] != ']');
    return i < lp ? i + 1 : lp;
}

/* An upper bound, up to a constant, on the steps of Lua's backtracking matcher for a pattern over
 * n bytes: each start position, times n + 1 tries for every repetition (*, +, -), back-reference
 * (%1..%9) or balance (%bxy), times 2 for every optional item (?). */
static double pattern_steps(const char *p, size_t lp, size_t n, bool anchor) {
    double steps = 1.0, span = (double)n + 1.0;
    size_t i = 0;
    if (anchor && lp > 0 && p[0] == '^') i = 1;
    else steps = span;
    while (i < lp) {
        if (p[i] == '(' || p[i] == ')') {
            i++;
            continue;
        }
        if (p[i] == '%' && i + 1 < lp && p[i + 1] == 'b') {
            steps *= span;
            i += 4;
            continue;
        }
        if (p[i] == '%' && i + 1 < lp && p[i + 1] == 'f') {
            i = i + 2 < lp ? skip_class(p, lp, i + 2) : lp;
            continue;
        }
        if (p[i] == '%' && i + 1 < lp && p[i + 1] >= '1' && p[i + 1] <= '9') {
            steps *= span;
            i += 2;
            continue;
        }
        i = skip_class(p, lp, i);
        if (i < lp && (p[i] == '*' || p[i] == '+' || p[i] == '-')) {
            steps *= span;
            i++;
        } else if (i < lp && p[i] == '?') {
            steps *= 2.0;
            i++;
        }
    }
    return steps;
}

/* check_pattern(name, s, pattern, plain): string.find/match/gmatch/gsub; find with its fourth
 * argument true searches plainly and passes. */
static int check_pattern(lua_State *L) {
    const char *name = lua_tostring(L, 1);
    size_t n, lp;
    if (!lua_isstring(L, 2) || !lua_isstring(L, 3)) return 0; /* the library reports bad arguments */
    lua_tolstring(L, 2, &n);
    const char *p = lua_tolstring(L, 3, &lp);
    if (strcmp(name, "find") == 0 && lua_toboolean(L, 4)) return 0;
    double steps = pattern_steps(p, lp, n, strcmp(name, "gmatch") != 0);
    if (steps > LUA_MAX_PATTERN_STEPS) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "string.%s: this pattern over %zu bytes could backtrack for ~%.0e steps inside one call, more than "
                 "a config may (%.0e); run with --trust-config to allow it",
                 name, n, steps, LUA_MAX_PATTERN_STEPS);
        return error_at_caller(L, msg);
    }
    return 0;
}

/* The library's functions are called from small Lua functions here (call_*), so their own errors
 * name a line of this chunk ("sandbox:N: ") and the function ('find'); `pass` moves such errors to
 * the config's line (level 2: pass is tail-called by the guard, which the config called) and lets
 * every other error, such as one from a gsub replacement function, through unchanged. */
static const char GUARDS[] =
    "local move, find, match, gmatch, gsub, check_move, check_pattern = ...\n"
    "local pcall, error, type, sub, select = pcall, error, type, string.sub, select\n"
    "local function pass(ok, ...)\n"
    "  if ok then return ... end\n"
    "  local e = ...\n"
    "  if type(e) == 'string' and sub(e, 1, 8) == 'sandbox:' then error((gsub(e, '^sandbox:%d+: ', '')), 2) end\n"
    "  error(e, 0)\n"
    "end\n"
    "local function call_move(...) return move(...) end\n"
    "local function call_find(...) return find(...) end\n"
    "local function call_match(...) return match(...) end\n"
    "local function call_gmatch(...) return gmatch(...) end\n"
    "local function call_gsub(...) return gsub(...) end\n"
    "table.move = function(a1, f, e, ...) check_move(f, e) return pass(pcall(call_move, a1, f, e, ...)) end\n"
    "string.find = function(s, p, ...)\n"
    "  check_pattern('find', s, p, (select(2, ...)))\n"
    "  return pass(pcall(call_find, s, p, ...))\n"
    "end\n"
    "string.match = function(s, p, ...) check_pattern('match', s, p) return pass(pcall(call_match, s, p, ...)) end\n"
    "string.gmatch = function(s, p, ...) check_pattern('gmatch', s, p) return pass(pcall(call_gmatch, s, p, ...)) end\n"
    "string.gsub = function(s, p, ...) check_pattern('gsub', s, p) return pass(pcall(call_gsub, s, p, ...)) end\n";

void lua_bound_library_work(lua_State *L) {
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, rep_bounded, 1);
    lua_setfield(L, -2, "rep");
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, GUARDS, sizeof GUARDS - 1, "=sandbox", "t") != LUA_OK) lua_error(L);
    static const char *const originals[][2] = {
        {"table", "move"}, {"string", "find"}, {"string", "match"}, {"string", "gmatch"}, {"string", "gsub"}};
    for (int i = 0; i < 5; i++) {
        lua_getglobal(L, originals[i][0]);
        lua_getfield(L, -1, originals[i][1]);
        lua_remove(L, -2);
    }
    lua_pushcfunction(L, check_move);
    lua_pushcfunction(L, check_pattern);
    lua_call(L, 7, 0);
}
