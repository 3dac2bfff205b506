/* libFuzzer harness: the op harness (attnlab op) on an arbitrary input file. The first byte picks
 * the core (bits 0-1, or bit 3 for dplr) and the form (bit 2: recurrent or chunks of 16), the rest
 * is the safetensors file; beyond the reader, this reaches the harness's own checks (names,
 * dtypes, shapes that must agree, decays, scale) and the cores on whatever passes them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/bench/op_harness.h"

static char in_path[64], out_path[80];

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len) {
    if (len < 1) return 0;
    if (!in_path[0]) {
        snprintf(in_path, sizeof in_path, "/tmp/attnlab-fuzz-op-%ld.safetensors", (long)getpid());
        snprintf(out_path, sizeof out_path, "/tmp/attnlab-fuzz-op-%ld.out.safetensors", (long)getpid());
    }
    static const char *const names[4] = {"softmax", "linear", "gdn", "kda"};
    FILE *f = fopen(in_path, "wb");
    if (!f) abort();
    fwrite(bytes + 1, 1, len - 1, f);
    fclose(f);
    OpOptions opt = {.backend = backend_by_name("cpu"), .chunk = bytes[0] & 4 ? 16 : 0};
    Error err;
    op_run(bytes[0] & 8 ? "dplr" : names[bytes[0] & 3], in_path, out_path, &opt, &err);
    unlink(out_path);
    return 0;
}
