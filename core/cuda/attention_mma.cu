// Causal softmax attention on tensor cores (bf16 operands, fp32 accumulators and softmax
// statistics), flash-style: no T x T matrix exists. Each warp owns 16 rows (query rows in the
// forward and dQ kernels, key rows in the dK/dV kernel); a block of 4 warps shares tiles of the
// other side in shared memory, converted from fp32 as they are loaded. Scores are kept in base 2
// (q is scaled by scale * log2 e) so the exponentials are exp2; the log-sum-exp written for the
// backward is the natural one, as on the CPU.
//
// The backward recomputes P: one kernel over query blocks accumulates dQ, one over key blocks
// accumulates dK and dV (summing the query heads of a group, so no atomics).
//
// Head dimensions are padded (with zeros) to a multiple of 32 up to 128; wider heads and
// ATTNLAB_CUDA_MATMUL=fp32 use the fp32 kernels of attention.cu.
#include <math.h>

#include "attention_shape.cuh"
#include "cuda_common.cuh"
#include "mma.cuh"

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

namespace {

constexpr int WARPS = 4, THREADS = 32 * WARPS, ROWS = 16 * WARPS; // rows of a block: 16 per warp

// Blocks per SM that the register allocation must leave room for (-D to sweep them). Left to
// itself nvcc gives the forward 180 registers a thread: 2 blocks per SM, 12.5% occupancy, and
// ncu finds it latency-bound. Capping it for 3 blocks (168 registers) made it 1.31x and 1.22x
// faster at (8, 2048, 8, 64) and (4, 4096, 16, 128) on an H200; for 4 (128 registers), heads of
// 128 spill and slow down 1.7x. The backward kernels (244 and 255 registers) lose more to
// spills under a cap than they gain: left at 2 blocks.
#ifndef FLASH_FWD_MIN_BLOCKS
#define FLASH_FWD_MIN_BLOCKS 3
#endif
#ifndef FLASH_BWD_MIN_BLOCKS
#define FLASH_BWD_MIN_BLOCKS 1
#endif

// reductions over the 4 lanes (t = 0..3) that hold one row of a C fragment
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// C = A_frags (16 x DK, registers or loaded per k-step) times M^T for a row-major M tile of
// `N` rows: C[n] for n = 0..N/8-1
template <int DK, int N>
__device__ __forceinline__ void scores(float c[N / 8][4], const bf16 *a_tile, int lda, int a_row0, const bf16 *m_tile,
                                       int ldm, int lane) {
#pragma unroll
    for (int n = 0; n < N / 8; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DK / 16; kk++) {
        unsigned a[4];
        load_a(a, a_tile, lda, a_row0, kk * 16, lane);
#pragma unroll
        for (int n = 0; n < N / 8; n += 2) {
            unsigned b[4];
            load_b_of_transposed(b, m_tile, ldm, kk * 16, n * 8, lane);
            mma_bf16(c[n], a, b[0], b[1]);
            mma_bf16(c[n + 1], a, b[2], b[3]);
        }
    }
}

// acc[DV/8] += P (16 x N, given as C fragments) times the row-major [N][DV] tile
template <int N, int DV>
__device__ __forceinline__ void accumulate_pv(float acc[DV / 8][4], const float p[N / 8][4], const bf16 *tile, int ld,
                                              int lane) {
#pragma unroll
    for (int kk = 0; kk < N / 16; kk++) {
        unsigned a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                         pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < DV / 8; n += 2) {
            unsigned b[4];
            load_b(b, tile, ld, kk * 16, n * 8, lane);
            mma_bf16(acc[n], a, b[0], b[1]);
            mma_bf16(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// writes a warp's 16 x D accumulator rows (row0 + g, row0 + g + 8) times mul; rows >= n_rows
// and columns >= width are dropped
template <int D>
__device__ __forceinline__ void store_rows(float *dst, long stride, const float acc[D / 8][4], int row0, int n_rows,
                                           int width, float mul0, float mul1, int lane) {
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = row0 + g + 8 * half;
        if (row >= n_rows) continue;
        float mul = half ? mul1 : mul0, *out = dst + (size_t)row * stride;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                int col = n * 8 + 2 * t + j;
                if (col < width) out[col] = acc[n][2 * half + j] * mul;
            }
    }
}

// The block's key tiles become keys c0 .. c0 + N - 1 (zero past T) of the key head whose rows
// start at kb and vb (vk, vv: rows_are_vec4 of each): a barrier first (every warp is done with
// the previous tiles) and one after (the tiles are whole).
template <int N, int DK, int DV>
__device__ __forceinline__ void next_kv_tiles(bf16 *Ks, bf16 *Vs, const AttnDims &s, const float *kb, const float *vb,
                                              int c0, bool vk, bool vv) {
    __syncthreads();
    load_tile_bf16<N, DK, THREADS>(Ks, DK + 8, kb + (size_t)c0 * s.ks, s.ks, 0, s.T - c0, s.Dk, 1.0f, vk);
    load_tile_bf16<N, DV, THREADS>(Vs, DV + 8, vb + (size_t)c0 * s.vs, s.vs, 0, s.T - c0, s.Dv, 1.0f, vv);
    __syncthreads();
}

// ---- forward ----

template <int DK, int DV>
__global__ void __launch_bounds__(32 * WARPS, FLASH_FWD_MIN_BLOCKS) flash_forward_kernel(AttnDims s, float *o, float *lse, const float *q,
                                                                   const float *k, const float *v) {
    constexpr int BC = ROWS, LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *Ks = Qs + ROWS * LK, *Vs = Ks + BC * LK;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, hk = h / (s.H / s.Hkv);
    int r0 = (gridDim.x - 1 - blockIdx.x) * ROWS; // the longest rows first
    const float *qb = q + (size_t)b * s.T * s.qs + (size_t)h * s.Dk;
    const float *kb = k + (size_t)b * s.T * s.ks + (size_t)hk * s.Dk, *vb = v + (size_t)b * s.T * s.vs + (size_t)hk * s.Dv;
    const bool vq = rows_are_vec4(qb, s.qs, s.Dk), vk = rows_are_vec4(kb, s.ks, s.Dk), vv = rows_are_vec4(vb, s.vs, s.Dv);
    load_tile_bf16<ROWS, DK, THREADS>(Qs, LK, qb + (size_t)r0 * s.qs, s.qs, 0, s.T - r0, s.Dk, s.scale * LOG2E, vq);

    int row0 = r0 + 16 * warp + g, row1 = row0 + 8;
    float acc[DV / 8][4] = {};
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    int n_tiles = (min(r0 + ROWS, s.T) + BC - 1) / BC;
    for (int kt = 0; kt < n_tiles; kt++) {
        int c0 = kt * BC;
        next_kv_tiles<BC, DK, DV>(Ks, Vs, s, kb, vb, c0, vk, vv);
        float sc[BC / 8][4];
        scores<DK, BC>(sc, Qs, LK, 16 * warp, Ks, LK, lane);
        if (c0 + BC > r0 + 16 * warp) { // the diagonal tile: keys after the row are masked
#pragma unroll
            for (int n = 0; n < BC / 8; n++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    int col = c0 + n * 8 + 2 * t + j;
                    if (col > row0) sc[n][j] = -INFINITY;
                    if (col > row1) sc[n][2 + j] = -INFINITY;
                }
        }
        // online softmax; every row sees key c0 <= its own index in each tile it visits (tiles
        // are aligned with the query blocks), so the running maximum is finite
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int n = 0; n < BC / 8; n++) {
            mx0 = fmaxf(mx0, fmaxf(sc[n][0], sc[n][1]));
            mx1 = fmaxf(mx1, fmaxf(sc[n][2], sc[n][3]));
        }
        mx0 = quad_max(mx0);
        mx1 = quad_max(mx1);
        float corr0 = exp2f(m0 - mx0), corr1 = exp2f(m1 - mx1);
        m0 = mx0;
        m1 = mx1;
        l0 *= corr0;
        l1 *= corr1;
#pragma unroll
        for (int n = 0; n < DV / 8; n++) {
            acc[n][0] *= corr0;
            acc[n][1] *= corr0;
            acc[n][2] *= corr1;
            acc[n][3] *= corr1;
        }
#pragma unroll
        for (int n = 0; n < BC / 8; n++) {
            sc[n][0] = exp2f(sc[n][0] - mx0);
            sc[n][1] = exp2f(sc[n][1] - mx0);
            sc[n][2] = exp2f(sc[n][2] - mx1);
            sc[n][3] = exp2f(sc[n][3] - mx1);
            l0 += sc[n][0] + sc[n][1];
            l1 += sc[n][2] + sc[n][3];
        }
        accumulate_pv<BC, DV>(acc, sc, Vs, LV, lane);
    }
    l0 = quad_sum(l0);
    l1 = quad_sum(l1);
    store_rows<DV>(o + (size_t)b * s.T * s.os + (size_t)h * s.Dv, s.os, acc, r0 + 16 * warp, s.T, s.Dv, 1.0f / l0,
                   1.0f / l1, lane);
    if (t == 0) {
        float *lb = lse + (size_t)bh * s.T;
        if (row0 < s.T) lb[row0] = (m0 + log2f(l0)) * LN2;
        if (row1 < s.T) lb[row1] = (m1 + log2f(l1)) * LN2;
    }
}

// ---- backward: dQ over query blocks ----

// P and dS of a warp's 16 rows against N columns, from the scores (base 2), the rows' or
// columns' log-sum-exp (base 2) and D = rowsum(dO * O), with the causal mask applied as
// "query index < key index => 0". `query_rows` says whether the warp's rows are queries.
template <int N>
__device__ __forceinline__ void probabilities(float p[N / 8][4], float ds[N / 8][4], int row0, int col0, bool query_rows,
                                              const float *lse_row, const float *d_row, const float *lse_col,
                                              const float *d_col, int lane) {
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int n = 0; n < N / 8; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int row = row0 + g + 8 * (i >> 1), col = col0 + n * 8 + 2 * t + (i & 1);
            int query = query_rows ? row : col, key = query_rows ? col : row;
            float L = query_rows ? lse_row[i >> 1] : lse_col[n * 8 + 2 * t + (i & 1)];
            float D = query_rows ? d_row[i >> 1] : d_col[n * 8 + 2 * t + (i & 1)];
            float pv = key > query ? 0.0f : exp2f(p[n][i] - L);
            p[n][i] = pv;
            ds[n][i] = pv * (ds[n][i] - D);
        }
}

template <int DK, int DV, int BC>
__global__ void __launch_bounds__(32 * WARPS, FLASH_BWD_MIN_BLOCKS) flash_dq_kernel(AttnDims s, float *dq, const float *dout, const float *q,
                                                              const float *k, const float *v, const float *lse,
                                                              const float *Drow) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *dOs = Qs + ROWS * LK, *Ks = dOs + ROWS * LV, *Vs = Ks + BC * LK;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, hk = h / (s.H / s.Hkv);
    int r0 = (gridDim.x - 1 - blockIdx.x) * ROWS;
    const float *kb = k + (size_t)b * s.T * s.ks + (size_t)hk * s.Dk, *vb = v + (size_t)b * s.T * s.vs + (size_t)hk * s.Dv;
    const float *qb = q + (size_t)b * s.T * s.qs + (size_t)h * s.Dk, *ob = dout + (size_t)b * s.T * s.os + (size_t)h * s.Dv;
    const bool vk = rows_are_vec4(kb, s.ks, s.Dk), vv = rows_are_vec4(vb, s.vs, s.Dv);
    load_tile_bf16<ROWS, DK, THREADS>(Qs, LK, qb + (size_t)r0 * s.qs, s.qs, 0, s.T - r0, s.Dk, s.scale * LOG2E,
                                      rows_are_vec4(qb, s.qs, s.Dk));
    load_tile_bf16<ROWS, DV, THREADS>(dOs, LV, ob + (size_t)r0 * s.os, s.os, 0, s.T - r0, s.Dv, 1.0f,
                                      rows_are_vec4(ob, s.os, s.Dv));
    int row0 = r0 + 16 * warp;
    float L[2], D[2];
    for (int i = 0; i < 2; i++) {
        int row = row0 + g + 8 * i;
        L[i] = row < s.T ? lse[(size_t)bh * s.T + row] * LOG2E : INFINITY; // rows past T: P = 0
        D[i] = row < s.T ? Drow[(size_t)bh * s.T + row] : 0.0f;
    }
    float acc[DK / 8][4] = {};
    int n_tiles = (min(r0 + ROWS, s.T) + BC - 1) / BC;
    for (int kt = 0; kt < n_tiles; kt++) {
        int c0 = kt * BC;
        next_kv_tiles<BC, DK, DV>(Ks, Vs, s, kb, vb, c0, vk, vv);
        if (c0 > row0 + 15) continue; // every key of the tile is after this warp's rows
        float p[BC / 8][4], ds[BC / 8][4];
        scores<DK, BC>(p, Qs, LK, 16 * warp, Ks, LK, lane);
        scores<DV, BC>(ds, dOs, LV, 16 * warp, Vs, LV, lane); // dP = dO V^T
        probabilities<BC>(p, ds, row0, c0, true, L, D, nullptr, nullptr, lane);
        accumulate_pv<BC, DK>(acc, ds, Ks, LK, lane); // dQ += dS K
    }
    store_rows<DK>(dq + (size_t)b * s.T * s.qs + (size_t)h * s.Dk, s.qs, acc, row0, s.T, s.Dk, s.scale, s.scale, lane);
}

// ---- backward: dK and dV over key blocks ----

template <int DK, int DV, int BQ>
__global__ void __launch_bounds__(32 * WARPS, FLASH_BWD_MIN_BLOCKS) flash_dkv_kernel(AttnDims s, float *dk, float *dv, const float *dout,
                                                               const float *q, const float *k, const float *v,
                                                               const float *lse, const float *Drow) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Ks = reinterpret_cast<bf16 *>(smem), *Vs = Ks + ROWS * LK, *Qs = Vs + ROWS * LV, *dOs = Qs + BQ * LK;
    float *Ls = reinterpret_cast<float *>(dOs + BQ * LV), *Ds = Ls + BQ;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int bg = blockIdx.y, b = bg / s.Hkv, hk = bg % s.Hkv, group = s.H / s.Hkv;
    int c0 = (gridDim.x - 1 - blockIdx.x) * ROWS; // the blocks with the most queries first
    const float *kb = k + (size_t)b * s.T * s.ks + (size_t)hk * s.Dk, *vb = v + (size_t)b * s.T * s.vs + (size_t)hk * s.Dv;
    load_tile_bf16<ROWS, DK, THREADS>(Ks, LK, kb + (size_t)c0 * s.ks, s.ks, 0, s.T - c0, s.Dk, 1.0f,
                                      rows_are_vec4(kb, s.ks, s.Dk));
    load_tile_bf16<ROWS, DV, THREADS>(Vs, LV, vb + (size_t)c0 * s.vs, s.vs, 0, s.T - c0, s.Dv, 1.0f,
                                      rows_are_vec4(vb, s.vs, s.Dv));
    int key0 = c0 + 16 * warp;
    float dk_acc[DK / 8][4] = {}, dv_acc[DV / 8][4] = {};
    for (int h = hk * group; h < (hk + 1) * group; h++) {
        size_t bh = (size_t)b * s.H + h;
        const float *qb = q + (size_t)b * s.T * s.qs + (size_t)h * s.Dk, *ob = dout + (size_t)b * s.T * s.os + (size_t)h * s.Dv;
        const bool vq = rows_are_vec4(qb, s.qs, s.Dk), vo = rows_are_vec4(ob, s.os, s.Dv);
        for (int q0 = c0; q0 < s.T; q0 += BQ) {
            __syncthreads();
            load_tile_bf16<BQ, DK, THREADS>(Qs, LK, qb + (size_t)q0 * s.qs, s.qs, 0, s.T - q0, s.Dk, s.scale * LOG2E, vq);
            load_tile_bf16<BQ, DV, THREADS>(dOs, LV, ob + (size_t)q0 * s.os, s.os, 0, s.T - q0, s.Dv, 1.0f, vo);
            for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
                bool in = q0 + i < s.T;
                Ls[i] = in ? lse[bh * s.T + q0 + i] * LOG2E : INFINITY;
                Ds[i] = in ? Drow[bh * s.T + q0 + i] : 0.0f;
            }
            __syncthreads();
            if (q0 + BQ - 1 < key0) continue; // every query of the tile is before this warp's keys
            float p[BQ / 8][4], ds[BQ / 8][4];
            scores<DK, BQ>(p, Ks, LK, 16 * warp, Qs, LK, lane);  // S^T = K Q^T
            scores<DV, BQ>(ds, Vs, LV, 16 * warp, dOs, LV, lane); // dP^T = V dO^T
            probabilities<BQ>(p, ds, key0, q0, false, nullptr, nullptr, Ls, Ds, lane);
            accumulate_pv<BQ, DV>(dv_acc, p, dOs, LV, lane); // dV += P^T dO
            accumulate_pv<BQ, DK>(dk_acc, ds, Qs, LK, lane); // dK += dS^T Q (Q carries scale log2 e)
        }
    }
    store_rows<DK>(dk + (size_t)b * s.T * s.ks + (size_t)hk * s.Dk, s.ks, dk_acc, key0, s.T, s.Dk, 1.0f / LOG2E,
                   1.0f / LOG2E, lane);
    store_rows<DV>(dv + (size_t)b * s.T * s.vs + (size_t)hk * s.Dv, s.vs, dv_acc, key0, s.T, s.Dv, 1.0f, 1.0f, lane);
}

// ---- launches, one instantiation per padded (DK, DV) ----

template <int DK, int DV>
void forward(const AttnDims &s, float *o, float *lse, const float *q, const float *k, const float *v) {
    size_t smem = sizeof(bf16) * ((size_t)2 * ROWS * (DK + 8) + (size_t)ROWS * (DV + 8));
    CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<DK, DV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    flash_forward_kernel<DK, DV><<<dim3((s.T + ROWS - 1) / ROWS, s.B * s.H), 32 * WARPS, smem>>>(s, o, lse, q, k, v);
    CUDA_LAUNCHED();
}

template <int DK, int DV>
void backward(const AttnDims &s, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
              const float *v, const float *lse, const float *D) {
    constexpr int B2 = (DK > 64 || DV > 64) ? 32 : 64; // the other side's tile: fewer registers for wide heads
    size_t smem_q = sizeof(bf16) * ((size_t)ROWS * (DK + 8 + DV + 8) + (size_t)B2 * (DK + 8 + DV + 8));
    CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<DK, DV, B2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    flash_dq_kernel<DK, DV, B2><<<dim3((s.T + ROWS - 1) / ROWS, s.B * s.H), 32 * WARPS, smem_q>>>(s, dq, dout, q, k, v, lse, D);
    CUDA_LAUNCHED();
    size_t smem_kv = smem_q + sizeof(float) * 2 * B2;
    CUDA_CHECK(cudaFuncSetAttribute(flash_dkv_kernel<DK, DV, B2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    flash_dkv_kernel<DK, DV, B2><<<dim3((s.T + ROWS - 1) / ROWS, s.B * s.Hkv), 32 * WARPS, smem_kv>>>(s, dk, dv, dout, q, k,
                                                                                                        v, lse, D);
    CUDA_LAUNCHED();
}

int padded_width(int d) { return (d + 31) / 32 * 32; }

} // namespace

bool flash_mma_supports(const AttnDims &s) { return s.Dk <= 128 && s.Dv <= 128; }

// dispatch on the padded widths: 32, 64, 96 or 128 each
#define FLASH_DISPATCH(CALL)                                                                                         \
    switch (padded_width(s.Dk) * 1000 + padded_width(s.Dv)) {                                                        \
    case 32032: CALL(32, 32); break;                                                                                 \
    case 64064: CALL(64, 64); break;                                                                                 \
    case 96064: CALL(96, 64); break;                                                                                 \
    case 128128: CALL(128, 128); break;                                                                              \
    case 128064: CALL(128, 64); break;                                                                               \
    case 96096: CALL(96, 96); break;                                                                                 \
    case 64032: CALL(64, 32); break;                                                                                 \
    case 32064: CALL(32, 64); break;                                                                                 \
    default: CALL(128, 128); break; /* the widest covers every other pair, with more padding */                    \
    }

void flash_mma_forward(const AttnDims &s, float *o, float *lse, const float *q, const float *k, const float *v) {
#define CALL(A, B) forward<A, B>(s, o, lse, q, k, v)
    FLASH_DISPATCH(CALL)
#undef CALL
}

void flash_mma_backward(const AttnDims &s, float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *lse, const float *D) {
#define CALL(A, B) backward<A, B>(s, dq, dk, dv, dout, q, k, v, lse, D)
    FLASH_DISPATCH(CALL)
#undef CALL
}
