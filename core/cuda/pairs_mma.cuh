// The chunkwise delta rule's decayed pair products on tensor cores (pairs_mma.cu), in the layout of
// delta_rule.cu's chunk buffers: the cumulative log decays bk and the gradients dq, dk, dbk [Z, C,
// K]; A', M, dA', dM [Z, C, C]; but q and k where the caller keeps them ([B, T, H, K]). Each
// returns false, having done nothing, where that form does not run (fp32 mode, a shape it does not
// take, or q and k not 16-byte aligned); delta_rule.cu then runs its fp32 kernels on chunk copies
// of q and k, which its gates make exactly then (pairs_mma_takes).
#pragma once
#include "chunk_dims.cuh"

// the rows of a sub-chunk in the pair products, fp32 kernels (delta_rule.cu) and tensor-core ones
// alike, as on the CPU (core/cpu/decayed_products.c)
constexpr int PAIR_SUB = 16;

// whether the tensor-core form runs for chunks of C rows and keys of K channels
bool pairs_mma_runs(int C, int K);
// the same, reading the caller's q and k at these addresses (the fp32 kernels read chunk copies)
bool pairs_mma_takes(const float *q, const float *k, int C, int K);
// A' (strictly lower) and M (lower, with the diagonal) of every chunk; scalar_gate: b is the
// head's scalar, in channel 0 of bk (gdn), and the pairs are plain products of the rows
bool pairs_mma_forward(float *A, float *M, const float *q, const float *k, const float *bk, const ChunkDims &d, int K,
                       bool scalar_gate);
// adds the pairs' terms to dq, dk and the per-channel log-decay gradient dbk (with scalar_gate,
// the head's on channel 0: the caller sums the channels); A and M: the forward's
bool pairs_mma_backward(float *dq, float *dk, float *dbk, const float *dA, const float *dM, const float *A,
                        const float *M, const float *q, const float *k, const float *bk, const ChunkDims &d, int K,
                        bool scalar_gate);
