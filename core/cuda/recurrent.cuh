// What the recurrent kernels of the linear-time cores (linear_attn.cu, delta_rule.cu, dplr.cu)
// share: one block per (batch, head) walks the tokens, thread j owning value column j of the K x V
// state.
#pragma once
#include "cuda_common.cuh"

// a block's threads: one per value column, in whole warps
static inline unsigned value_threads(int V) { return (unsigned)((V + 31) / 32 * 32); }

// dies, naming the core, unless a block can take the state: at most 1024 value columns, and
// smem bytes of shared memory
static inline void check_recurrent_fits(const ScanShape *s, size_t smem, const char *core) {
    if (s->V > 1024) die("GPU %s: value head dimension %d exceeds 1024", core, s->V);
    if (smem > 200 * 1024) die("GPU %s: a %d x %d state does not fit in shared memory", core, s->K, s->V);
}

// Token t's write and read-out on column j of S (row stride V): S[:, j] += k u, then returns
// S[:, j] . q of the written state (the caller scales it).
__device__ __forceinline__ float write_then_read(float *S, int K, int V, int j, const float *k, float u,
                                                 const float *q) {
    float acc = 0.0f;
    for (int i = 0; i < K; i++) {
        float x = S[i * V + j] + k[i] * u;
        S[i * V + j] = x;
        acc += x * q[i];
    }
    return acc;
}
