// Tensor-core building blocks: the m16n8k16 bf16 mma with fp32 accumulators, ldmatrix loads of
// its fragments from row-major bf16 tiles in shared memory, cp.async tile copies, and the pieces of a warp's online softmax that the flash kernels share (attention
// and decode): reductions over a row's lanes, P V accumulation, stores of accumulator rows.
//
// Fragment layout of mma.m16n8k16 (PTX ISA), lane = 4 g + t:
//   A (16 x 16): a[0] = (g, 2t..2t+1)  a[1] = (g+8, 2t..)  a[2] = (g, 2t+8..)  a[3] = (g+8, 2t+8..)
//   B (16 x 8):  b[0] = (2t..2t+1, g)  b[1] = (2t+8..2t+9, g)
//   C (16 x 8):  c[0..1] = (g, 2t..2t+1)  c[2..3] = (g+8, 2t..2t+1)
// so the C fragments of two neighbouring 16 x 8 tiles, rounded to bf16, are the A fragment of
// their 16 x 16 union: a product's result feeds the next product without shared memory.
#pragma once
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

__device__ __forceinline__ void mma_bf16(float c[4], const unsigned a[4], const unsigned b0, const unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}

__device__ __forceinline__ void ldsm_x4(unsigned r[4], const bf16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ void ldsm_x4_trans(unsigned r[4], const bf16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// Shared-memory tiles are row-major bf16 with a row stride `ld` of (a multiple of 16) + 8
// elements: 16-byte aligned rows for ldmatrix, and the 8 rows of one 8 x 8 load fall in
// different banks.

// A fragment of the 16 x 16 block at (row0, col0) of a row-major tile
__device__ __forceinline__ void load_a(unsigned a[4], const bf16 *tile, int ld, int row0, int col0, int lane) {
    int m = lane >> 3, r = lane & 7;
    ldsm_x4(a, tile + (size_t)(row0 + r + (m & 1) * 8) * ld + col0 + (m >> 1) * 8);
}

// B fragments of the two 16 x 8 tiles at columns n0 and n0 + 8 (k rows k0..k0+15) of B = M^T,
// where M is stored row-major as [n][k] (for S = Q K^T, M = K): b[0..1] tile n0, b[2..3] n0+8
__device__ __forceinline__ void load_b_of_transposed(unsigned b[4], const bf16 *tile, int ld, int k0, int n0, int lane) {
    int m = lane >> 3, r = lane & 7;
    ldsm_x4(b, tile + (size_t)(n0 + r + (m >> 1) * 8) * ld + k0 + (m & 1) * 8);
}

// The same two B tiles of a B stored row-major as [k][n] (for O = P V, B = V)
__device__ __forceinline__ void load_b(unsigned b[4], const bf16 *tile, int ld, int k0, int n0, int lane) {
    int m = lane >> 3, r = lane & 7;
    ldsm_x4_trans(b, tile + (size_t)(k0 + r + (m & 1) * 8) * ld + n0 + (m >> 1) * 8);
}

// whether rows of `width` floats at `stride` from p can be read as float4
__host__ __device__ inline bool rows_are_vec4(const float *p, long stride, int width) {
    return ((size_t)p % 16) == 0 && stride % 4 == 0 && width % 4 == 0;
}

// ---- asynchronous tile copies (cp.async, sm_80 and later): global -> shared without registers ----

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// waits until at most N of this thread's committed groups are still in flight
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// A ROWS x COLS bf16 tile from packed rows of COLS elements (16-byte aligned, COLS a multiple of
// 8) into a shared tile of row stride ld, issued by the block's THREADS threads; committed and
// waited for by the caller.
template <int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void copy_tile_async(bf16 *tile, int ld, const bf16 *src) {
    constexpr int G = COLS / 8, N = ROWS * G;
#pragma unroll
    for (int i = threadIdx.x; i < N; i += THREADS) {
        int r = i / G, c = (i % G) * 8;
        cp_async16(tile + (size_t)r * ld + c, src + (size_t)r * COLS + c);
    }
}

// ---- a warp's softmax-weighted sums (flash attention's forward, backward and decode) ----

// reductions over the 4 lanes (t = 0..3) that hold one row of a C fragment
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// c[0..N/8) += the 16 x 16 block at column k0 of a row-major A tile (rows a_row0..) times the
// transposed 16-column block at k0 of an M tile of N rows: one k-step of S = A M^T
template <int N>
__device__ __forceinline__ void scores_step(float c[N / 8][4], const bf16 *a_tile, int lda, int a_row0,
                                            const bf16 *m_tile, int ldm, int k0, int lane) {
    unsigned a[4];
    load_a(a, a_tile, lda, a_row0, k0, lane);
#pragma unroll
    for (int n = 0; n < N / 8; n += 2) {
        unsigned b[4];
        load_b_of_transposed(b, m_tile, ldm, k0, n * 8, lane);
        mma_bf16(c[n], a, b[0], b[1]);
        mma_bf16(c[n + 1], a, b[2], b[3]);
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
// and columns outside [first, width) are dropped, column c landing at dst + c - first
template <int D>
__device__ __forceinline__ void store_rows(float *dst, long stride, const float acc[D / 8][4], int row0, int n_rows,
                                           int width, float mul0, float mul1, int lane, int first = 0) {
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
                if (col >= first && col < width) out[col - first] = acc[n][2 * half + j] * mul;
            }
    }
}
