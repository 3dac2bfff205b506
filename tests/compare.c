/* Closeness checks that see NaN and infinity (see compare.h). */
#include "compare.h"

double max_abs_diff(const float *got, const float *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = worst_of(worst, fabs((double)got[i] - want[i]));
    return worst;
}

double max_rel_diff(const float *got, const float *want, size_t n, double floor) {
    double scale = floor;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    return max_abs_diff(got, want, n) / scale;
}

int first_differing(const TensorPair *pairs, size_t n, double floor, double tol, double *d) {
    *d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = max_rel_diff(pairs[i].got, pairs[i].want, pairs[i].n, floor);
        if (!(e < tol)) return *d = e, (int)i;
        *d = worst_of(*d, e);
    }
    return -1;
}
