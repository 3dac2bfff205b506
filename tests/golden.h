/* The golden fixtures and their tolerances, one table for the CPU's golden test (test_golden.c)
 * and the GPU's (cuda/test_parity.c): tests/fixtures/<fixture>.in.safetensors, the inputs, and
 * .ref.safetensors, the outputs and gradients of an independent PyTorch reference in float64
 * (tests/reference/make_fixtures.py). A case runs through the op harness as `attnlab op` runs it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

typedef struct {
    const char *fixture, *op;
    double tol; /* max relative difference (max_rel_diff) of every tensor, on the CPU */
} Golden;

extern const Golden GOLDEN_CASES[];
extern const size_t N_GOLDEN_CASES;

/* Runs case g on backend be in the recurrent form and with chunks of 16 and 64 (softmax, which has
 * no chunks, once): true when every output and gradient of the reference is produced with its
 * shape and within tol of it. On failure msg names the form and the tensor. GOLDEN_VERBOSE=1
 * prints each form's worst difference. */
bool golden_check(const Golden *g, const Backend *be, double tol, char *msg, size_t len);
