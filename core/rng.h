/* Deterministic, seedable random numbers (xoshiro256**); the state is saved in checkpoints. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
/* Uniform in [0, 1). */
double rng_uniform(Rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so the state alone says everything). */
double rng_normal(Rng *r);
/* Fills x[0..n) with N(0, std^2). */
void rng_fill_normal(Rng *r, float *x, long n, float std);

/* The state as 64 hex digits and back, for checkpoint metadata. */
void rng_to_hex(const Rng *r, char out[65]);
bool rng_from_hex(Rng *r, const char *hex);
