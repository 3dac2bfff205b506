// The chunk-to-chunk state recurrence of the chunkwise delta rule and of dplr (chunk_state.cu). Chunk z =
// (b H + h) nc + c; W, Kc: [z, C, K], b_last: [z, K], U and dU: [z, C, V], states: [z, K, V].
#pragma once
#include <stddef.h>

struct ChunkState {
    const float *W, *Kc, *blast;
    int BH, nc, C, K, V;
};

// dies with a clear message when a chunk's tiles do not fit in shared memory
void chunk_state_check(const ChunkState &a);
// S_all[z] = the state at chunk z's start; U turns from U~ into U; init may be NULL (zeros),
// final_state may be NULL; P[z] (K x V, or NULL: none) is added to the state after chunk z's
// decay (dplr's Kc^T V, a write that does not depend on the state)
void chunk_state_forward(const ChunkState &a, float *S_all, float *U, float *final_state, const float *init,
                         const float *P);
// dSend[z] = the gradient of chunk z's end state; dU gains Kc G; P2[z] = scale Qb^T dO of the
// chunk; dfinal and dinit may be NULL
void chunk_state_backward(const ChunkState &a, float *dSend, float *dU, float *dinit, const float *dfinal,
                          const float *P2);

// The same passes on tensor cores (chunk_state_mma.cu): false, having done nothing, where that
// form does not run (fp32 mode, or a shape or buffer it does not take); the two above use it
// wherever it does.
bool chunk_state_mma_forward(const ChunkState &a, float *S_all, float *U, float *final_state, const float *init,
                             const float *P);
bool chunk_state_mma_backward(const ChunkState &a, float *dSend, float *dU, float *dinit, const float *dfinal,
                              const float *P2);
// the value columns a block of it takes for this shape (with 16-byte aligned buffers), 0 where it
// does not run
int chunk_state_mma_columns(const ChunkState &a);
