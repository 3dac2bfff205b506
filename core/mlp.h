/* The SwiGLU MLP of every block: y += W_down (silu(x W_gate) * (x W_up)), with W_gate and W_up
 * fused into one [2F, C] matrix. */
#pragma once
#include "arena.h"
#include "backend.h"
#include "params.h"

typedef struct {
    int C, F;
    Param w_gate_up, w_down;
    float *saved; /* kept for the backward, in the backend's form (backend mlp_saved) */
    float *work;  /* scratch (backend mlp_workspace) */
} Mlp;

void mlp_create(Mlp *mlp, ParamSet *ps, int layer, int C, int F, float init_std, float out_std);
void mlp_declare(Mlp *mlp, const Backend *be, Arena *acts, Arena *scratch, int N);
void mlp_forward(Mlp *mlp, const Backend *be, const float *x, float *y, int N);
void mlp_backward(Mlp *mlp, const Backend *be, const float *x, const float *dy, float *dx, int N);
/* y += MLP(RMSNorm(x) with x_norm) for a decode step's N rows; act [N, F] is the caller's scratch. */
void mlp_decode_step(Mlp *mlp, const Backend *be, const float *x, const RowNorm *x_norm, float *act, float *y, int N);
