/* Progress output: one line per log interval, rewritten in place on a terminal and printed as
 * plain lines otherwise (logs, CI). Permanent messages end the in-place line first. */
#pragma once
#include <stddef.h>

typedef struct {
    int step, steps;
    double loss, lr, grad_norm, tokens_per_s, eta_s;
} ProgressLine;

void progress_init(void);
void progress_update(const ProgressLine *p);
void progress_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "1,234,567" */
void format_count(char *buf, size_t len, double n);
