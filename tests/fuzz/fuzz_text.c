/* libFuzzer harness: UTF-8 text input (byte tokens) on arbitrary bytes. */
#include <stdint.h>

#include "core/io/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len) {
    TokenBuffer b = {0};
    Error err;
    if (data_parse_text(&b, bytes, len, "fuzz.txt", &err)) token_buffer_free(&b);
    return 0;
}
