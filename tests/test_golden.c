/* Golden tests: the cores, run through the op harness exactly as `attnlab op` runs them, against
 * fixtures made by an independent PyTorch reference in float64 (tests/reference/make_fixtures.py).
 * Every output and gradient of the reference must be produced, with the same shape, and agree. */
#include <string.h>
#include <unistd.h>

#include "core/bench/op_harness.h"
#include "golden.h"
#include "test.h"

/* the table of cases and their tolerances is golden.c's, shared with the GPU's golden test */
TEST(test_cores_match_the_pytorch_reference) {
    for (size_t c = 0; c < N_GOLDEN_CASES; c++) {
        char msg[1024];
        CHECK(golden_check(&GOLDEN_CASES[c], backend_cpu(), GOLDEN_CASES[c].tol, msg, sizeof msg), "%s", msg);
    }
}

TEST(test_op_harness_refuses_bad_inputs_with_a_clear_message) {
    OpOptions opt = {.backend = backend_cpu(), .chunk = 16};
    Error err;
    const char *out = "/tmp/attnlab_golden_refused.safetensors";
    /* a gdn file given to kda: g has one value per head, kda needs one per key channel */
    CHECK(!op_run("kda", "tests/fixtures/gdn.in.safetensors", out, &opt, &err), "kda accepted gdn's gate");
    CHECK(strstr(err.msg, "tensor 'g' has shape [2, 37, 2], expected [B, T, H, K]"), "message: %s", err.msg);
    /* linear takes no gate */
    CHECK(!op_run("linear", "tests/fixtures/gdn.in.safetensors", out, &opt, &err), "linear accepted g");
    CHECK(strstr(err.msg, "unexpected tensor '") && strstr(err.msg, "op linear takes q, k, v"), "message: %s", err.msg);
    /* dplr takes fla's a, b and gk, not the delta rule's g and beta */
    CHECK(!op_run("dplr", "tests/fixtures/kda.in.safetensors", out, &opt, &err), "dplr accepted kda's tensors");
    CHECK(strstr(err.msg, "unexpected tensor '") && strstr(err.msg, "op dplr takes q, k, v, a, b, gk,"), "message: %s",
          err.msg);
    CHECK(!op_run("mamba", "tests/fixtures/gdn.in.safetensors", out, &opt, &err), "unknown op accepted");
    CHECK(strstr(err.msg, "unknown op 'mamba'"), "message: %s", err.msg);
    CHECK(access(out, F_OK) != 0, "a refused run left an output file");
}
