/* Closeness checks for the whole suite. A NaN or an infinity in either argument counts as an
 * infinite difference: fmax() drops NaN, so a max-difference loop built on it passed an all-NaN
 * result as a difference of 0 (a NaN planted in the chunkwise dbeta went unseen that way). */
#pragma once
#include <math.h>
#include <stddef.h>

/* max |got - want| over n entries */
double max_abs_diff(const float *got, const float *want, size_t n);
/* max |got - want| / max(floor, max |want|): the error relative to the tensor's scale */
double max_rel_diff(const float *got, const float *want, size_t n, double floor);
/* the larger of a running worst difference and one more, d; a non-finite d makes it infinite */
static inline double worst_of(double worst, double d) { return !isfinite(d) ? INFINITY : d > worst ? d : worst; }

/* One tensor of a comparison between two results, got against want, n floats each. */
typedef struct {
    const char *name;
    const float *want, *got;
    size_t n;
} TensorPair;
/* The first of n pairs whose max_rel_diff(got, want, floor) is not below tol (a NaN is not), or -1
 * when every pair is below; *d gets that pair's difference, or with -1 the largest. */
int first_differing(const TensorPair *pairs, size_t n, double floor, double tol, double *d);
