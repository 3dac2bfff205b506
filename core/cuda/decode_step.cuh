// One decode step of a linear-time core's state (linear attention, the delta rule): every
// sequence's K x V state, in global memory, takes one token in place.
//
// The recurrent kernels give a (batch, head) one block and a value column one thread, which walks
// all K rows: at batch 1 that is a dozen blocks of one or two warps, each thread a chain of 2K
// loads and stores, about 28 us a KDA layer on an H200 (results/reference/gpu/profile/
// decode_1k.md). Here a block takes 32 value columns of one head, its warps a share of the K rows
// each (up to STEP_ROWS of them held in registers between the two passes), and the sums over rows
// meet in shared memory: the same arithmetic on several times the threads, with short chains.
#pragma once
#include <math.h>

#include "cuda_common.cuh"

constexpr int STEP_ROWS = 8, STEP_MAX_WARPS = 32;

// warps a block of the step runs: enough that none holds more than STEP_ROWS rows, up to 32
static inline int step_warps(int K) {
    int w = (K + STEP_ROWS - 1) / STEP_ROWS;
    return w < STEP_MAX_WARPS ? w : STEP_MAX_WARPS;
}

// The state S (row stride V) of head blockIdx.x, columns blockIdx.y * 32 + lane. DELTA: the delta
// rule (decay exp(g), then S' += k beta (v - S'^T k)); otherwise linear attention (S += k v^T).
// Then o = scale S^T q. g has K entries a head when channel_gate, else one. A warp's first
// STEP_ROWS rows stay in registers between the passes; rows past them (K > 256) go through
// global memory.
template <bool DELTA>
__global__ void __launch_bounds__(32 * STEP_MAX_WARPS)
    state_step_kernel(ScanShape s, float *state, float *o, const float *q, const float *k, const float *v,
                      const float *g, const float *beta) {
    pdl_begin();
    extern __shared__ float step_smem[]; /* q, k, the decays: K each; then the warps' partial sums */
    __shared__ float part[STEP_MAX_WARPS][32];
    const int K = s.K, V = s.V, bh = blockIdx.x, lane = threadIdx.x, w = threadIdx.y, W = blockDim.y;
    const int j = blockIdx.y * 32 + lane, rows = (K + W - 1) / W, i0 = w * rows, i1 = min(K, i0 + rows);
    float *qs = step_smem, *ks = qs + K, *dec = ks + K;
    for (int i = w * 32 + lane; i < K; i += 32 * W) {
        qs[i] = q[(size_t)bh * K + i];
        ks[i] = k[(size_t)bh * K + i];
        if (DELTA) dec[i] = expf(g[s.channel_gate ? (size_t)bh * K + i : (size_t)bh]);
    }
    __syncthreads();
    float *S = state + (size_t)bh * K * V + j, x[STEP_ROWS];
    const bool col = j < V;
    /* pass 1: the (decayed) state; for the delta rule p = S'^T k over this warp's rows */
    float p = 0.0f;
#pragma unroll
    for (int r = 0; r < STEP_ROWS; r++) {
        int i = i0 + r;
        x[r] = 0.0f;
        if (col && i < i1) {
            x[r] = S[(size_t)i * V] * (DELTA ? dec[i] : 1.0f);
            p += x[r] * ks[i];
        }
    }
    if (DELTA && col) /* rows past the registers: the decayed state goes back to memory */
        for (int i = i0 + STEP_ROWS; i < i1; i++) {
            float y = S[(size_t)i * V] * dec[i];
            S[(size_t)i * V] = y;
            p += y * ks[i];
        }
    float u = 0.0f;
    if (DELTA) { /* the warps' sums of p meet in shared memory */
        part[w][lane] = p;
        __syncthreads();
        p = 0.0f;
        for (int y = 0; y < W; y++) p += part[y][lane];
        if (col) u = beta[bh] * (v[(size_t)bh * V + j] - p);
        __syncthreads(); /* part is written again below */
    } else if (col) {
        u = v[(size_t)bh * V + j];
    }
    /* pass 2: S += k u^T, and the written rows times q */
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < STEP_ROWS; r++) {
        int i = i0 + r;
        if (col && i < i1) {
            float y = x[r] + ks[i] * u;
            S[(size_t)i * V] = y;
            acc += y * qs[i];
        }
    }
    if (col)
        for (int i = i0 + STEP_ROWS; i < i1; i++) {
            float y = S[(size_t)i * V] + ks[i] * u;
            S[(size_t)i * V] = y;
            acc += y * qs[i];
        }
    part[w][lane] = acc;
    __syncthreads();
    if (w == 0 && col) {
        acc = 0.0f;
        for (int y = 0; y < W; y++) acc += part[y][lane];
        o[(size_t)bh * V + j] = s.scale * acc;
    }
}

template <bool DELTA>
void launch_state_step(const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,
                       const float *g, const float *beta) {
    dim3 grid((unsigned)(s->B * s->H), (unsigned)((s->V + 31) / 32)), block(32, (unsigned)step_warps(s->K));
    size_t smem = sizeof(float) * 3 * (size_t)s->K;
    if (smem > 48 * 1024) die("GPU decode step: key head dimension %d needs more than 48 KiB of shared memory", s->K);
    pdl_launch(state_step_kernel<DELTA>, grid, block, smem, *s, state, o, q, k, v, g, beta);
    CUDA_LAUNCHED();
}
