// The chunkwise delta rule's per-chunk matrix products, fused (delta_products.cu), in the layout
// of delta_rule.cu's chunk buffers ([Z, C, X] rows, [Z, C, C] chunk matrices, [Z, K, V] states)
// except for v, dout, o, dv and dbeta: those are the caller's [B, T, H, X] tensors, read and
// written in place (rows past T read as zeros). Tensor-core mode only; delta_products_run says
// whether a group takes a shape, and delta_rule.cu otherwise runs its products as strided-batched
// cuBLAS calls (bf16 operands in the tensor-core mode, where these take TF32 ones).
#pragma once
#include <initializer_list>

#include "chunk_dims.cuh"

// the groups of products, a kernel each
enum DeltaProducts { DELTA_WU, DELTA_OUTPUT, DELTA_DOUT, DELTA_STATE_GRADS, DELTA_BETA_GRADS, DELTA_PRODUCT_GROUPS };

// whether a group's fused kernel runs for chunks of C rows, keys of K and values of V channels,
// with the caller's tensors it reads or writes at these addresses (16 bytes at a time)
bool delta_products_run(DeltaProducts which, int C, int K, int V, std::initializer_list<const void *> caller = {});

// Qb or Kb for the forward's products: the gates' chunk-layout rows (`chunked`), or, for a head's
// scalar gate, the caller's rows of q or k ([B, T, H, K]) times e^b_r, b_r the head's cumulative
// decay in channel 0 of the chunk layout's bk, made as the gates make it (the same product of the
// same floats) instead of written by them and read back
struct GatedRows {
    const float *chunked, *caller, *bk;
};

// forward: W = Xb Kb and U~ = Xb V
void delta_products_wu(float *W, float *U, const float *Xb, const GatedRows &kb, const float *v, const ChunkDims &d,
                       int K, int V);
// forward: o = scale (Qb S + M U), into the caller's rows
void delta_products_output(float *o, const GatedRows &qb, const float *S, const float *M, const float *U, float scale,
                           const ChunkDims &d, int K, int V);
// backward, before the state pass: P2 = scale Qb^T dO and dU = scale M^T dO
void delta_products_dout(float *P2, float *dU, const float *qb, const float *M, const float *dout, float scale,
                         const ChunkDims &d, int K, int V);
// backward, after it: dKc = U dSend^T, dQb = scale dO S^T, dM = scale dO U^T (lower, with the
// diagonal; zeros above) and dW = -dU S^T
void delta_products_state_grads(float *dKc, float *dQb, float *dM, float *dW, const float *U, const float *dSend,
                                const float *dout, const float *S, const float *dU, float scale, const ChunkDims &d,
                                int K, int V);
// backward, through W = Xb Kb, U~ = Xb V and X = (I + diag(beta) A')^-1: dKb = Xb^T dW, dv =
// Xb^T dU (the caller's rows), dA' (strictly lower) and dbeta (the caller's [B, T, H])
void delta_products_beta_grads(float *dKb, float *dv, float *dbeta, float *dA, const float *dW, const float *kb,
                               const float *dU, const float *v, const float *X, const float *A, const float *beta,
                               const ChunkDims &d, int K, int V);
