// The attention shape as the GPU kernels take it (by value), and the entry points of the
// tensor-core kernels (attention_mma.cu) that attention.cu dispatches to.
#pragma once
#include "cuda_common.cuh" // core/backend.h, with C linkage
extern "C" {
#include "core/attention_layout.h"
}

struct AttnDims {
    int B, T, H, Hkv, Dk, Dv;
    long qs, ks, vs, os; // row strides of q, k, v and o, in floats
    float scale;
    long kh, vh; // column offsets from one kv head's keys (values) to the next's
    int kshare;  // the last kshare key columns: one copy every head shares (AttnShape's k_shared)
    long kss;    // its row stride
    const float *rope_cos, *rope_sin; // RoPE applied by the kernels (AttnShape's), or null
    int rot;                          // the rotated columns at the end of q's and k's heads (attn_rotated)
};

static inline AttnDims attn_dims(const AttnShape *s) {
    return AttnDims{s->B, s->T, s->H, s->Hkv, s->Dk, s->Dv, s->q_stride, s->k_stride, s->v_stride, s->o_stride,
                    s->scale, attn_key_head(s), attn_value_head(s), s->k_shared, s->k_shared_stride,
                    s->rope_cos, s->rope_sin, attn_rotated(s)};
}

bool flash_mma_supports(const AttnDims &s);
// whether the kernels can rotate q and k as they pack them and dq, dk as they store them: heads at
// a width they run unpadded, rotated whole or (a shared key) in their last 32 or 64 columns, so
// that each pair lies in whole fragment columns and the stores' pair offsets are few
bool flash_mma_rotates(const AttnDims &s);
// whether the code the driver loaded for these kernels on this GPU has the wgmma forms (sm_90a
// code on a GPU of compute capability 9.0), asked of a kernel built beside them: the build's
// flags cannot say which of its codes the driver picks. Launches and waits: call it once, early.
bool flash_mma_wgmma_built(void);
// bytes of `saved` the forward fills and the backward reads (the bf16 copies of q, k and v), and
// of the backward's `work` (its copy of dO, then each kv head's gradient of shared key columns)
size_t flash_mma_saved(const AttnDims &s);
size_t flash_mma_workspace(const AttnDims &s);
// The tensor-core kernels read and write the keys' and values' layouts in place (no gathering)
void flash_mma_forward(const AttnDims &s, float *o, float *lse, const float *q, const float *k,
                       const float *k_shared, const float *v, void *saved);
// D: rowsum(dO * O) per (b, h, t); the backward computes it as it packs dO where
// flash_mma_rowdot_in_pack, else the caller has
bool flash_mma_rowdot_in_pack(const AttnDims &s);
void flash_mma_backward(const AttnDims &s, float *dq, float *dk, float *dk_shared, float *dv, const float *dout,
                        const float *o, const float *lse, float *D, const void *saved, void *work);
