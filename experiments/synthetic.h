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

/* mqar.train_examples: example j of the fixed training set comes from a stream seeded by (seed, j),
 * and epoch e's order from one seeded by (seed, e), so the set is drawn once from the run's seed
 * without storing it and any step's examples follow from the step alone. seed < 2^31 fills bits
 * 0-30, j < 2^24 and e (mod 2^29) bits 31-59; bit 62 (examples) or 61 (orders) set with bit 63
 * clear keeps them apart from each other, from the held-out set's seeds and from the training
 * stream's. */
static inline void synthetic_train_example_rng(Rng *r, int seed, uint64_t j) {
    rng_seed(r, 1ull << 62 | (j & ((1ull << 31) - 1)) << 31 | (uint64_t)(uint32_t)seed);
}
static inline void synthetic_epoch_order_rng(Rng *r, int seed, uint64_t epoch) {
    rng_seed(r, 1ull << 61 | (epoch & ((1ull << 29) - 1)) << 31 | (uint64_t)(uint32_t)seed);
}
