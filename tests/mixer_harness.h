/* One mixer built from a config, on its own, for gradient and decode tests: x -> y += mixer(x),
 * loss = sum(y * R). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/config/config.h"
#include "core/mixer.h"
#include "test_dimensions.h"

typedef struct {
    Config cfg;
    const Backend *be;
    int B, T, C;
    ParamSet ps;
    RopeCache rope;
    Mixer *mixer;
    Arena acts, scratch, cache, step_scratch;
    float *x, *y, *R;
} MixerCase;

/* TEST_DIMENSIONS and init std 0.3, overridden by the "path=value" settings (NULL-terminated);
 * the mixer is layer 0's. Returns false with msg on a config error. */
bool mixer_case_init(MixerCase *c, const char *const *settings, int B, int T, unsigned seed, char *msg, size_t len);
/* The same over other base settings than TEST_DIMENSIONS (NULL-terminated, before settings). */
bool mixer_case_init_over(MixerCase *c, const char *const *base, const char *const *settings, int B, int T,
                          unsigned seed, char *msg, size_t len);
double mixer_case_loss(void *c);
/* Finite differences for x and every parameter; false with msg naming the worst offender. */
bool mixer_case_gradcheck(MixerCase *c, unsigned seed, char *msg, size_t len);
/* A model's layers share one scratch arena, so every later layer's forward overwrites what a
 * layer's forward left there: its backward must read nothing of it. Runs the forward and backward
 * twice, the second time with the scratch filled with NaN in between; false with msg unless the
 * two give the same gradients, bit for bit. */
bool mixer_case_backward_reads_no_scratch(MixerCase *c, char *msg, size_t len);
/* Feeds x one position at a time through the decode path and compares each step's output
 * with the full forward's; false with msg when they differ by more than tol (relative). */
bool mixer_case_decode_matches(MixerCase *c, double tol, char *msg, size_t len);
