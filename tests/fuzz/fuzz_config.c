/* libFuzzer harness: config loading. The input is a config's Lua source, run in the restricted
 * Lua of an untrusted config (instruction and memory limits, no io/os) and checked against the
 * schema; an input that starts with "--set\n" is instead a list of `path=value` overrides, one per
 * line, applied to the defaults as --set would, then the cross-field checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config/config.h"

enum { MAX_SETS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len) {
    char *text = malloc(len + 1);
    memcpy(text, bytes, len);
    text[len] = 0;
    Config c;
    Error err;
    if (strncmp(text, "--set\n", 6) == 0) {
        config_defaults(&c);
        bool ok = true;
        char *save = NULL;
        int n = 0;
        for (char *line = strtok_r(text + 6, "\n", &save); line && ok && n < MAX_SETS;
             line = strtok_r(NULL, "\n", &save), n++)
            ok = config_set(&c, line, &err);
        if (ok) config_check(&c, &err);
        config_free(&c);
    } else {
        if (config_load_string(&c, text, "fuzz.lua", NULL, 0, &err)) {
            char *lua = config_to_lua(&c, "fuzz");
            Config again; /* the resolved config must load back: checkpoints rely on it */
            if (!config_load_string(&again, lua, "fuzz-resolved.lua", NULL, 0, &err)) abort();
            config_free(&again);
            free(lua);
        }
        config_free(&c); /* also after a failure: the defaults were set */
    }
    free(text);
    return 0;
}
