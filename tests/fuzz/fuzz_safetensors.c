/* libFuzzer harness: the safetensors reader (checkpoints and op-harness files) on arbitrary bytes,
 * then what attnlab does with a file it accepted: converts each tensor to float32 and reads it as
 * a checkpoint (metadata step, RNG state, timings, config). A rejection must be an error, never a
 * crash, hang, leak or sanitizer report. */
#include <stdint.h>
#include <stdlib.h>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len) {
    StFile f;
    Error err;
    if (!st_parse(&f, bytes, len, "fuzz.safetensors", &err)) return 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        if (t->count > (1u << 20)) continue; /* the reader checked it fits the file; keep runs fast */
        float *out = malloc(sizeof(float) * (t->count ? t->count : 1));
        st_get_f32(&f, t->name, t->ndim, t->shape, out, &err);
        free(out);
    }
    CheckpointState st;
    if (checkpoint_from_file(&f, NULL, &st, &err)) checkpoint_state_free(&st);
    st_free(&f);
    return 0;
}
