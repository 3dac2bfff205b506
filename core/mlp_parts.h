/* The SwiGLU MLP as its parts on any backend: the CPU's mlp op, and the GPU's in fp32 mode and for
 * a handful of tokens (decode). Its saved floats are gate_up [N, 2F]; its work is act [N, F],
 * dact [N, F] and dgate_up [N, 2F], in that order. The backward computes act again from the kept
 * gate_up (one elementwise pass, the forward's kernel, so bit for bit) rather than keep it. */
#pragma once
#ifdef __cplusplus
extern "C" { /* the GPU backend includes it from C++ */
#endif
#include "backend.h"
#ifdef __cplusplus
}
#endif

static inline size_t mlp_parts_saved(int N, int F) { return (size_t)N * 2 * F; }
static inline size_t mlp_parts_workspace(int N, int F) { return sizeof(float) * (size_t)N * 4 * F; }

static inline void mlp_parts_forward(const Backend *be, float *y, float *gate_up, const float *x,
                                     const float *w_gate_up, const float *w_down, int N, int C, int F, float *work) {
    float *act = work;
    be->gemm(false, true, N, 2 * F, C, 1.0f, x, C, w_gate_up, C, 0.0f, gate_up, 2 * F);
    be->swiglu_forward(act, gate_up, N, F);
    be->gemm(false, true, N, C, F, 1.0f, act, F, w_down, F, 1.0f, y, C);
}

static inline void mlp_parts_backward(const Backend *be, float *dx, float *dw_gate_up, float *dw_down, const float *dy,
                                      const float *x, const float *w_gate_up, const float *w_down,
                                      const float *gate_up, int N, int C, int F, float *work) {
    float *act = work, *dact = act + (size_t)N * F, *dgate_up = dact + (size_t)N * F;
    be->swiglu_forward(act, gate_up, N, F);
    be->linear_backward(dact, dw_down, dy, act, w_down, N, F, C, false);
    be->swiglu_backward(dgate_up, dact, gate_up, N, F);
    be->linear_backward(dx, dw_gate_up, dgate_up, x, w_gate_up, N, C, 2 * F, false);
}
