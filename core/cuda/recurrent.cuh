// What the recurrent kernels of the linear-time cores (linear_attn.cu, delta_rule.cu) share: one
// block per (batch, head) walks the tokens, thread j owning value column j of the K x V state.
#pragma once

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
