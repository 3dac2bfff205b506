/* Test runner: runs every registered test (or those whose name contains an argument) in a
 * child process with a time limit, prints "ok"/"FAIL"/"skip" lines and a closing count. */
#include "core/backend.h"
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024
static struct {
    const char *name;
    TestFn fn;
} tests[MAX_TESTS];
static int n_tests;
static bool failed;

/* A skipped test exits with this status so the parent can tell it apart. */
enum { EXIT_SKIPPED = 77 };

void test_register(const char *name, TestFn fn) {
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    failed = true;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    skipped: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(NULL);
    _exit(EXIT_SKIPPED);
}

bool test_failed(void) { return failed; }

static double now(void);

int test_run_child(void (*fn)(void), double limit_s, char *err, size_t cap) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        fn();
        fflush(NULL);
        _exit(0);
    }
    close(pipefd[1]);
    double t0 = now();
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now() - t0 > limit_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    size_t got = 0;
    ssize_t n;
    while (cap > 1 && got < cap - 1 && (n = read(pipefd[0], err + got, cap - 1 - got)) > 0) got += (size_t)n;
    if (cap) err[got] = 0;
    close(pipefd[0]);
    return status;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv) {
    backend_cpu_pick_kernels(argv);
    setenv("ATTNLAB_CHECK_HELD", "1", 0); /* every model the tests run keeps hold_operand's contract */
    qsort(tests, n_tests, sizeof tests[0], by_name);
    int timeout = getenv("TEST_TIMEOUT") ? atoi(getenv("TEST_TIMEOUT")) : 300;
    int passed = 0, nfailed = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a])) selected = true;
        if (!selected) continue;
        fflush(NULL);
        double t0 = now();
        pid_t pid = fork();
        if (pid == 0) {
            alarm((unsigned)timeout);
            tests[i].fn();
            fflush(NULL);
            _exit(failed ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        double dt = now() - t0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("ok   %s (%.2fs)\n", tests[i].name, dt);
            passed++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIPPED) {
            printf("skip %s\n", tests[i].name);
            skipped++;
        } else {
            if (WIFSIGNALED(status))
                printf("FAIL %s (killed by signal %d%s)\n", tests[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ": time limit" : "");
            else printf("FAIL %s (exit %d, %.2fs)\n", tests[i].name, WEXITSTATUS(status), dt);
            nfailed++;
        }
        fflush(stdout);
    }
    printf("unit tests: %d passed, %d failed, %d skipped\n", passed, nfailed, skipped);
    return nfailed ? 1 : 0;
}
