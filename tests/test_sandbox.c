/* The config sandbox's bounds on work inside Lua's C library (core/config/lua_bounds.c) and its
 * watchdog (core/config/lua_sandbox.c): what is refused and what still runs, and how a config that
 * outruns the time limit is stopped. */
#include <lauxlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config/lua_sandbox.h"
#include "test.h"

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* spin(s): busy for s seconds inside one C call, without allocating */
static int spin(lua_State *L) {
    double until = seconds_now() + luaL_checknumber(L, 1);
    while (seconds_now() < until) {}
    return 0;
}

/* Runs `code` in a fresh untrusted state; returns whether it succeeded, the error in msg. */
static bool run_config(const char *code, char *msg, size_t cap) {
    Error err;
    lua_State *L = sandbox_new(NULL, &err);
    if (!L) {
        snprintf(msg, cap, "%s", err.msg);
        return false;
    }
    lua_register(L, "spin", spin);
    int status = luaL_loadstring(L, code);
    bool ok = sandbox_run(L, status, "test.lua", &err);
    snprintf(msg, cap, "%s", ok ? "" : err.msg);
    sandbox_close(L);
    return ok;
}

TEST(test_sandbox_runs_ordinary_patterns_and_refuses_runaway_ones) {
    char msg[1024];
    const char *fine[] = {
        "local a, b = ('3:1'):match('^(%d+):(%d+)$') assert(a == '3' and b == '1')",
        "assert(select(1, ('a.b.c'):gsub('%.', '/')) == 'a/b/c')",
        "local n = 0 for w in ('x,y,z'):gmatch('[^,]+') do n = n + 1 end assert(n == 3)",
        /* 9,999 bytes and one repetition: 10,000 starts x 10,000 tries = 1e8, the limit */
        "assert(not (('a'):rep(9999)):find('a-b'))",
        /* escaped or inside a set, - * + ? repeat nothing */
        "assert(not (('a'):rep(1000000)):find('%-%*[-+?]%?'))",
        /* plain search: no pattern at all */
        "assert(not (('a'):rep(1000000)):find('.-.-.-b', 1, true))",
        /* anchored: one start */
        "assert(not (('a'):rep(9999)):match('^a-a-b'))",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        CHECK(run_config(fine[i], msg, sizeof msg), "refused or failed: %s -> %s", fine[i], msg);
    const char *runaway[] = {
        "return ('a'):rep(10000):find('a-b')",   /* 10,001^2 > 1e8 */
        "return ('a'):rep(3000):find('.-.-.-b')", /* took minutes before the guard */
        "return ('a'):rep(3000):match('(.*)%1')", /* a back-reference compares up to n bytes per try */
        "for _ in ('a'):rep(3000):gmatch('a*a*b') do end",
        "return ('a'):rep(3000):gsub('a*a*b', '')",
    };
    for (size_t i = 0; i < sizeof runaway / sizeof runaway[0]; i++) {
        CHECK(!run_config(runaway[i], msg, sizeof msg), "ran: %s", runaway[i]);
        CHECK(strstr(msg, "could backtrack for") && strstr(msg, "--trust-config"), "%s -> %s", runaway[i], msg);
    }
}

TEST(test_sandbox_answers_empty_rep_and_refuses_huge_moves) {
    char msg[1024];
    double t0 = seconds_now();
    CHECK(run_config("assert((''):rep(2^40) == '' and (''):rep(2^40, '') == '' and ('ab'):rep(3, '-') == 'ab-ab-ab')",
                     msg, sizeof msg),
          "%s", msg);
    CHECK(seconds_now() - t0 < 2.0, "empty rep took %.1f s", seconds_now() - t0);
    CHECK(run_config("local t = table.move({1, 2, 3}, 1, 3, 2) assert(t[4] == 3)", msg, sizeof msg), "%s", msg);
    CHECK(!run_config("table.move({}, 1, 2^40, 1, {})", msg, sizeof msg), "a 2^40-element move ran");
    CHECK(strstr(msg, "table.move of 1099511627776 elements"), "%s", msg);
}

TEST(test_sandbox_time_limit_stops_a_config_at_its_next_instruction) {
    char msg[1024];
    sandbox_set_time_limit(0.5); /* stage 2 would come at 1 s */
    bool ok = run_config("spin(0.7) local x = 0 for i = 1, 1e6 do x = x + i end return {}", msg, sizeof msg);
    sandbox_set_time_limit(0);
    CHECK(!ok, "the config outran the time limit and went on");
    CHECK(strstr(msg, "test.lua: the config ran more than 0.5 s; stopped"), "%s", msg);
}

/* A C call that neither runs Lua instructions nor allocates cannot be stopped from outside: at
 * twice the limit the process ends with a message. In a child, so the test survives it. */
static void stuck_config(void) {
    sandbox_set_time_limit(0.2);
    char msg[1024];
    run_config("spin(30) return {}", msg, sizeof msg); /* does not return: the watchdog ends the process */
}

TEST(test_sandbox_watchdog_ends_a_call_stuck_past_twice_the_limit) {
    char out[512];
    int status = test_run_child(stuck_config, 10, out, sizeof out);
    CHECK(!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "the stuck config was not stopped within 10 s");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "child status %d", status);
    CHECK(strstr(out, "test.lua: the config ran more than 0.4 s inside a library function; stopped"), "stderr: %s",
          out);
}
