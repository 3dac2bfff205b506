/* What the synthetic tasks (mqar, palindrome, stack) share: the seeding of their held-out set. */
#pragma once
#include <stdint.h>

#include "core/rng.h"

/* Example i of the held-out set comes from a stream of its own, seeded by (eval.seed, i) alone,
 * so the set is the same whatever the training seed, the evaluation batch size or the order of
 * calls. eval.seed < 2^31 and i < 2^32 pack without collision, and the top bit keeps these seeds
 * apart from the training stream's (core/train.c seeds it with 2 * seed + 1 < 2^33). */
static inline void synthetic_eval_rng(Rng *r, int eval_seed, long i) {
    rng_seed(r, 1ull << 63 | (uint64_t)(uint32_t)eval_seed << 32 | (uint64_t)(uint32_t)i);
}
