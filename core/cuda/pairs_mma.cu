// The chunkwise delta rule's decayed pair products (delta_rule.cu's pairs_kernel and
// pairs_backward_kernel) on tensor cores, for the tensor-core mode at chunks of 16 to 64 rows (a
// multiple of 16) and keys of 32, 64 or 128:
//   A'[r,j] = sum_d k_rd k_jd e^{b_rd - b_jd} (j < r),   M[r,j] = sum_d q_rd k_jd e^{b_rd - b_jd} (j <= r).
// Through sub-chunks of 16 rows, as on the CPU (core/cpu/decayed_products.c): for r in the
// sub-chunk s starting at rho and j < rho,
//   e^{b_r - b_j} = E_r F'_j,   E_r = e^{b_r - b_rho} <= 1,   F'_j = e^{b_rho - b_j} <= 1,
// so the pairs of different sub-chunks are products of scaled rows, Ke = k E and Qe = q E (the
// sub-chunk's rows) and F_s = k F' (the rows before it, a tile per sub-chunk):
//   A'[s, <rho] = Ke_s F_s^T,   M[s, <rho] = Qe_s F_s^T,
// and the backward's sums over pairs are products of the same tiles with dA' and dM. Those run on
// tensor cores with fp32 sums: the backward's on TF32 operands, the forward's on TF32 ones or, where
// that fits more blocks an SM (keys of 128 on an H200: 93 KiB where fp32 tiles take 152), on bf16
// ones (q and k rounded as they load, Qe, Ke and F as they are made). Pairs inside a sub-chunk
// take the difference per channel directly, as the fp32 kernels do (through a sub-chunk's start
// the factors could overflow), the forward from the same q and k as its products. For a head's
// scalar gate (gdn) the decays factor out of the channels' sum, and the pairs are plain products
// of the rows scaled entry by entry (scalar_pairs_kernel, below).
#include "chunk_rows.cuh"
#include "cuda_common.cuh"
#include "mma.cuh"
#include "mma_tf32.cuh"
#include "pairs_mma.cuh"

namespace {

// two neighbouring elements of a shared tile as floats, in one load (floats 8-byte aligned, bf16
// 4-byte aligned)
__device__ __forceinline__ float2 load2(const float *p) { return *reinterpret_cast<const float2 *>(p); }
__device__ __forceinline__ float2 load2(const bf16 *p) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}

// sub-chunk s's F tile: the rows j < 16 s, after those of the sub-chunks before it
__host__ __device__ constexpr int f_rows(int n_sub) { return PAIR_SUB / 2 * n_sub * (n_sub - 1); }
template <typename T> __device__ __forceinline__ T *f_tile(T *F, int s, int ld) { return F + f_rows(s) * ld; }

// a tile's element as fp32, and an fp32 value stored as the tile's type (bf16: rounded to nearest)
__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store_as(float *p, float x) { *p = x; }
__device__ __forceinline__ void store_as(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }

// F_s[j] = k_j e^{b_rho - b_j} for every sub-chunk s >= 1 and j < rho = 16 s (F and k: tiles of
// row stride ld; b: fp32 rows of stride ldb)
template <int THREADS, typename T>
__device__ __forceinline__ void build_f_tiles(T *F, const T *Ks, int ld, const float *Bs, int ldb, int n_sub, int K) {
    for (int s = 1; s < n_sub; s++) {
        T *Fs = f_tile(F, s, ld);
        const float *ref = Bs + PAIR_SUB * s * ldb;
        for (int e = threadIdx.x; e < PAIR_SUB * s * K; e += THREADS) {
            int j = e / K, d = e % K;
            store_as(Fs + j * ld + d, as_float(Ks[j * ld + d]) * __expf(ref[d] - Bs[j * ldb + d]));
        }
    }
}

// the rows of sub-chunks s >= 1 scaled in place by E_r = e^{b_r - b_rho}: Qe and Ke
template <int THREADS, typename T>
__device__ __forceinline__ void scale_rows_in_place(T *Qs, T *Ks, int ld, const float *Bs, int ldb, int C, int K) {
    for (int e = threadIdx.x; e < (C - PAIR_SUB) * K; e += THREADS) {
        int r = PAIR_SUB + e / K, d = e % K, rho = r / PAIR_SUB * PAIR_SUB;
        float x = __expf(Bs[r * ldb + d] - Bs[rho * ldb + d]);
        store_as(Qs + r * ld + d, as_float(Qs[r * ld + d]) * x);
        store_as(Ks + r * ld + d, as_float(Ks[r * ld + d]) * x);
    }
}

// chunk z's C x K rows of q and k (where the caller keeps them, zeros past T) and bk (chunk layout)
// into shared tiles of row stride ld (cp.async, not committed)
template <int THREADS>
__device__ __forceinline__ void copy_chunk_rows(float *Qs, float *Ks, float *Bs, int ld, const float *q, const float *k,
                                                const float *bk, const ChunkDims &d, size_t z, int K) {
    copy_caller_rows_async<THREADS>(Qs, ld, q, d, z, K);
    copy_caller_rows_async<THREADS>(Ks, ld, k, d, z, K);
    copy_rows_async<THREADS>(Bs, ld, bk + z * d.C * K, K, d.C, K);
}

// The forward's pairs inside a sub-chunk: its blocks of 4 rows r by 4 rows j on and below the
// diagonal, and the lanes that share one (each summing some of the channels)
constexpr int DIRECT_BLOCKS = PAIR_SUB / 4 * (PAIR_SUB / 4 + 1) / 2;
template <int K> struct DirectBlocks { static constexpr int LANES = K >= 64 ? 16 : 8; };

// 10 warps: a chunk of 64 rows has 40 of the blocks above, 20 groups of 16 lanes take them in
// two rounds
constexpr int PAIRS_FORWARD_THREADS = 320;

// The forward's tiles: b in fp32 (its differences go through exp); q, k and F in T, the products'
// operands: fp32 (TF32 products) or bf16 (q and k rounded as they load; 93 KiB at keys of 128 and
// chunks of 64 where fp32 tiles take 152)
template <int K, typename T> struct ForwardTiles {
    static constexpr int LDB = K + 4; // b, read along rows
    // q, k and F read along rows: fp32 as A and as B^T (mma_tf32.cuh), bf16 by ldmatrix (mma.cuh)
    static constexpr int LD = std::is_same_v<T, float> ? K + 4 : K + 8;
    static size_t smem_bytes(int C) {
        return sizeof(float) * (size_t)C * LDB + sizeof(T) * (size_t)(2 * C + f_rows(C / PAIR_SUB)) * LD;
    }
};

// chunk z's rows of q or k into a tile: fp32 by cp.async (committed by the caller), bf16 rounded
template <int THREADS>
__device__ __forceinline__ void load_caller_tile(float *tile, int ld, const float *src, const ChunkDims &d, size_t z,
                                                 int K) {
    copy_caller_rows_async<THREADS>(tile, ld, src, d, z, K);
}
template <int THREADS>
__device__ __forceinline__ void load_caller_tile(bf16 *tile, int ld, const float *src, const ChunkDims &d, size_t z,
                                                 int K) {
    load_caller_rows_bf16<THREADS>(tile, ld, src, d, z, K);
}

// One block per chunk: A' (strictly lower) and M (lower, with the diagonal), zeros above; tiles
// of T (float or bf16)
template <int K, typename T>
__global__ void __launch_bounds__(PAIRS_FORWARD_THREADS, 2)
    pairs_mma_kernel(float *A, float *M, const float *q, const float *k, const float *bk, ChunkDims d) {
    constexpr int THREADS = PAIRS_FORWARD_THREADS, WARPS = THREADS / 32, LDB = ForwardTiles<K, T>::LDB,
                  LD = ForwardTiles<K, T>::LD;
    extern __shared__ __align__(16) float sm[];
    const int C = d.C, n_sub = C / PAIR_SUB, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *Bs = sm;
    T *Qs = reinterpret_cast<T *>(Bs + C * LDB), *Ks = Qs + C * LD, *F = Ks + C * LD;
    const size_t z = blockIdx.x;
    copy_rows_async<THREADS>(Bs, LDB, bk + z * C * K, K, C, K);
    load_caller_tile<THREADS>(Qs, LD, q, d, z, K);
    load_caller_tile<THREADS>(Ks, LD, k, d, z, K);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float *Az = A + z * C * C, *Mz = M + z * C * C;
    // pairs inside a sub-chunk: its 4 x 4 blocks of rows (r, j) on and below the diagonal, 10 a
    // sub-chunk, G lanes a block, each lane summing two neighbouring channels in every 2 G; a lane
    // loads 20 pairs of channels for the block's 16 pairs (where a lane a pair loaded 5 a pair)
    constexpr int G = DirectBlocks<K>::LANES;
    const int gi = lane % G;
    const unsigned group = ((1u << G) - 1) << (lane / G * G);
    for (int task = threadIdx.x / G; task < n_sub * DIRECT_BLOCKS; task += THREADS / G) {
        const int s = task / DIRECT_BLOCKS;
        int bi = 0, bj = task % DIRECT_BLOCKS; /* blocks (0,0) (1,0) (1,1) (2,0) ... */
        while (bj > bi) bj -= ++bi;
        const int r0 = PAIR_SUB * s + 4 * bi, j0 = PAIR_SUB * s + 4 * bj;
        float v[32] = {}; /* A'[r0 + x, j0 + y] at 4 x + y, M's at 16 + 4 x + y */
        for (int c = 2 * gi; c < K; c += 2 * G) {
            float2 kr[4], qr[4], br[4], kj[4], bj2[4];
#pragma unroll
            for (int x = 0; x < 4; x++) {
                kr[x] = load2(Ks + (r0 + x) * LD + c), qr[x] = load2(Qs + (r0 + x) * LD + c);
                br[x] = load2(Bs + (r0 + x) * LDB + c);
                kj[x] = load2(Ks + (j0 + x) * LD + c), bj2[x] = load2(Bs + (j0 + x) * LDB + c);
            }
#pragma unroll
            for (int x = 0; x < 4; x++)
#pragma unroll
                for (int y = 0; y < 4; y++) { /* j > r overflows harmlessly: those entries are dropped below */
                    const float w0 = kj[y].x * __expf(br[x].x - bj2[y].x), w1 = kj[y].y * __expf(br[x].y - bj2[y].y);
                    v[4 * x + y] += kr[x].x * w0, v[4 * x + y] += kr[x].y * w1;
                    v[16 + 4 * x + y] += qr[x].x * w0, v[16 + 4 * x + y] += qr[x].y * w1;
                }
        }
        group_sum_scatter<32, G>(v, gi, group);
#pragma unroll
        for (int e = 0; e < 32 / G; e++) {
            const int i = 32 / G * gi + e, r = r0 + i % 16 / 4, j = j0 + i % 4;
            if (i < 16) Az[r * C + j] = j < r ? v[e] : 0.0f;
            else Mz[r * C + j] = j <= r ? v[e] : 0.0f;
        }
    }
    for (int e = threadIdx.x; e < C * C; e += THREADS) /* above the diagonal's 4 x 4 blocks */
        if (e % C / 4 > e / C / 4) Az[e] = Mz[e] = 0.0f;
    build_f_tiles<THREADS>(F, Ks, LD, Bs, LDB, n_sub, K);
    __syncthreads(); /* F is built from the unscaled rows */
    scale_rows_in_place<THREADS>(Qs, Ks, LD, Bs, LDB, C, K);
    __syncthreads();
    // pairs across sub-chunks: (s, t < s, A' or M), a 16 x 16 block each with fp32 sums: Ke_s (or
    // Qe_s) times the 16 rows of F_s from 16 t, transposed
    for (int item = warp; item < n_sub * (n_sub - 1); item += WARPS) {
        int which = item & 1, p = item >> 1, s = 1;
        while (p >= s) p -= s, s++;
        float c[2][4] = {};
        const T *rows = which ? Qs : Ks, *f = f_tile(F, s, LD);
        if constexpr (std::is_same_v<T, float>) {
            accumulate<2, false, true>(c, rows, LD, PAIR_SUB * s, f, LD, PAIR_SUB * p, K, lane, 0u);
        } else {
#pragma unroll
            for (int k0 = 0; k0 < K; k0 += 16)
                scores_step<PAIR_SUB>(c, rows, LD, PAIR_SUB * s, f + PAIR_SUB * p * LD, LD, k0, lane);
        }
        store_acc<2>(which ? Mz : Az, C, c, PAIR_SUB * s, PAIR_SUB * p, lane);
    }
}

template <int K> struct BackwardTiles {
    static constexpr int LD = K + 8; // Ke, Qe and F read as B: down columns
    // dA' and dM are read as A (along rows: the "as r" products) and as A^T (down columns: "as j");
    // no stride suits both, so the second reads them with two-way bank conflicts
    __host__ __device__ static int ldc(int C) { return C + 4; }
    static size_t smem_bytes(int C) {
        return sizeof(float) * ((size_t)(3 * C + f_rows(C / PAIR_SUB)) * LD + 2 * (size_t)C * ldc(C));
    }
};

// The backward: from dA' (strictly lower) and dM (lower) adds to dq, dk and the per-channel db
// (dbk), with e = e^{b_r - b_j}:
//   dq_r += sum_j dM_rj e k_j,   dk_r += sum_j dA_rj e k_j,   dk_j += sum_r e (dA_rj k_r + dM_rj q_r),
// db takes q_r dq_r + k_r dk_r over the r terms and -k_j dk_j over the j terms. A warp owns the
// 16 rows of one sub-chunk u by K / 4 channels, so every output is summed in one warp's registers
// and written once: its rows as r (pairs inside u directly, then E_r (dM, dA)[u, <rho_u] F_u) and
// as j (pairs inside u directly, then for each later sub-chunk s, F'_s (dA^T Ke_s + dM^T Qe_s)).
template <int K>
__global__ void __launch_bounds__(512, 1)
    pairs_backward_mma_kernel(float *dq, float *dk, float *dbk, const float *dA, const float *dM, const float *q,
                              const float *k, const float *bk, ChunkDims d) {
    constexpr int THREADS = 512, LD = BackwardTiles<K>::LD, DW = K / 4, N = DW / 8;
    static_assert(N >= 1, "a warp's channels are whole blocks of 8");
    extern __shared__ __align__(16) float sm[];
    const int C = d.C, n_sub = C / PAIR_SUB, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int LDC = BackwardTiles<K>::ldc(C);
    float *Qs = sm, *Ks = Qs + C * LD, *Bs = Ks + C * LD, *F = Bs + C * LD, *dAs = F + f_rows(n_sub) * LD;
    float *dMs = dAs + C * LDC;
    const size_t z = blockIdx.x;
    copy_chunk_rows<THREADS>(Qs, Ks, Bs, LD, q, k, bk, d, z, K);
    copy_rows_async<THREADS>(dAs, LDC, dA + z * C * C, C, C, C);
    copy_rows_async<THREADS>(dMs, LDC, dM + z * C * C, C, C, C);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    build_f_tiles<THREADS>(F, Ks, LD, Bs, LD, n_sub, K);
    // this warp's outputs: rows of sub-chunk u, channels dc.. dc + DW - 1; lane 4 g + t holds
    // element e of block n at row u0 + g + 8 (e / 2), channel dc + 8 n + 2 t + e % 2
    const int u = warp / 4, dc = warp % 4 * DW, u0 = PAIR_SUB * u, g = lane / 4, t = lane % 4;
    const bool owns = u < n_sub;
    float gq[N][4] = {}, gkr[N][4] = {}, gkj[N][4] = {}; /* dq, dk as r, dk as j */
    if (owns) { /* pairs inside sub-chunk u, from the unscaled rows; row o's values loaded once for the lane's
                   eight elements (its two rows by two pairs of channels) */
        float br[N][4];
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) br[n][e] = Bs[(u0 + g + 8 * (e / 2)) * LD + dc + 8 * n + 2 * t + e % 2];
        for (int i = 0; i < PAIR_SUB; i++) {
            const int o = u0 + i;
            float dm_r[2], da_r[2], da_j[2], dm_j[2]; /* this lane's rows as r with o as j, and as j with o as r */
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = u0 + g + 8 * h;
                dm_r[h] = dMs[r * LDC + o], da_r[h] = dAs[r * LDC + o];
                da_j[h] = dAs[o * LDC + r], dm_j[h] = dMs[o * LDC + r];
            }
#pragma unroll
            for (int n = 0; n < N; n++) {
                const int d = dc + 8 * n + 2 * t;
                const float2 bo = load2(Bs + o * LD + d), ko = load2(Ks + o * LD + d), qo = load2(Qs + o * LD + d);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int h = e / 2, r = u0 + g + 8 * h;
                    const float b = e % 2 ? bo.y : bo.x, kv = e % 2 ? ko.y : ko.x, qv = e % 2 ? qo.y : qo.x;
                    const float x = __expf(o <= r ? br[n][e] - b : b - br[n][e]); /* <= 1: one exp a pair */
                    if (o <= r) { /* this element's row as r, o as j */
                        const float kj = kv * x;
                        gq[n][e] += dm_r[h] * kj;
                        gkr[n][e] += da_r[h] * kj;
                    }
                    if (o >= r) gkj[n][e] += x * (da_j[h] * kv + dm_j[h] * qv); /* as j, o as r */
                }
            }
        }
    }
    __syncthreads(); /* F is built and the pairs inside sub-chunks read the unscaled rows */
    scale_rows_in_place<THREADS>(Qs, Ks, LD, Bs, LD, C, K);
    __syncthreads();
    if (!owns) return;
    if (u >= 1) { /* as r: E_r (dM, dA)[u, <u0] F_u */
        float pq[N][4] = {}, pk[N][4] = {};
        accumulate<N, false>(pq, dMs, LDC, u0, f_tile(F, u, LD), LD, dc, u0, lane, 0u);
        accumulate<N, false>(pk, dAs, LDC, u0, f_tile(F, u, LD), LD, dc, u0, lane, 0u);
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = u0 + g + 8 * (e / 2), d = dc + 8 * n + 2 * t + e % 2;
                const float x = __expf(Bs[r * LD + d] - Bs[u0 * LD + d]);
                gq[n][e] += x * pq[n][e];
                gkr[n][e] += x * pk[n][e];
            }
    }
    for (int s = u + 1; s < n_sub; s++) { /* as j: F'_s (dA^T Ke_s + dM^T Qe_s) */
        float pj[N][4] = {};
        accumulate<N, true>(pj, dAs + PAIR_SUB * s * LDC, LDC, u0, Ks + PAIR_SUB * s * LD, LD, dc, PAIR_SUB, lane, 0u);
        accumulate<N, true>(pj, dMs + PAIR_SUB * s * LDC, LDC, u0, Qs + PAIR_SUB * s * LD, LD, dc, PAIR_SUB, lane, 0u);
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = u0 + g + 8 * (e / 2), d = dc + 8 * n + 2 * t + e % 2;
                gkj[n][e] += __expf(Bs[PAIR_SUB * s * LD + d] - Bs[j * LD + d]) * pj[n][e];
            }
    }
    const CallerRows in = caller_rows(d, z, K); /* q and k as they came: Qs and Ks are scaled by now */
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = u0 + g + 8 * h, ch = dc + 8 * n + 2 * t;
            const size_t o = (z * C + r) * K + ch, src = in.offset + r * in.ld + ch;
            const float2 zero = make_float2(0.0f, 0.0f);
            const float2 qr = r < in.n ? *reinterpret_cast<const float2 *>(q + src) : zero,
                         kr = r < in.n ? *reinterpret_cast<const float2 *>(k + src) : zero;
            float2 *pdq = reinterpret_cast<float2 *>(dq + o), *pdk = reinterpret_cast<float2 *>(dk + o);
            float2 *pdb = reinterpret_cast<float2 *>(dbk + o);
            const float *fq = &gq[n][2 * h], *fr = &gkr[n][2 * h], *fj = &gkj[n][2 * h];
            float2 a = *pdq, b = *pdk, c = *pdb;
            a.x += fq[0], a.y += fq[1];
            b.x += fr[0] + fj[0], b.y += fr[1] + fj[1];
            c.x += qr.x * fq[0] + kr.x * (fr[0] - fj[0]), c.y += qr.y * fq[1] + kr.y * (fr[1] - fj[1]);
            *pdq = a, *pdk = b, *pdb = c;
        }
}

// ---- a head's scalar gate (gdn): b is the same on every channel, so e^{b_r - b_j} leaves the
// sum over channels and the pairs are plain products of the rows, scaled entry by entry:
//   A'[r,j] = (k_r . k_j) e^{b_r - b_j} (j < r),   M[r,j] = (q_r . k_j) e^{b_r - b_j} (j <= r),
// with no sub-chunks (e^{b_r - b_j} <= 1 on and below the diagonal: nothing to overflow).

// a pair's decay inside the mask of A' (j < r) or of M (with_diagonal: j <= r), else 0
__device__ __forceinline__ float pair_decay(const float *b, int r, int j, bool with_diagonal) {
    return j < r || (with_diagonal && j == r) ? __expf(b[r] - b[j]) : 0.0f;
}

// chunk z's head b (channel 0 of the chunk layout's bk) into b[0 .. C)
template <int THREADS>
__device__ __forceinline__ void load_head_decays(float *b, const float *bk, size_t z, int C, int K) {
    for (int r = threadIdx.x; r < C; r += THREADS) b[r] = bk[(z * C + r) * K];
}

template <int K> struct ScalarTiles {
    static constexpr int LD = K + 4; // q and k read as A and as B^T: along rows
    static size_t smem_bytes(int C) { return sizeof(float) * ((size_t)2 * C * LD + C); }
};

// One block per chunk: A' and M as 16 x 16 tiles on and below the diagonal, zeros above.
template <int K>
__global__ void __launch_bounds__(256)
    scalar_pairs_kernel(float *A, float *M, const float *q, const float *k, const float *bk, ChunkDims d) {
    constexpr int THREADS = 256, WARPS = THREADS / 32, LD = ScalarTiles<K>::LD;
    extern __shared__ __align__(16) float sm[];
    const int C = d.C, nt = C / PAIR_SUB, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *Qs = sm, *Ks = Qs + C * LD, *bs = Ks + C * LD;
    const size_t z = blockIdx.x;
    copy_caller_rows_async<THREADS>(Qs, LD, q, d, z, K);
    copy_caller_rows_async<THREADS>(Ks, LD, k, d, z, K);
    cp_async_commit();
    load_head_decays<THREADS>(bs, bk, z, C, K);
    float *Az = A + z * C * C, *Mz = M + z * C * C;
    for (int e = threadIdx.x; e < C * C; e += THREADS) /* above the diagonal's tiles */
        if (e % C / PAIR_SUB > e / C / PAIR_SUB) Az[e] = Mz[e] = 0.0f;
    cp_async_wait<0>();
    __syncthreads();
    for (int item = warp; item < nt * (nt + 1); item += WARPS) { /* (tile, A' or M) */
        const int which = item & 1;
        int ti = 0, tj = item >> 1; /* tiles (0,0) (1,0) (1,1) (2,0) ... */
        while (tj > ti) tj -= ++ti;
        float c[2][4] = {};
        accumulate<2, false, true>(c, which ? Qs : Ks, LD, PAIR_SUB * ti, Ks, LD, PAIR_SUB * tj, K, lane, 0u);
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = PAIR_SUB * ti + lane / 4 + 8 * (e / 2),
                          j = PAIR_SUB * tj + 8 * n + 2 * (lane % 4) + e % 2;
                c[n][e] *= pair_decay(bs, r, j, which);
            }
        store_acc<2>(which ? Mz : Az, C, c, PAIR_SUB * ti, PAIR_SUB * tj, lane);
    }
}

template <int K> struct ScalarBackwardTiles {
    static constexpr int LD = K + 8; // q and k read as B: down columns
    // Ga and Gm read as A (along rows) and as A^T (down columns): two-way bank conflicts there
    __host__ __device__ static int ldc(int C) { return C + 4; }
    static size_t smem_bytes(int C) { return sizeof(float) * ((size_t)2 * C * LD + (size_t)2 * C * ldc(C) + C); }
};

// The backward, with Ga = dA' and Gm = dM scaled by the pairs' decays (inside their masks) and
// P = dA' A' + dM M entry by entry (A' and M the forward's):
//   dq_r += sum_j Gm_rj k_j,   dk_r += sum_j Ga_rj k_j + sum_i (Ga_ir k_i + Gm_ir q_i),
//   db_r += sum_j P_rj - sum_i P_ir: the head's scalar, added to channel 0 of dbk (whose
//   channels the caller sums). A warp owns 16 rows by K / 2 channels of dq and dk.
template <int K>
__global__ void __launch_bounds__(256)
    scalar_pairs_backward_kernel(float *dq, float *dk, float *dbk, const float *dA, const float *dM, const float *A,
                                 const float *M, const float *q, const float *k, const float *bk, ChunkDims d) {
    constexpr int THREADS = 256, WARPS = THREADS / 32, LD = ScalarBackwardTiles<K>::LD, N = K / 16;
    extern __shared__ __align__(16) float sm[];
    const int C = d.C, LDC = ScalarBackwardTiles<K>::ldc(C), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *Qs = sm, *Ks = Qs + C * LD, *Ga = Ks + C * LD, *Gm = Ga + C * LDC, *bs = Gm + C * LDC;
    const size_t z = blockIdx.x;
    copy_caller_rows_async<THREADS>(Qs, LD, q, d, z, K);
    copy_caller_rows_async<THREADS>(Ks, LD, k, d, z, K);
    copy_rows_async<THREADS>(Ga, LDC, dA + z * C * C, C, C, C);
    copy_rows_async<THREADS>(Gm, LDC, dM + z * C * C, C, C, C);
    cp_async_commit();
    load_head_decays<THREADS>(bs, bk, z, C, K);
    cp_async_wait<0>();
    __syncthreads();
    // db: four lanes a row r, each over every fourth j of row r and of column r, then their sums
    // added in a fixed order
    const float *Az = A + z * C * C, *Mz = M + z * C * C;
    for (int r0 = 0; r0 < C; r0 += THREADS / 4) {
        const int r = r0 + threadIdx.x / 4, part = threadIdx.x % 4;
        float net = 0.0f;
        if (r < C)
            for (int j = part; j < C; j += 4)
                net += Ga[r * LDC + j] * Az[r * C + j] + Gm[r * LDC + j] * Mz[r * C + j] -
                       (Ga[j * LDC + r] * Az[j * C + r] + Gm[j * LDC + r] * Mz[j * C + r]);
        net += __shfl_xor_sync(0xffffffffu, net, 1);
        net += __shfl_xor_sync(0xffffffffu, net, 2);
        if (r < C && part == 0) dbk[(z * C + r) * K] += net;
    }
    __syncthreads(); /* db has read dA' and dM as they came */
    for (int e = threadIdx.x; e < C * C; e += THREADS) {
        const int r = e / C, j = e % C;
        Ga[r * LDC + j] *= pair_decay(bs, r, j, false);
        Gm[r * LDC + j] *= pair_decay(bs, r, j, true);
    }
    __syncthreads();
    for (int task = warp; task < C / PAIR_SUB * 2; task += WARPS) {
        const int u0 = PAIR_SUB * (task / 2), dc = task % 2 * (K / 2);
        float gq[N][4] = {}, gk[N][4] = {};
        /* as r: the pairs j < u0 + 16 (Ga and Gm are zero past the diagonal) */
        accumulate<N, false>(gq, Gm, LDC, u0, Ks, LD, dc, u0 + PAIR_SUB, lane, 0u);
        accumulate<N, false>(gk, Ga, LDC, u0, Ks, LD, dc, u0 + PAIR_SUB, lane, 0u);
        /* as j: the rows i >= u0 */
        accumulate<N, true>(gk, Ga + u0 * LDC, LDC, u0, Ks + u0 * LD, LD, dc, C - u0, lane, 0u);
        accumulate<N, true>(gk, Gm + u0 * LDC, LDC, u0, Qs + u0 * LD, LD, dc, C - u0, lane, 0u);
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const size_t o = (z * C + u0 + lane / 4 + 8 * h) * K + dc + 8 * n + 2 * (lane % 4);
                float2 *pdq = reinterpret_cast<float2 *>(dq + o), *pdk = reinterpret_cast<float2 *>(dk + o);
                float2 a = *pdq, b = *pdk;
                a.x += gq[n][2 * h], a.y += gq[n][2 * h + 1];
                b.x += gk[n][2 * h], b.y += gk[n][2 * h + 1];
                *pdq = a, *pdk = b;
            }
    }
}

// f(std::integral_constant<int, K>{}) for keys of K = 32, 64 or 128: a kernel template's
// instance for a width known at run time
template <typename F> auto with_key_width(int K, F f) {
    if (K == 32) return f(std::integral_constant<int, 32>{});
    if (K == 64) return f(std::integral_constant<int, 64>{});
    return f(std::integral_constant<int, 128>{});
}
#define KW decltype(w)::value /* the width inside with_key_width's lambdas */

// the shared memory of a kernel's tiles for keys of K and chunks of C rows
template <template <int> class Tiles> size_t tiles_smem(int C, int K) {
    return with_key_width(K, [&](auto w) { return Tiles<KW>::smem_bytes(C); });
}
size_t forward_smem(int C, int K, bool bf16_tiles) {
    return with_key_width(K, [&](auto w) {
        return bf16_tiles ? ForwardTiles<KW, bf16>::smem_bytes(C) : ForwardTiles<KW, float>::smem_bytes(C);
    });
}
size_t backward_smem(int C, int K) { return tiles_smem<BackwardTiles>(C, K); }
size_t scalar_forward_smem(int C, int K) { return tiles_smem<ScalarTiles>(C, K); }
size_t scalar_backward_smem(int C, int K) { return tiles_smem<ScalarBackwardTiles>(C, K); }

// the blocks of a kernel that fit an SM at once, its registers included
template <typename Kernel> int resident_blocks(Kernel kernel, int threads, size_t smem) {
    if (cuda_blocks_per_sm(smem) == 0) return 0;
    cuda_allow_smem(kernel, smem);
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
    return n;
}

int forward_tiles_force; /* cuda_delta_pairs_forward_force: 0 the choice below, 1 bf16, -1 fp32 */

// The forward's tiles in bf16 where they fit more of its blocks an SM than fp32 ones (keys of 128
// on an H200: two where fp32 fits one; at 64 both fit two, and fp32 keeps q and k unrounded).
// Asked once per chunk size and key width in a process (a process drives one GPU).
bool forward_in_bf16(int C, int K) {
    if (forward_tiles_force) return forward_tiles_force > 0;
    static signed char known[3][64 / PAIR_SUB + 1]; /* 0 not yet asked, 1 fp32, 2 bf16 */
    signed char &choice = known[K == 32 ? 0 : K == 64 ? 1 : 2][C / PAIR_SUB];
    if (!choice)
        choice = with_key_width(K, [&](auto w) {
            const int half = resident_blocks(pairs_mma_kernel<KW, bf16>, PAIRS_FORWARD_THREADS,
                                             ForwardTiles<KW, bf16>::smem_bytes(C)),
                      full = resident_blocks(pairs_mma_kernel<KW, float>, PAIRS_FORWARD_THREADS,
                                             ForwardTiles<KW, float>::smem_bytes(C));
            return half > full ? 2 : 1;
        });
    return choice == 2;
}

} // namespace

bool pairs_mma_runs(int C, int K) {
    return cuda_tensor_cores() && (K == 32 || K == 64 || K == 128) && C % PAIR_SUB == 0 && C >= PAIR_SUB && C <= 64 &&
           cuda_blocks_per_sm(backward_smem(C, K)) > 0 && cuda_blocks_per_sm(forward_smem(C, K, true)) > 0 &&
           cuda_blocks_per_sm(scalar_backward_smem(C, K)) > 0 && cuda_blocks_per_sm(scalar_forward_smem(C, K)) > 0;
}

bool pairs_mma_takes(const float *q, const float *k, int C, int K) {
    return all_aligned16({q, k}) && pairs_mma_runs(C, K);
}

// a kernel launched for every chunk, with its shared memory allowed
template <typename Kernel, typename... Args>
static void launch_pairs(Kernel kernel, int threads, size_t smem, const ChunkDims &d, Args... args) {
    cuda_allow_smem(kernel, smem);
    kernel<<<(unsigned)d.Z, threads, smem>>>(args..., d);
    CUDA_LAUNCHED();
}

bool pairs_mma_forward(float *A, float *M, const float *q, const float *k, const float *bk, const ChunkDims &d, int K,
                       bool scalar_gate) {
    if (!pairs_mma_takes(q, k, d.C, K)) return false;
    if (!all_aligned16({A, M, bk})) die("internal: pairs_mma_forward: chunk buffers not 16-byte aligned");
    const bool bf16_tiles = !scalar_gate && forward_in_bf16(d.C, K);
    with_key_width(K, [&](auto w) {
        if (scalar_gate) launch_pairs(scalar_pairs_kernel<KW>, 256, scalar_forward_smem(d.C, K), d, A, M, q, k, bk);
        else if (bf16_tiles)
            launch_pairs(pairs_mma_kernel<KW, bf16>, PAIRS_FORWARD_THREADS, forward_smem(d.C, K, true), d, A, M, q, k,
                         bk);
        else
            launch_pairs(pairs_mma_kernel<KW, float>, PAIRS_FORWARD_THREADS, forward_smem(d.C, K, false), d, A, M, q,
                         k, bk);
    });
    return true;
}

bool pairs_mma_backward(float *dq, float *dk, float *dbk, const float *dA, const float *dM, const float *A,
                        const float *M, const float *q, const float *k, const float *bk, const ChunkDims &d, int K,
                        bool scalar_gate) {
    if (!pairs_mma_takes(q, k, d.C, K)) return false;
    if (!all_aligned16({dq, dk, dbk, dA, dM, bk}))
        die("internal: pairs_mma_backward: chunk buffers not 16-byte aligned");
    with_key_width(K, [&](auto w) {
        if (scalar_gate)
            launch_pairs(scalar_pairs_backward_kernel<KW>, 256, scalar_backward_smem(d.C, K), d, dq, dk, dbk, dA, dM,
                         A, M, q, k, bk);
        else
            launch_pairs(pairs_backward_mma_kernel<KW>, 512, backward_smem(d.C, K), d, dq, dk, dbk, dA, dM, q, k, bk);
    });
    return true;
}
#undef KW

extern "C" int cuda_delta_pairs_on_tensor_cores(int C, int K) { return pairs_mma_runs(C, K); }
// tests: 1 forces the forward's bf16 tiles, -1 its fp32 ones, 0 the choice by resident blocks
extern "C" void cuda_delta_pairs_forward_force(int which) { forward_tiles_force = which; }
extern "C" int cuda_delta_pairs_forward_in_bf16(int C, int K) { return pairs_mma_runs(C, K) && forward_in_bf16(C, K); }
