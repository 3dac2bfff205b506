/* libFuzzer harness: llm.c-style uint16 token shards on arbitrary bytes, for a byte vocabulary and
 * for GPT-2's, so both the header checks and the token range check are reached. */
#include <stdint.h>

#include "core/io/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len) {
    static const int vocab[2] = {256, 50257};
    for (int i = 0; i < 2; i++) {
        TokenBuffer b = {0};
        Error err;
        if (data_parse_shard(&b, bytes, len, "fuzz.bin", vocab[i], &err)) token_buffer_free(&b);
    }
    return 0;
}
