// The attention shape as the GPU kernels take it (by value), and the entry points of the
// tensor-core kernels (attention_mma.cu) that attention.cu dispatches to.
#pragma once
#include "cuda_common.cuh" // core/backend.h, with C linkage

struct AttnDims {
    int B, T, H, Hkv, Dk, Dv;
    long qs, ks, vs, os; // row strides of q, k, v and o, in floats
    float scale;
};

static inline AttnDims attn_dims(const AttnShape *s) {
    return AttnDims{s->B, s->T, s->H, s->Hkv, s->Dk, s->Dv, s->q_stride, s->k_stride, s->v_stride, s->o_stride, s->scale};
}

bool flash_mma_supports(const AttnDims &s);
// whether the code the driver loaded for these kernels on this GPU has the wgmma forms (sm_90a
// code on a GPU of compute capability 9.0), asked of a kernel built beside them: the build's
// flags cannot say which of its codes the driver picks. Launches and waits: call it once, early.
bool flash_mma_wgmma_built(void);
// bytes of `saved` the forward fills and the backward reads (the bf16 copies of q, k and v), and
// of the backward's `work` (its copy of dO)
size_t flash_mma_saved(const AttnDims &s);
size_t flash_mma_workspace(const AttnDims &s);
void flash_mma_forward(const AttnDims &s, float *o, float *lse, const float *q, const float *k, const float *v,
                       void *saved);
// D: rowsum(dO * O) per (b, h, t)
void flash_mma_backward(const AttnDims &s, float *dq, float *dk, float *dv, const float *dout, const float *lse,
                        const float *D, const void *saved, void *work);
