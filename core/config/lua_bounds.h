/* Bounds on the work an untrusted config can do inside one call of Lua's C library, where neither
 * the instruction limit nor the watchdog's error reaches (lua_sandbox.h). Three functions could
 * run for hours without allocating: string.rep of empty strings (its loop runs n times even when
 * the result is ""), table.move over a huge index range, and the pattern functions, whose
 * matcher backtracks (".-.-.-b" over 3,000 bytes took minutes). Those are replaced by guards
 * that answer or refuse up front; every other library function's work is bounded by the memory
 * limit (the result's size, or the table's). */
#pragma once
#include <lua.h>

/* at most this many steps (pattern_steps in lua_bounds.c) for one call of a pattern function:
 * ~1 s at native speed */
#define LUA_MAX_PATTERN_STEPS 1e8
/* table.move of at most this many indices */
#define LUA_MAX_MOVE (1L << 24)

/* Replaces string.rep, table.move and string.find/match/gmatch/gsub in L by their guards. */
void lua_bound_library_work(lua_State *L);

/* Calls upvalue 1 with this call's arguments and returns all its results: the tail of a C wrapper
 * that checks or adjusts its arguments and then defers to the library's own function. */
int lua_call_upvalue(lua_State *L);
