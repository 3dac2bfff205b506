/* Progress lines (see progress.h). */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "util.h"

static bool on_terminal;

void progress_init(void) { on_terminal = isatty(STDOUT_FILENO); }

void format_count(char *buf, size_t len, double n) {
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", n < 0 ? 0 : n);
    size_t nd = 0;
    while (digits[nd]) nd++;
    size_t j = 0;
    for (size_t i = 0; i < nd && j + 2 < len; i++) {
        buf[j++] = digits[i];
        size_t left = nd - i - 1;
        if (left && left % 3 == 0) buf[j++] = ',';
    }
    buf[j] = '\0';
}

void progress_update(const ProgressLine *p) {
    char tps[32], eta[32];
    format_count(tps, sizeof tps, p->tokens_per_s);
    format_duration(eta, sizeof eta, p->eta_s);
    int width = snprintf(NULL, 0, "%d", p->steps);
    if (on_terminal) fputs("\r\033[K", stdout);
    printf("step %*d/%d | loss %.4f | lr %.2e | grad norm %.3f | %s tok/s | ETA %s", width, p->step, p->steps, p->loss,
           p->lr, p->grad_norm, tps, eta);
    if (on_terminal) {
        set_status_line_open(true);
    } else {
        putchar('\n');
    }
    fflush(stdout);
}

void progress_note(const char *fmt, ...) {
    end_status_line();
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}
