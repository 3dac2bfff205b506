/* Token embedding lookup and its scatter-add backward. */
#include <string.h>

#include "cpu_ops.h"

void cpu_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, sizeof(float) * C);
}

/* Threads split the channels, not the tokens: two tokens with the same id would race on the
 * same row, and splitting channels keeps the summation order fixed (deterministic). */
void cpu_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
#pragma omp parallel
    {
        long c0, c1;
        thread_share(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            float *row = dwte + (size_t)tokens[n] * C;
            const float *d = dout + (size_t)n * C;
            for (long c = c0; c < c1; c++) row[c] += d[c];
        }
    }
}
