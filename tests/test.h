/* A minimal test framework: TEST(name) registers a function; CHECK fails the test with a message.
 * The runner forks one process per test, so a crash, exit or hang fails only that test. */
#pragma once
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

typedef void (*TestFn)(void);
void test_register(const char *name, TestFn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Marks the running test as skipped (reported as skipped, never as passed) and returns. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool test_failed(void);
/* Runs fn in a child process, its stderr read into err (NUL-terminated, up to cap - 1 bytes; the
 * child must write no more than a pipe holds), and returns its wait status; a child still running
 * after limit_s seconds is killed (SIGKILL). For tests of what stops a process (die(), a watchdog). */
int test_run_child(void (*fn)(void), double limit_s, char *err, size_t cap);

#define TEST(name)                                                                      \
    static void name(void);                                                             \
    __attribute__((constructor)) static void register_##name(void) {                    \
        test_register(#name, name);                                                     \
    }                                                                                   \
    static void name(void)

/* CHECK(cond, "printf-style explanation", ...): on failure prints file:line and returns. */
#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                                 \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define CHECK_NEAR(a, b, tol, what)                                                     \
    do {                                                                                \
        double a_ = (a), b_ = (b);                                                      \
        if (!(fabs(a_ - b_) <= (tol))) {                                                \
            test_fail(__FILE__, __LINE__, "%s: %.9g vs %.9g (|diff| %.3g > tol %.3g)",  \
                      what, a_, b_, fabs(a_ - b_), (double)(tol));                      \
            return;                                                                     \
        }                                                                               \
    } while (0)
