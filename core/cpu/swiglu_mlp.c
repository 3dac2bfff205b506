/* The SwiGLU MLP op on the CPU: its parts (core/mlp_parts.h), fp32 throughout. */
#include "core/mlp_parts.h"
#include "cpu_ops.h"

size_t cpu_mlp_saved(int N, int C, int F) {
    (void)C;
    return mlp_parts_saved(N, F);
}

size_t cpu_mlp_workspace(int N, int C, int F) {
    (void)C;
    return mlp_parts_workspace(N, F);
}

void cpu_mlp_forward(float *y, float *saved, const float *x, const float *w_gate_up, const float *w_down, int N, int C,
                     int F, float *work) {
    mlp_parts_forward(backend_cpu(), y, saved, x, w_gate_up, w_down, N, C, F, work);
}

void cpu_mlp_backward(float *dx, float *dw_gate_up, float *dw_down, const float *dy, const float *x,
                      const float *w_gate_up, const float *w_down, const float *saved, int N, int C, int F,
                      float *work) {
    mlp_parts_backward(backend_cpu(), dx, dw_gate_up, dw_down, dy, x, w_gate_up, w_down, saved, N, C, F, work);
}
