/* hold_operand on the CPU. The products read x itself, so nothing is kept; but model.c and the
 * mixers are the same code on every backend, so the CPU checks the op's contract for all of them
 * when ATTNLAB_CHECK_HELD is set (the tests set it): while x is held, nothing but the norm that
 * writes it may change it, or the GPU's products would read a stale bf16 copy. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "cpu_ops.h"

static struct {
    const float *x;
    size_t n;
    float *contents; /* x as its writer left it (the norm, else as held) */
} held;

static bool checking(void) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("ATTNLAB_CHECK_HELD");
        on = v && *v && strcmp(v, "0") != 0;
    }
    return on;
}

static void keep_contents(void) {
    held.contents = xrealloc(held.contents, sizeof(float) * (held.n ? held.n : 1));
    memcpy(held.contents, held.x, sizeof(float) * held.n);
}

static void check_unchanged(void) {
    if (!held.x || memcmp(held.contents, held.x, sizeof(float) * held.n) == 0) return;
    size_t i = 0;
    while (memcmp(&held.contents[i], &held.x[i], sizeof(float)) == 0) i++;
    die("hold_operand: the held operand (%zu floats) changed at element %zu before its release, by an op other "
        "than the norm that writes it: a backend that keeps one rounded copy for its products (the GPU) would "
        "read stale values", held.n, i);
}

void cpu_hold_operand(const float *x, size_t n) {
    if (!checking()) return;
    check_unchanged();
    held.x = x, held.n = x ? n : 0;
    if (x) keep_contents();
}

void cpu_held_written(const float *out) {
    if (held.x && out == held.x) keep_contents();
}
