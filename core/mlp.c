/* SwiGLU MLP (see mlp.h). */
#include "mlp.h"

#include <stdio.h>

#include "linear.h"

void mlp_create(Mlp *mlp, ParamSet *ps, int layer, int C, int F, float init_std, float out_std) {
    mlp->C = C;
    mlp->F = F;
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mlp.gate_up_proj.weight", layer);
    params_matrix(ps, &mlp->w_gate_up, name, 2L * F, C, init_std);
    snprintf(name, sizeof name, "layers.%d.mlp.down_proj.weight", layer);
    params_matrix(ps, &mlp->w_down, name, C, F, out_std);
}

void mlp_declare(Mlp *mlp, Arena *acts, Arena *scratch, int N) {
    arena_floats(acts, &mlp->gate_up, (size_t)N * 2 * mlp->F);
    arena_floats(scratch, &mlp->act, (size_t)N * mlp->F);
    arena_floats(scratch, &mlp->dgate_up, (size_t)N * 2 * mlp->F);
    arena_floats(scratch, &mlp->dact, (size_t)N * mlp->F);
}

void mlp_forward(Mlp *mlp, const Backend *be, const float *x, float *y, int N) {
    linear_forward(be, mlp->gate_up, x, &mlp->w_gate_up, N, mlp->C, 2 * mlp->F, false);
    be->swiglu_forward(mlp->act, mlp->gate_up, N, mlp->F);
    linear_forward(be, y, mlp->act, &mlp->w_down, N, mlp->F, mlp->C, true);
}

/* silu(gate) * up again from the kept gate_up (one elementwise pass, the forward's kernel, so bit
 * for bit) rather than a [N, F] buffer kept per layer */
void mlp_backward(Mlp *mlp, const Backend *be, const float *x, const float *dy, float *dx, int N) {
    be->swiglu_forward(mlp->act, mlp->gate_up, N, mlp->F);
    linear_backward(be, mlp->dact, dy, mlp->act, &mlp->w_down, N, mlp->F, mlp->C, false);
    be->swiglu_backward(mlp->dgate_up, mlp->dact, mlp->gate_up, N, mlp->F);
    linear_backward(be, dx, mlp->dgate_up, x, &mlp->w_gate_up, N, mlp->C, 2 * mlp->F, false);
}
