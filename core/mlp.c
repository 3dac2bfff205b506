/* SwiGLU MLP (see mlp.h). */
#include "mlp.h"

#include <stdio.h>

void mlp_create(Mlp *mlp, ParamSet *ps, int layer, int C, int F, float init_std, float out_std) {
    mlp->C = C;
    mlp->F = F;
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mlp.gate_up_proj.weight", layer);
    params_matrix(ps, &mlp->w_gate_up, name, 2L * F, C, init_std);
    snprintf(name, sizeof name, "layers.%d.mlp.down_proj.weight", layer);
    params_matrix(ps, &mlp->w_down, name, C, F, out_std);
}

void mlp_declare(Mlp *mlp, const Backend *be, Arena *acts, Arena *scratch, int N) {
    arena_floats(acts, &mlp->saved, be->mlp_saved(N, mlp->C, mlp->F));
    arena_declare(scratch, &mlp->work, be->mlp_workspace(N, mlp->C, mlp->F));
}

/* one backend op each way, so that the GPU can keep its intermediates in bf16 */
void mlp_forward(Mlp *mlp, const Backend *be, const float *x, float *y, int N) {
    be->mlp_forward(y, mlp->saved, x, mlp->w_gate_up.w, mlp->w_down.w, N, mlp->C, mlp->F, mlp->work);
}

/* A decode step's few rows: SwiGLU of the gate and up projections of RMSNorm(x), then the down
 * projection; two linear_groups, so that the GPU folds the norm into the first product's loads
 * and the SwiGLU into its output (two launches fewer a layer than norm, product and SwiGLU apart). */
void mlp_decode_step(Mlp *mlp, const Backend *be, const float *x, const RowNorm *x_norm, float *act, float *y, int N) {
    const LinearOut gate_up = {mlp->w_gate_up.w, act, 2 * mlp->F, LINEAR_SWIGLU},
                    down = {mlp->w_down.w, y, mlp->C, LINEAR_ADD};
    be->linear_group(x, x_norm, N, mlp->C, 1, &gate_up);
    be->linear_group(act, NULL, N, mlp->F, 1, &down);
}

void mlp_backward(Mlp *mlp, const Backend *be, const float *x, const float *dy, float *dx, int N) {
    be->mlp_backward(dx, mlp->w_gate_up.g, mlp->w_down.g, dy, x, mlp->w_gate_up.w, mlp->w_down.w, mlp->saved, N,
                     mlp->C, mlp->F, mlp->work);
}
