/* Vectorizable float math for the CPU kernels: glibc's expf does not vectorize without
 * -ffast-math, and -ffast-math would let the compiler drop the NaN checks we rely on. */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) with relative error below 2e-7 on [-87, 88]; returns 0 below about -87.3 (including
 * -inf) and saturates near 2^128 above 88.7. Range reduction x = k ln2 + r, |r| <= ln2/2, then a
 * degree-6 polynomial for e^r and the exponent added to the float's bits. */
static inline float fast_expf(float in) {
    /* branch-free, so loops calling it vectorize; the selects become blends. A NaN input takes
     * the clamp's low branch (comparisons with NaN are false) and is passed through at the end. */
    float x = in > -87.3f ? in : -87.3f;
    x = x < 88.7f ? x : 88.7f;
    float k = rintf(x * 1.44269504088896341f);
    float r = fmaf(k, -0.693145751953125f, x);
    r = fmaf(k, -1.428606765330187045e-06f, r);
    float p = 1.0f / 720.0f;
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    /* 2^k added to the exponent bits, in unsigned arithmetic (a negative shift is undefined) */
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (uint32_t)(int32_t)k << 23;
    memcpy(&p, &bits, sizeof p);
    p = in < -87.3f ? 0.0f : p;
    return in == in ? p : in;
}

static inline float fast_sigmoidf(float x) { return 1.0f / (1.0f + fast_expf(-x)); }
