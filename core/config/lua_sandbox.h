/* The Lua state configs run in. By default a config is untrusted code: it gets Lua's language,
 * string, table, math and utf8 libraries, os.time/os.clock/os.date, and `require` of Lua files
 * in its own folder and configs/, and nothing that reaches the machine (no io, os.execute,
 * os.remove, package.loadlib, debug, loadfile, dofile, binary chunks). Each refused function is
 * a stub whose error names it. A config that runs more than SANDBOX_MAX_INSTRUCTIONS Lua
 * instructions or allocates more than SANDBOX_MAX_BYTES is stopped with a message; finalizers
 * (__gc, which Lua runs with hooks off) are refused, C library calls that could work for hours
 * without allocating are guarded (lua_bounds.h), and a watchdog stops a config after
 * SANDBOX_MAX_SECONDS (an error at its next Lua instruction or allocation; if it is stuck inside
 * one C library call, the process ends after as long again).
 * `--trust-config` (sandbox_trust) gives the full standard library and no limits. */
#pragma once
#include <lua.h>
#include <stdbool.h>

#include "core/util.h"

#define SANDBOX_MAX_INSTRUCTIONS 200000000L /* ~1-2 s of Lua */
#define SANDBOX_MAX_BYTES (256L << 20)
/* wall time, for what the instruction count cannot see (work inside C library functions) */
#define SANDBOX_MAX_SECONDS 10

/* The watchdog's time limit in seconds (default SANDBOX_MAX_SECONDS), for tests of the watchdog. */
void sandbox_set_time_limit(double seconds);

/* Lifts the restrictions for every state created afterwards (--trust-config). */
void sandbox_trust(bool trusted);
bool sandbox_trusted(void);

/* A new state for the config at `config_path` (NULL: a config given as a string, which may not
 * `require`), or NULL with err set. */
lua_State *sandbox_new(const char *config_path, Error *err);

/* Runs the chunk on top of the stack (left there by luaL_loadfile/luaL_loadbuffer, whose status
 * is `load_status`) under the limits; on success its one result is on the stack. `source` names
 * the config in messages. */
bool sandbox_run(lua_State *L, int load_status, const char *source, Error *err);

void sandbox_close(lua_State *L);
