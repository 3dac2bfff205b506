// Causal softmax attention on tensor cores (bf16 operands, fp32 accumulators and softmax
// statistics), flash-style: no T x T matrix exists. Each warp owns 16 rows (query rows in the
// forward and dQ kernels, key rows in the dK/dV kernel); a block's warps (4, or with wgmma up to
// 3 warpgroups of 4: block_warpgroups) share tiles of the other side in shared memory. The
// operands are rounded to bf16 once into packed per-head buffers (q, k and v by the forward, into
// the `saved` buffer its backward reads again; dO by the backward, into its workspace), whose
// tiles the kernels copy with cp.async two stages deep: the next tile loads while the current one
// is used. Scores are kept in base 2
// (q is scaled by scale * log2 e) so the exponentials are exp2; the log-sum-exp written for the
// backward is the natural one, as on the CPU.
//
// The backward recomputes P: one kernel over query blocks accumulates dQ, one over key blocks
// accumulates dK and dV (summing the query heads of a group, so no atomics).
//
// Each kernel is written once over a block's products and runs them one of two ways (`WarpMma`,
// `GroupMma`): mma.sync, each warp loading its fragments from padded tiles (sm_80 on), or on
// Hopper the warpgroup's wgmma reading swizzled tiles from shared memory (wgmma.cuh), which
// reads each tile of the other side once per block instead of once per warp.
//
// Head dimensions are padded (with zeros) to a multiple of 32 up to 128; wider heads and
// ATTNLAB_CUDA_MATMUL=fp32 use the fp32 kernels of attention.cu.
#include <math.h>

#include "attention_shape.cuh"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"
#include "mma.cuh"
#include "rope_pair.cuh"
#include "wgmma.cuh"

namespace {

constexpr int WARPS = 4, THREADS = 32 * WARPS, ROWS = 16 * WARPS; // rows of a block: 16 per warp

// the warpgroup of a block of WGS that a warp belongs to: a constant at one warpgroup, since
// computed from threadIdx it cost the tile addresses registers (dQ at (96, 64) 174 against 168,
// two blocks an SM instead of three: MLA trained 3% slower until f2fab47)
template <int WGS> __device__ __forceinline__ int warpgroup_of(int warp) { return WGS == 1 ? 0 : warp / WARPS; }
// zero rows after the last head of a packed buffer: a block of up to GUARD rows may read past T
constexpr int GUARD = 4 * ROWS;

// Blocks per SM that the register allocation must leave room for (-D to sweep them). Left to
// itself nvcc gives the forward 180 registers a thread: 2 blocks per SM, 12.5% occupancy, and
// ncu finds it latency-bound. Capping it for 3 blocks (168 registers) made it 1.31x and 1.22x
// faster at (8, 2048, 8, 64) and (4, 4096, 16, 128) on an H200; for 4 (128 registers), heads of
// 128 spill and slow down 1.7x. The backward kernels (244 and 255 registers on mma.sync) lost
// more to spills under a cap than they gained: left uncapped, but for the narrow wgmma dK/dV
// below. (Measured on flash_forward_kernel, which since 4c56e8e runs every width but 128 / 128
// on Hopper: that one takes the overlapped kernel.)
#ifndef FLASH_FWD_MIN_BLOCKS
#define FLASH_FWD_MIN_BLOCKS 3
#endif
#ifndef FLASH_BWD_MIN_BLOCKS
#define FLASH_BWD_MIN_BLOCKS 1
#endif
// ... and for the wgmma backward at heads of at most 64 (-D to sweep), where the tiles leave
// shared memory for more blocks than the registers do. dK/dV at (64, 64) took 178 registers, two
// blocks an SM; capped for three (168, 12 bytes spilled) it is faster: on an H200 (2026-12-02,
// one call beside the uncapped build) attention fwd+bwd at (8, 2048, 8, 64) 0.80 / 0.81 to 0.77 /
// 0.76 ms and softmax training 442,068 / 443,099 to 451,074 / 451,370 tok/s. dQ capped for four
// blocks (137 to 128 registers) was level (0.81 / 0.81 ms, 441,027 / 444,865 tok/s): left alone.
#ifndef FLASH_DQ_NARROW_MIN_BLOCKS
#define FLASH_DQ_NARROW_MIN_BLOCKS FLASH_BWD_MIN_BLOCKS
#endif
#ifndef FLASH_DKV_NARROW_MIN_BLOCKS
#define FLASH_DKV_NARROW_MIN_BLOCKS 3
#endif
// the widest q.k heads those caps apply to (-D to sweep: MLA's are 96, where dK/dV takes 203
// registers and a cap for three blocks spills 512 bytes: MLA trained at 0.962x on an H200,
// 351,387 against 365,209 tok/s beside 64 in one call, 2026-12-02)
#ifndef FLASH_NARROW_MAX_DK
#define FLASH_NARROW_MAX_DK 64
#endif
template <class P, int DK, int DV, int WGS> constexpr int backward_min_blocks(bool dq) {
    if (WGS > 1) return 1;
    if (P::warps_skip || DK > FLASH_NARROW_MAX_DK || DV > 64) return FLASH_BWD_MIN_BLOCKS;
    return dq ? FLASH_DQ_NARROW_MIN_BLOCKS : FLASH_DKV_NARROW_MIN_BLOCKS;
}
// Keys a tile of the one-tile-at-a-time forward on wgmma for heads of at most 64 (-D to sweep: 64
// or 128): a wider tile halves the tiles' barriers and waits for the same products. On an H200
// (2026-12-02) 128 took the forward at (8, 2048, 8, 64) from 0.23 to 0.22 ms and softmax training
// (heads of 64) from 428,215 / 430,864 to 431,256 / 430,565 tok/s: level, so 64.
#ifndef FLASH_FWD_KEY_TILE
#define FLASH_FWD_KEY_TILE 64
#endif
// Warpgroups a block of the forward takes below heads of 128 (-D to sweep; block_warpgroups)
#ifndef FLASH_FWD_NARROW_WARPGROUPS
#define FLASH_FWD_NARROW_WARPGROUPS 1
#endif
// ... and of the backward's dK/dV and dQ kernels at q.k heads between 64 and 128 (MLA's 96). On
// an H200 (2026-12-02, one call, two rounds each beside one warpgroup for both) MLA trained at
// 376,641 tok/s with two for dK/dV (203 registers: one block of 8 warps an SM, where one
// warpgroup ran two blocks of 4; the two share each Q and dO tile) against 374,906; two for dQ
// (three blocks of 4 warps before) 369,786 against 376,325, and both 370,645 against 376,381
#ifndef FLASH_DKV_MID_WARPGROUPS
#define FLASH_DKV_MID_WARPGROUPS 2
#endif
#ifndef FLASH_DQ_MID_WARPGROUPS
#define FLASH_DQ_MID_WARPGROUPS 1
#endif

// C = A_frags (16 x DK, registers or loaded per k-step) times M^T for a row-major M tile of
// `N` rows: C[n] for n = 0..N/8-1
template <int DK, int N>
__device__ __forceinline__ void scores(float c[N / 8][4], const bf16 *a_tile, int lda, int a_row0, const bf16 *m_tile,
                                       int ldm, int lane) {
#pragma unroll
    for (int n = 0; n < N / 8; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DK / 16; kk++) scores_step<N>(c, a_tile, lda, a_row0, m_tile, ldm, kk * 16, lane);
}

// ---- the block's products, two ways ----
//
// scores<K, N>(c, a, m): c = A M^T, A the warpgroup's tile of ROWS rows and K columns (each warp its
// 16 rows), M a tile of N rows and K columns. accumulate<N, D>(acc, p, b): acc += P B, P the
// warp's 16 x N fragments, B a tile of N rows and D columns. copy<R, C>(tile, src) issues a tile's
// cp.async copy; landed() makes landed copies visible to the products (with the barrier after it).

struct WarpMma { // mma.sync on tiles with rows padded by 8 elements (no bank conflicts for ldmatrix)
    static constexpr bool warps_skip = true; // a warp may skip a tile that is masked for its rows
    // the backward's tiles of the other side (keys for dQ, queries for dK and dV): smaller for
    // wide heads, whose accumulators take more registers
    template <int DK, int DV> __host__ __device__ static constexpr int other_tile() {
        return (DK > 64 || DV > 64) ? 32 : 64;
    }
    template <int R, int C> __host__ __device__ static constexpr int elems() { return R * (C + 8); }
    template <int R, int C, int NT = THREADS> __device__ static void copy(bf16 *tile, const bf16 *src) {
        copy_tile_async<R, C, NT>(tile, C + 8, src);
    }
    __device__ static void landed() {}
    template <int K, int N> __device__ static void scores(float (&c)[N / 8][4], const bf16 *a, const bf16 *m) {
        ::scores<K, N>(c, a, K + 8, 16 * (threadIdx.x >> 5), m, K + 8, threadIdx.x & 31);
    }
    template <int N, int D>
    __device__ static void accumulate(float (&acc)[D / 8][4], const float (&p)[N / 8][4], const bf16 *b) {
        accumulate_pv<N, D>(acc, p, b, D + 8, threadIdx.x & 31);
    }
    template <int K1, int K2, int N>
    __device__ static void scores_pair(float (&c1)[N / 8][4], const bf16 *a1, const bf16 *m1, float (&c2)[N / 8][4],
                                       const bf16 *a2, const bf16 *m2) {
        scores<K1, N>(c1, a1, m1);
        scores<K2, N>(c2, a2, m2);
    }
    template <int N, int D1, int D2>
    __device__ static void accumulate_pair(float (&acc1)[D1 / 8][4], const float (&p1)[N / 8][4], const bf16 *b1,
                                           float (&acc2)[D2 / 8][4], const float (&p2)[N / 8][4], const bf16 *b2) {
        accumulate<N, D1>(acc1, p1, b1);
        accumulate<N, D2>(acc2, p2, b2);
    }
};

// a warp's 16 x N C fragments rounded to bf16 as the A fragments of N / 16 k16 slices
template <int N> __device__ __forceinline__ void pack_fragments(unsigned (&a)[N / 16][4], const float (&p)[N / 8][4]) {
#pragma unroll
    for (int kk = 0; kk < N / 16; kk++) {
        a[kk][0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
        a[kk][1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        a[kk][2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[kk][3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
    }
}

struct GroupMma { // wgmma on swizzled tiles (sm_90a); the warpgroup runs every product together
    static constexpr bool warps_skip = false;
    // with no B fragments in registers, 64 rows of the other side fit at every width (the dK/dV
    // kernel of heads of 128 at 254 registers, unspilled: 4.24 against 4.75 ms for 32 rows at
    // (4, 4096, 16, 128), fwd+bwd on an H200; 246 registers at two warpgroups a block)
    template <int DK, int DV> __host__ __device__ static constexpr int other_tile() { return 64; }
    template <int R, int C> __host__ __device__ static constexpr int elems() { return R * C; }
    template <int R, int C, int NT = THREADS> __device__ static void copy(bf16 *tile, const bf16 *src) {
        copy_tile_swizzled<R, C, NT>(tile, src);
    }
    __device__ static void landed() { fence_async_shared(); }
    template <int K, int N> __device__ static void issue_scores(float (&c)[N / 8][4], const bf16 *a, const bf16 *m) {
#pragma unroll
        for (int kk = 0; kk < K / 16; kk++)
            wgmma_ss<0>(c, wg_k_major<ROWS, K>(a, kk), wg_k_major<N, K>(m, kk), kk > 0, wgmma_n<N>{});
    }
    template <int N, int D>
    __device__ static void issue_accumulate(float (&acc)[D / 8][4], const unsigned (&a)[N / 16][4], const bf16 *b) {
#pragma unroll
        for (int kk = 0; kk < N / 16; kk++) wgmma_rs<1>(acc, a[kk], wg_mn_major<N, D>(b, kk), 1, wgmma_n<D>{});
    }
    // Each batch holds its registers before wgmma.fence, so that the ordinary writes to them (an
    // earlier dead store to c, the packing of P) come before the fence, as PTX requires.
    template <int K, int N> __device__ static void scores(float (&c)[N / 8][4], const bf16 *a, const bf16 *m) {
        wg_hold(c);
        wg_fence();
        issue_scores<K, N>(c, a, m);
        wg_commit();
        wg_wait<0>();
        wg_hold(c);
    }
    // two independent products in one batch: one wait for both
    template <int K1, int K2, int N>
    __device__ static void scores_pair(float (&c1)[N / 8][4], const bf16 *a1, const bf16 *m1, float (&c2)[N / 8][4],
                                       const bf16 *a2, const bf16 *m2) {
        wg_hold(c1);
        wg_hold(c2);
        wg_fence();
        issue_scores<K1, N>(c1, a1, m1);
        issue_scores<K2, N>(c2, a2, m2);
        wg_commit();
        wg_wait<0>();
        wg_hold(c1);
        wg_hold(c2);
    }
    template <int N, int D>
    __device__ static void accumulate(float (&acc)[D / 8][4], const float (&p)[N / 8][4], const bf16 *b) {
        unsigned a[N / 16][4]; // P in bf16: wgmma reads these registers until its wait, so all stay live
        pack_fragments<N>(a, p);
        wg_hold(acc);
        wg_hold_registers(a);
        wg_fence();
        issue_accumulate<N, D>(acc, a, b);
        wg_commit();
        wg_wait<0>();
        wg_hold(acc);
        wg_hold_registers(a);
    }
    template <int N, int D1, int D2>
    __device__ static void accumulate_pair(float (&acc1)[D1 / 8][4], const float (&p1)[N / 8][4], const bf16 *b1,
                                           float (&acc2)[D2 / 8][4], const float (&p2)[N / 8][4], const bf16 *b2) {
        unsigned a1[N / 16][4], a2[N / 16][4];
        pack_fragments<N>(a1, p1);
        pack_fragments<N>(a2, p2);
        wg_hold(acc1);
        wg_hold(acc2);
        wg_hold_registers(a1);
        wg_hold_registers(a2);
        wg_fence();
        issue_accumulate<N, D1>(acc1, a1, b1);
        issue_accumulate<N, D2>(acc2, a2, b2);
        wg_commit();
        wg_wait<0>();
        wg_hold(acc1);
        wg_hold(acc2);
        wg_hold_registers(a1);
        wg_hold_registers(a2);
    }
};

// ---- packed bf16 operands ----
//
// Before the kernels run, q, k, v (and dO for the backward) are rounded to bf16 once, into
// packed per-head buffers of rows [B * heads][T] of Dp channels (Dp: the padded width, zeros
// past the head's), so that every tile is a contiguous block the kernels copy with cp.async, two
// stages deep, instead of converting fp32 on every tile load. A tile reaching past T reads the
// next head's first rows, or the zero guard of GUARD rows after the last head, all of them masked
// (keys past T come after every query; queries past T get P = 0 and are not stored). The
// buffers grow with B * T alone, as every buffer of a model must (it keeps its buffers for any
// shape of no more tokens and no longer sequences).

// What a packed buffer is made from: head h of row (b, t) is `own` columns at src + (b T + t)
// stride + h head, then D - own columns of one copy every head shares (keys' k_shared) at
// shared + (b T + t) shared_stride. With rope_cos, the last `rot` of the D columns are rotated as
// they are read (RoPE's half-split pairs at position t; tables [T, rot / 2]).
struct PackSource {
    const float *src;
    long stride, head;
    int own;
    const float *shared;
    long shared_stride;
    const float *rope_cos, *rope_sin;
    int rot;
};

// the plain layout: heads of D side by side, the last rot columns rotated where the tables are given
static PackSource heads_side_by_side(const float *src, long stride, int D, const float *rope_cos = nullptr,
                                     const float *rope_sin = nullptr, int rot = 0) {
    return PackSource{src, stride, D, D, nullptr, 0, rope_cos, rope_sin, rot};
}

// column d of a head's row: its own columns at r, the shared ones after them at sh
__device__ __forceinline__ float source_column(const PackSource &a, const float *r, const float *sh, int d) {
    return d < a.own ? __ldg(r + d) : __ldg(sh + (d - a.own));
}

// column d (of the last rot, from `first`) rotated as rope_forward rotates it: pairs (j, j + half)
// of the rotated columns, cos and sin the row of its position
__device__ __forceinline__ float rotated(const PackSource &a, const float *r, const float *sh, int d, int first,
                                         const float *cos_row, const float *sin_row) {
    int half = a.rot / 2, j = d - first < half ? d - first : d - first - half;
    float2 p = rope_pair(source_column(a, r, sh, first + j), source_column(a, r, sh, first + j + half),
                         __ldg(cos_row + j), __ldg(sin_row + j));
    return d - first < half ? p.x : p.y;
}

// a packed buffer's row (b H + h) T + t: the token b T + t it holds, and its head h
__device__ __forceinline__ size_t token_of_packed_row(size_t row, int T, int H, int *h) {
    int t = (int)(row % T), bh = (int)(row / T);
    *h = bh % H;
    return (size_t)(bh / H) * T + t;
}

// 8 consecutive floats at p (16-byte aligned where VEC: two vector loads)
template <bool VEC> __device__ __forceinline__ void load8(float (&x)[8], const float *p) {
    if constexpr (VEC) {
        float4 lo = __ldg(reinterpret_cast<const float4 *>(p)), hi = __ldg(reinterpret_cast<const float4 *>(p) + 1);
        x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] = __ldg(p + j);
    }
}

// Columns [d0, d0 + 8) of a head's row (own columns at r, shared at sh; rotated from column
// `first`) times mul into x, where the group lies whole in one part of the row (pack_whole_groups):
// eight loads of a kind at once, in vectors where VEC.
template <bool VEC>
__device__ __forceinline__ void pack_group(float (&x)[8], const PackSource &a, const float *r, const float *sh,
                                           int d0, int first, const float *cos_row, const float *sin_row, float mul) {
    auto at = [&](int d) { return d < a.own ? r + d : sh + (d - a.own); };
    if (d0 < first) {
        load8<VEC>(x, at(d0));
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] *= mul;
        return;
    }
    int half = a.rot / 2, k = d0 - first, j0 = k < half ? k : k - half; // pairs (j, j + half)
    float lo[8], hi[8], c[8], sn[8];
    load8<VEC>(lo, at(first + j0));
    load8<VEC>(hi, at(first + j0 + half));
    load8<VEC>(c, cos_row + j0);
    load8<VEC>(sn, sin_row + j0);
    if (k < half) {
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] = rope_pair(lo[j], hi[j], c[j], sn[j]).x * mul;
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] = rope_pair(lo[j], hi[j], c[j], sn[j]).y * mul;
    }
}

// Whether each thread's 8 columns lie whole in one part of the row (own, shared, rotated or past
// D), and whether they are 16-byte aligned for vector loads (pack_heads_kernel's WHOLE and VEC).
static bool pack_whole_groups(const PackSource &a, int D) {
    bool rotating = a.rope_cos != nullptr;
    return D % 8 == 0 && a.own % 8 == 0 && (!rotating || a.rot % 16 == 0);
}
static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }
static bool pack_vectors(const PackSource &a) {
    bool shared_ok = !a.shared || (aligned16(a.shared) && a.shared_stride % 4 == 0);
    bool tables_ok = !a.rope_cos || (aligned16(a.rope_cos) && aligned16(a.rope_sin));
    return aligned16(a.src) && a.stride % 4 == 0 && a.head % 4 == 0 && shared_ok && tables_ok;
}

// row (b * H + h) * T + t of dst = row (b, t), head h of the source times mul; the guard rows
// after the last head are zero. WHOLE: a thread's 8 columns lie in one part of the row
// (pack_group); else column by column.
template <bool WHOLE, bool VEC>
__global__ void pack_heads_kernel(bf16 *dst, PackSource a, int B, int T, int H, int D, int Dp, float mul) {
    size_t rows = (size_t)B * H * T, groups = (rows + GUARD) * (Dp / 8);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < groups; i += (size_t)gridDim.x * blockDim.x) {
        int d0 = 8 * (int)(i % (Dp / 8));
        size_t row = i / (Dp / 8);
        float x[8] = {};
        if (row < rows && d0 < D) {
            int h;
            size_t bt = token_of_packed_row(row, T, H, &h);
            const float *r = a.src + bt * a.stride + (size_t)h * a.head, *sh = a.shared + bt * a.shared_stride;
            int first = a.rope_cos ? D - a.rot : D; // the first rotated column
            size_t at = (row % T) * (a.rot / 2);   // the position's row of the rotation tables
            const float *cos_row = a.rope_cos + at, *sin_row = a.rope_sin + at;
            if constexpr (WHOLE) {
                pack_group<VEC>(x, a, r, sh, d0, first, cos_row, sin_row, mul);
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    int d = d0 + j;
                    if (d >= D) continue;
                    float v = d < first ? source_column(a, r, sh, d) : rotated(a, r, sh, d, first, cos_row, sin_row);
                    x[j] = v * mul;
                }
            }
        }
        *reinterpret_cast<uint4 *>(dst + row * Dp + d0) =
            make_uint4(pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]), pack_bf16(x[6], x[7]));
    }
}

// The backward's dO packed as pack_heads packs it, and D = dO . O of every row (the softmax
// gradient's row sums, [B, H, T] as lse) from the same read of dO: a row's Dp / 8 = LANES threads
// sum their parts by shuffles. LANES a power of two, so a row's threads are aligned in a warp; the
// loop runs whole warps (bound rounded up to 32) so that every shuffle finds its lanes.
template <int LANES>
__global__ void pack_dout_rowdot_kernel(bf16 *dst, float *D, const float *dout, const float *o, int B, int T, int H,
                                        int Dv, long stride) {
    static_assert(LANES >= 1 && LANES <= 32 && (LANES & (LANES - 1)) == 0, "a row's lanes: a power of two in a warp");
    constexpr int Dp = 8 * LANES;
    size_t rows = (size_t)B * H * T, groups = (rows + GUARD) * LANES, bound = (groups + 31) / 32 * 32;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < bound; i += (size_t)gridDim.x * blockDim.x) {
        int d0 = 8 * (int)(i % LANES);
        size_t row = i / LANES;
        float x[8] = {}, dot = 0.0f;
        if (row < rows) {
            int h;
            size_t bt = token_of_packed_row(row, T, H, &h), at = bt * stride + (size_t)h * Dv;
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (d0 + j < Dv) {
                    x[j] = __ldg(dout + at + d0 + j);
                    dot += x[j] * __ldg(o + at + d0 + j);
                }
        }
#pragma unroll
        for (int m = LANES / 2; m > 0; m >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, m);
        if (i < groups) {
            *reinterpret_cast<uint4 *>(dst + row * Dp + d0) = make_uint4(pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]),
                                                                        pack_bf16(x[4], x[5]), pack_bf16(x[6], x[7]));
            if (d0 == 0 && row < rows) D[row] = dot;
        }
    }
}

int padded_width(int d) { return (d + 31) / 32 * 32; }

// The widths the kernels run at: the instantiated pairs of padded widths (FLASH_DISPATCH), else
// (128, 128), which covers every other pair with more padding.
struct Widths {
    int dk, dv;
};
Widths kernel_widths(const AttnDims &s) {
    static const int pairs[][2] = {{32, 32}, {64, 64}, {96, 64}, {128, 128}, {128, 64}, {96, 96}, {64, 32}, {32, 64}};
    int a = padded_width(s.Dk), b = padded_width(s.Dv);
    for (const auto &p : pairs)
        if (p[0] == a && p[1] == b) return Widths{a, b};
    return Widths{128, 128};
}

size_t packed_elems(int B, int heads, int T, int Dp) { return ((size_t)B * heads * T + GUARD) * Dp; }

void pack_heads(bf16 *dst, const PackSource &a, int B, int T, int H, int D, int Dp, float mul) {
    size_t groups = ((size_t)B * H * T + GUARD) * (Dp / 8);
    auto launch = [&](auto kernel) { kernel<<<grid_for(groups, 256), 256>>>(dst, a, B, T, H, D, Dp, mul); };
    if (!pack_whole_groups(a, D)) launch(pack_heads_kernel<false, false>);
    else if (pack_vectors(a)) launch(pack_heads_kernel<true, true>);
    else launch(pack_heads_kernel<true, false>);
    CUDA_LAUNCHED();
}

// store_rows of columns [first, D) (times mul, column c at dst's c - first) for the gradient of q
// or k where the kernels rotated its last R columns (flash_mma_rotates): those columns' gradient
// rotated back, as rope_backward does. A thread holds both columns of a pair (c, c + R / 2):
// fragments n and n + R / 16.
template <int D, int R>
__device__ __forceinline__ void store_rows_unrotated(float *dst, long stride, const float (&acc)[D / 8][4], int row0,
                                                     int n_rows, float mul, const float *rope_cos,
                                                     const float *rope_sin, int lane, int first) {
    static_assert(R % 16 == 0 && R <= D, "rotated pairs lie in whole fragments");
    constexpr int HALF = R / 2, PAIR = R / 16, FROM = (D - R) / 8; // FROM: the first rotated fragment
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = row0 + g + 8 * half;
        if (row >= n_rows) continue;
        float *out = dst + (size_t)row * stride;
        const float *cr = rope_cos + (size_t)row * HALF, *sr = rope_sin + (size_t)row * HALF;
#pragma unroll
        for (int n = 0; n < FROM; n++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                int col = n * 8 + 2 * t + j;
                if (col >= first) out[col - first] = acc[n][2 * half + j] * mul;
            }
#pragma unroll
        for (int n = 0; n < PAIR; n++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                int col = n * 8 + 2 * t + j;
                float a = acc[FROM + n][2 * half + j] * mul, b = acc[FROM + n + PAIR][2 * half + j] * mul;
                float2 p = rope_pair(a, b, __ldg(cr + col), -__ldg(sr + col)); // turned back
                out[D - R - first + col] = p.x;
                out[D - R - first + col + HALF] = p.y;
            }
    }
}

// the same for a rotated width flash_mma_rotates admits below D (MLA's decoupled key and the query
// columns that meet it): the last 32 or 64 columns
template <int D>
__device__ __forceinline__ void store_rows_part_unrotated(float *dst, long stride, const float (&acc)[D / 8][4],
                                                          int row0, int n_rows, float mul, const AttnDims &s,
                                                          int lane, int first) {
    if constexpr (D > 32)
        if (s.rot == 32)
            store_rows_unrotated<D, 32>(dst, stride, acc, row0, n_rows, mul, s.rope_cos, s.rope_sin, lane, first);
    if constexpr (D > 64)
        if (s.rot == 64)
            store_rows_unrotated<D, 64>(dst, stride, acc, row0, n_rows, mul, s.rope_cos, s.rope_sin, lane, first);
}

// ---- forward ----

// keys after their row set to -inf in the tile of keys from c0 (a warp's rows row0 and row1 = row0 + 8)
template <int BC>
__device__ __forceinline__ void mask_later_keys(float (&sc)[BC / 8][4], int c0, int row0, int row1, int t) {
#pragma unroll
    for (int n = 0; n < BC / 8; n++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int col = c0 + n * 8 + 2 * t + j;
            if (col > row0) sc[n][j] = -INFINITY;
            if (col > row1) sc[n][2 + j] = -INFINITY;
        }
}

// The online softmax of a warp's two rows over one tile of scores (base 2): the running maxima m
// and sums l move on, the scores become P = exp2(S - m), and corr is the factor for what was
// accumulated before. Every row's first tile holds key 0 <= its own index, so the running maximum
// is finite from then on (a tile wholly after a row, which the overlapped forward's first
// warpgroups visit, leaves it with corr = 1 and P = 0).
struct RowStats {
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
};
template <int BC>
__device__ __forceinline__ void softmax_tile(float (&sc)[BC / 8][4], RowStats &r, float &corr0, float &corr1) {
    float mx0 = r.m0, mx1 = r.m1;
#pragma unroll
    for (int n = 0; n < BC / 8; n++) {
        mx0 = fmaxf(mx0, fmaxf(sc[n][0], sc[n][1]));
        mx1 = fmaxf(mx1, fmaxf(sc[n][2], sc[n][3]));
    }
    mx0 = quad_max(mx0);
    mx1 = quad_max(mx1);
    corr0 = exp2f(r.m0 - mx0);
    corr1 = exp2f(r.m1 - mx1);
    r.m0 = mx0;
    r.m1 = mx1;
    r.l0 *= corr0;
    r.l1 *= corr1;
#pragma unroll
    for (int n = 0; n < BC / 8; n++) {
        sc[n][0] = exp2f(sc[n][0] - mx0);
        sc[n][1] = exp2f(sc[n][1] - mx0);
        sc[n][2] = exp2f(sc[n][2] - mx1);
        sc[n][3] = exp2f(sc[n][3] - mx1);
        r.l0 += sc[n][0] + sc[n][1];
        r.l1 += sc[n][2] + sc[n][3];
    }
}

template <int DV> __device__ __forceinline__ void rescale(float (&acc)[DV / 8][4], float corr0, float corr1) {
#pragma unroll
    for (int n = 0; n < DV / 8; n++) {
        acc[n][0] *= corr0;
        acc[n][1] *= corr0;
        acc[n][2] *= corr1;
        acc[n][3] *= corr1;
    }
}

// a warp's rows of O (the accumulators over the row sums) and their log-sum-exp (natural)
template <int DV>
__device__ __forceinline__ void store_forward_rows(const AttnDims &s, float *o, float *lse, float (&acc)[DV / 8][4],
                                                   RowStats r, int b, int h, int bh, int r0, int warp, int lane) {
    r.l0 = quad_sum(r.l0);
    r.l1 = quad_sum(r.l1);
    store_rows<DV>(o + (size_t)b * s.T * s.os + (size_t)h * s.Dv, s.os, acc, r0 + 16 * warp, s.T, s.Dv, 1.0f / r.l0,
                   1.0f / r.l1, lane);
    int row0 = r0 + 16 * warp + (lane >> 2), row1 = row0 + 8;
    if ((lane & 3) == 0) {
        float *lb = lse + (size_t)bh * s.T;
        if (row0 < s.T) lb[row0] = (r.m0 + log2f(r.l0)) * LN2;
        if (row1 < s.T) lb[row1] = (r.m1 + log2f(r.l1)) * LN2;
    }
}

// The forward one tile at a time, each product waited for before the softmax (mma.sync, and
// wgmma at one warpgroup a block; the kernel below overlaps them)
template <class P, int DK, int DV, int BC>
__global__ void __launch_bounds__(32 * WARPS, FLASH_FWD_MIN_BLOCKS)
    flash_forward_kernel(AttnDims s, float *o, float *lse, const bf16 *q16, const bf16 *k16, const bf16 *v16) {
    constexpr int EK = P::template elems<BC, DK>(), EV = P::template elems<BC, DV>();
    extern __shared__ __align__(1024) unsigned char smem[]; // swizzled tiles: 1024-byte aligned
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *Ks = Qs + P::template elems<ROWS, DK>(), *Vs = Ks + 2 * EK; // 2 stages
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, hk = h / (s.H / s.Hkv);
    int r0 = (gridDim.x - 1 - blockIdx.x) * ROWS; // the longest rows first
    const bf16 *kb = k16 + (size_t)(b * s.Hkv + hk) * s.T * DK, *vb = v16 + (size_t)(b * s.Hkv + hk) * s.T * DV;
    int n_tiles = (min(r0 + ROWS, s.T) + BC - 1) / BC;
    P::template copy<ROWS, DK>(Qs, q16 + ((size_t)bh * s.T + r0) * DK);
    P::template copy<BC, DK>(Ks, kb);
    P::template copy<BC, DV>(Vs, vb);
    cp_async_commit();

    int row0 = r0 + 16 * warp + g, row1 = row0 + 8;
    float acc[DV / 8][4] = {};
    RowStats r;
    for (int kt = 0; kt < n_tiles; kt++) {
        int c0 = kt * BC, cur = kt & 1;
        cp_async_wait<0>(); // this tile (and Q, the first time) has landed
        P::landed();
        __syncthreads(); // ... for every warp, and every warp is done with the other stage
        if (kt + 1 < n_tiles) { // the next tiles load while this one is used
            P::template copy<BC, DK>(Ks + (cur ^ 1) * EK, kb + (size_t)(c0 + BC) * DK);
            P::template copy<BC, DV>(Vs + (cur ^ 1) * EV, vb + (size_t)(c0 + BC) * DV);
            cp_async_commit();
        }
        const bf16 *Kt = Ks + cur * EK, *Vt = Vs + cur * EV;
        float sc[BC / 8][4], corr0, corr1;
        P::template scores<DK, BC>(sc, Qs, Kt);
        if (c0 + BC > r0 + 16 * warp) mask_later_keys<BC>(sc, c0, row0, row1, t); // the diagonal tile
        softmax_tile<BC>(sc, r, corr0, corr1);
        rescale<DV>(acc, corr0, corr1);
        P::template accumulate<BC, DV>(acc, sc, Vt);
    }
    store_forward_rows<DV>(s, o, lse, acc, r, b, h, bh, r0, warp, lane);
}

// The forward on wgmma with the products overlapping the softmax (FlashAttention-3's
// intra-warpgroup overlap): tile j's scores S_j = Q K_j^T and the previous tile's P_{j-1} V_{j-1}
// are issued together, and S_j's softmax runs on the CUDA cores while P V is on the tensor cores;
// O is rescaled by S_j's correction once P V has landed. K and V are loaded a tile apart: the
// copy group j holds K_j and V_{j-1}, so that while tile j is used, K_{j+1} and V_j load into the
// stages S_{j-1} and P_{j-2} V_{j-2} have finished with. A block of WGS warpgroups takes 64 WGS
// query rows, which share each K and V tile (block_warpgroups).
template <int DK, int DV, int WGS>
__global__ void __launch_bounds__(THREADS * WGS, 1)
    flash_forward_overlap_kernel(AttnDims s, float *o, float *lse, const bf16 *q16, const bf16 *k16,
                                 const bf16 *v16) {
    constexpr int BC = ROWS, QR = ROWS * WGS, NT = THREADS * WGS; // key tile, query rows, threads
    constexpr int EQ = QR * DK, EK = BC * DK, EV = BC * DV;
    extern __shared__ __align__(1024) unsigned char smem[]; // swizzled tiles: 1024-byte aligned
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *Ks = Qs + EQ, *Vs = Ks + 2 * EK; // K and V: 2 stages
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, hk = h / (s.H / s.Hkv);
    int r0 = (gridDim.x - 1 - blockIdx.x) * QR; // the longest rows first
    const bf16 *kb = k16 + (size_t)(b * s.Hkv + hk) * s.T * DK, *vb = v16 + (size_t)(b * s.Hkv + hk) * s.T * DV;
    const bf16 *qb = q16 + ((size_t)bh * s.T + r0) * DK;
    const bf16 *Qw = Qs + warpgroup_of<WGS>(warp) * ROWS * DK; // this warpgroup's Q tile
    int n_tiles = (min(r0 + QR, s.T) + BC - 1) / BC;
    for (int w = 0; w < WGS; w++) copy_tile_swizzled<ROWS, DK, NT>(Qs + w * ROWS * DK, qb + (size_t)w * ROWS * DK);
    copy_tile_swizzled<BC, DK, NT>(Ks, kb);
    cp_async_commit(); // group 0: Q, K_0
    if (n_tiles > 1) copy_tile_swizzled<BC, DK, NT>(Ks + EK, kb + (size_t)BC * DK);
    copy_tile_swizzled<BC, DV, NT>(Vs, vb);
    cp_async_commit(); // group 1: K_1, V_0
    int row0 = r0 + 16 * warp + g, row1 = row0 + 8;
    float acc[DV / 8][4] = {}, sc[BC / 8][4], corr0, corr1;
    unsigned pa[BC / 16][4]; // P of the previous tile, bf16, read by its P V product until that lands
    RowStats r;
    auto softmax = [&](int c0) { // tile c0's scores, landed, to P
        wg_hold(sc);
        if (c0 + BC > r0 + 16 * warp) mask_later_keys<BC>(sc, c0, row0, row1, t); // the diagonal tile
        softmax_tile<BC>(sc, r, corr0, corr1);
    };
    cp_async_wait<1>(); // group 0
    fence_async_shared();
    __syncthreads();
    wg_fence();
    GroupMma::issue_scores<DK, BC>(sc, Qw, Ks);
    wg_commit();
    wg_wait<0>();
    softmax(0);
    pack_fragments<BC>(pa, sc);
    for (int j = 1; j < n_tiles; j++) {
        cp_async_wait<0>(); // group j: K_j, V_{j-1}
        fence_async_shared();
        __syncthreads(); // ... for every warp; and every warp is done with S_{j-1} and P_{j-2} V_{j-2}
        if (j + 1 < n_tiles)
            copy_tile_swizzled<BC, DK, NT>(Ks + ((j + 1) & 1) * EK, kb + (size_t)(j + 1) * BC * DK);
        copy_tile_swizzled<BC, DV, NT>(Vs + (j & 1) * EV, vb + (size_t)j * BC * DV);
        cp_async_commit(); // group j + 1
        wg_hold(sc);
        wg_hold(acc);
        wg_hold_registers(pa);
        wg_fence();
        GroupMma::issue_scores<DK, BC>(sc, Qw, Ks + (j & 1) * EK);
        wg_commit();
        GroupMma::issue_accumulate<BC, DV>(acc, pa, Vs + ((j - 1) & 1) * EV);
        wg_commit();
        wg_wait<1>(); // S_j has landed; P_{j-1} V_{j-1} may still run
        softmax(j * BC);
        wg_wait<0>();
        wg_hold(acc);
        wg_hold_registers(pa);
        rescale<DV>(acc, corr0, corr1);
        pack_fragments<BC>(pa, sc);
    }
    cp_async_wait<0>(); // V of the last tile
    fence_async_shared();
    __syncthreads();
    wg_hold(acc);
    wg_hold_registers(pa);
    wg_fence();
    GroupMma::issue_accumulate<BC, DV>(acc, pa, Vs + ((n_tiles - 1) & 1) * EV);
    wg_commit();
    wg_wait<0>();
    wg_hold(acc);
    wg_hold_registers(pa);
    store_forward_rows<DV>(s, o, lse, acc, r, b, h, bh, r0, warp, lane);
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

// A block of WGS warpgroups (wgmma) takes 64 WGS query rows, which share each K and V tile.
template <class P, int DK, int DV, int BC, int WGS>
__global__ void __launch_bounds__(THREADS * WGS, backward_min_blocks<P, DK, DV, WGS>(true))
    flash_dq_kernel(AttnDims s, float *dq, const bf16 *q16, const bf16 *k16, const bf16 *v16,
                    const bf16 *do16, const float *lse, const float *Drow) {
    constexpr int EK = P::template elems<BC, DK>(), EV = P::template elems<BC, DV>(), QR = ROWS * WGS,
                  NT = THREADS * WGS, EQ = P::template elems<ROWS, DK>(), EO = P::template elems<ROWS, DV>();
    extern __shared__ __align__(1024) unsigned char smem[]; // swizzled tiles: 1024-byte aligned
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *dOs = Qs + WGS * EQ, *Ks = dOs + WGS * EO, *Vs = Ks + 2 * EK;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, wg = warpgroup_of<WGS>(warp);
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, hk = h / (s.H / s.Hkv);
    int r0 = (gridDim.x - 1 - blockIdx.x) * QR;
    const bf16 *kb = k16 + (size_t)(b * s.Hkv + hk) * s.T * DK, *vb = v16 + (size_t)(b * s.Hkv + hk) * s.T * DV;
    int n_tiles = (min(r0 + QR, s.T) + BC - 1) / BC;
    for (int w = 0; w < WGS; w++) {
        P::template copy<ROWS, DK, NT>(Qs + w * EQ, q16 + ((size_t)bh * s.T + r0 + w * ROWS) * DK);
        P::template copy<ROWS, DV, NT>(dOs + w * EO, do16 + ((size_t)bh * s.T + r0 + w * ROWS) * DV);
    }
    P::template copy<BC, DK, NT>(Ks, kb);
    P::template copy<BC, DV, NT>(Vs, vb);
    cp_async_commit();
    int row0 = r0 + 16 * warp;
    float L[2], D[2];
    for (int i = 0; i < 2; i++) {
        int row = row0 + g + 8 * i;
        L[i] = row < s.T ? lse[(size_t)bh * s.T + row] * LOG2E : INFINITY; // rows past T: P = 0
        D[i] = row < s.T ? Drow[(size_t)bh * s.T + row] : 0.0f;
    }
    float acc[DK / 8][4] = {};
    for (int kt = 0; kt < n_tiles; kt++) {
        int c0 = kt * BC, cur = kt & 1;
        cp_async_wait<0>();
        P::landed();
        __syncthreads();
        if (kt + 1 < n_tiles) {
            P::template copy<BC, DK, NT>(Ks + (cur ^ 1) * EK, kb + (size_t)(c0 + BC) * DK);
            P::template copy<BC, DV, NT>(Vs + (cur ^ 1) * EV, vb + (size_t)(c0 + BC) * DV);
            cp_async_commit();
        }
        // else every key of the tile is after this warp's rows (a warpgroup's, with wgmma)
        if (c0 <= (P::warps_skip ? row0 + 15 : r0 + wg * ROWS + ROWS - 1)) {
            const bf16 *Kt = Ks + cur * EK, *Vt = Vs + cur * EV;
            float p[BC / 8][4], ds[BC / 8][4];
            P::template scores_pair<DK, DV, BC>(p, Qs + wg * EQ, Kt, ds, dOs + wg * EO, Vt); // S = Q K^T, dP = dO V^T
            probabilities<BC>(p, ds, row0, c0, true, L, D, nullptr, nullptr, lane);
            P::template accumulate<BC, DK>(acc, ds, Kt); // dQ += dS K
        }
    }
    float *dq_rows = dq + (size_t)b * s.T * s.qs + (size_t)h * s.Dk;
    if (s.rope_cos && s.rot == DK)
        store_rows_unrotated<DK, DK>(dq_rows, s.qs, acc, row0, s.T, s.scale, s.rope_cos, s.rope_sin, lane, 0);
    else if (s.rope_cos) store_rows_part_unrotated<DK>(dq_rows, s.qs, acc, row0, s.T, s.scale, s, lane, 0);
    else store_rows<DK>(dq_rows, s.qs, acc, row0, s.T, s.Dk, s.scale, s.scale, lane);
}

// ---- backward: dK and dV over key blocks ----

// Query tile i of a key block's walk: the group's query heads one after another, each from the
// block's first key row (earlier queries see none of its keys) to T, BQ rows at a time; copies
// its Q and dO tiles (cp.async) and its rows' log-sum-exp (base 2) and D into the given stage.
template <class P, int DK, int DV, int BQ, int NT>
__device__ __forceinline__ void load_query_tile(bf16 *Qs, bf16 *dOs, float *Ls, float *Ds, const AttnDims &s, int b,
                                                int h, int q0, const bf16 *q16, const bf16 *do16,
                                                const float *lse, const float *Drow) {
    size_t bh = (size_t)b * s.H + h;
    P::template copy<BQ, DK, NT>(Qs, q16 + (bh * s.T + q0) * DK);
    P::template copy<BQ, DV, NT>(dOs, do16 + (bh * s.T + q0) * DV);
    for (int i = threadIdx.x; i < BQ; i += NT) {
        bool in = q0 + i < s.T;
        Ls[i] = in ? lse[bh * s.T + q0 + i] * LOG2E : INFINITY;
        Ds[i] = in ? Drow[bh * s.T + q0 + i] : 0.0f;
    }
}

// A block of WGS warpgroups (wgmma) takes 64 WGS key rows, which share each Q and dO tile.
template <class P, int DK, int DV, int BQ, int WGS>
__global__ void __launch_bounds__(THREADS * WGS, backward_min_blocks<P, DK, DV, WGS>(false))
    flash_dkv_kernel(AttnDims s, float *dk, float *dk_heads, float *dv, const bf16 *q16, const bf16 *k16,
                     const bf16 *v16, const bf16 *do16, const float *lse, const float *Drow) {
    constexpr int EQ = P::template elems<BQ, DK>(), EO = P::template elems<BQ, DV>(), KR = ROWS * WGS,
                  NT = THREADS * WGS, EK = P::template elems<ROWS, DK>(), EV = P::template elems<ROWS, DV>();
    extern __shared__ __align__(1024) unsigned char smem[]; // swizzled tiles: 1024-byte aligned
    bf16 *Ks = reinterpret_cast<bf16 *>(smem), *Vs = Ks + WGS * EK, *Qs = Vs + WGS * EV, *dOs = Qs + 2 * EQ;
    float *Ls = reinterpret_cast<float *>(dOs + 2 * EO), *Ds = Ls + 2 * BQ; // two stages each
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wg = warpgroup_of<WGS>(warp);
    int bg = blockIdx.y, b = bg / s.Hkv, hk = bg % s.Hkv, group = s.H / s.Hkv;
    int c0 = (gridDim.x - 1 - blockIdx.x) * KR; // the blocks with the most queries first
    for (int w = 0; w < WGS; w++) {
        P::template copy<ROWS, DK, NT>(Ks + w * EK, k16 + ((size_t)bg * s.T + c0 + w * ROWS) * DK);
        P::template copy<ROWS, DV, NT>(Vs + w * EV, v16 + ((size_t)bg * s.T + c0 + w * ROWS) * DV);
    }
    int per_head = (s.T - c0 + BQ - 1) / BQ, n = group * per_head;
    load_query_tile<P, DK, DV, BQ, NT>(Qs, dOs, Ls, Ds, s, b, hk * group, c0, q16, do16, lse, Drow);
    cp_async_commit();
    int key0 = c0 + 16 * warp;
    float dk_acc[DK / 8][4] = {}, dv_acc[DV / 8][4] = {};
    for (int i = 0; i < n; i++) {
        int cur = i & 1, q0 = c0 + (i % per_head) * BQ;
        cp_async_wait<0>();
        P::landed();
        __syncthreads();
        if (i + 1 < n) {
            load_query_tile<P, DK, DV, BQ, NT>(Qs + (cur ^ 1) * EQ, dOs + (cur ^ 1) * EO, Ls + (cur ^ 1) * BQ,
                                           Ds + (cur ^ 1) * BQ, s, b, hk * group + (i + 1) / per_head,
                                           c0 + ((i + 1) % per_head) * BQ, q16, do16, lse, Drow);
            cp_async_commit();
        }
        // else every query of the tile is before this warp's keys (a warpgroup's, with wgmma)
        if (q0 + BQ - 1 >= (P::warps_skip ? key0 : c0 + wg * ROWS)) {
            const bf16 *Qt = Qs + cur * EQ, *dOt = dOs + cur * EO;
            float p[BQ / 8][4], ds[BQ / 8][4];
            // S^T = K Q^T, dP^T = V dO^T
            P::template scores_pair<DK, DV, BQ>(p, Ks + wg * EK, Qt, ds, Vs + wg * EV, dOt);
            probabilities<BQ>(p, ds, key0, q0, false, nullptr, nullptr, Ls + cur * BQ, Ds + cur * BQ, lane);
            P::template accumulate_pair<BQ, DV, DK>(dv_acc, p, dOt, dk_acc, ds, Qt); // dV += P^T dO, dK += dS^T Q
        }
    }
    // the own columns (rotated only where nothing is shared: with a shared key, its columns are the
    // rotated ones), then each head's share of the shared columns, summed over the heads after the
    // kernel (rotating back is linear: each head's share is turned back before the sum)
    int own = s.Dk - s.kshare;
    float *dk_rows = dk + (size_t)b * s.T * s.ks + (size_t)hk * s.kh;
    if (s.rope_cos && !s.kshare)
        store_rows_unrotated<DK, DK>(dk_rows, s.ks, dk_acc, key0, s.T, 1.0f / LOG2E, s.rope_cos, s.rope_sin, lane, 0);
    else store_rows<DK>(dk_rows, s.ks, dk_acc, key0, s.T, own, 1.0f / LOG2E, 1.0f / LOG2E, lane);
    if (s.kshare) {
        float *heads = dk_heads + ((size_t)b * s.T * s.Hkv + hk) * s.kshare;
        long heads_stride = (long)s.Hkv * s.kshare;
        if (s.rope_cos)
            store_rows_part_unrotated<DK>(heads, heads_stride, dk_acc, key0, s.T, 1.0f / LOG2E, s, lane, own);
        else store_rows<DK>(heads, heads_stride, dk_acc, key0, s.T, s.Dk, 1.0f / LOG2E, 1.0f / LOG2E, lane, own);
    }
    store_rows<DV>(dv + (size_t)b * s.T * s.vs + (size_t)hk * s.vh, s.vs, dv_acc, key0, s.T, s.Dv, 1.0f, 1.0f, lane);
}

// ---- launches, one instantiation per padded (DK, DV) ----

// the packed operands: q, k, v in `saved` (made by the forward, read again by the backward, so
// that the caller need not keep the fp32 q, k and v), dO in the backward's workspace, and after it
// (keys with shared columns) every kv head's gradient of those columns, [B T, Hkv, kshare]
struct Packed {
    bf16 *q, *k, *v, *dout;
    float *dk_heads;
};
size_t dout_bytes(const AttnDims &s) {
    return (sizeof(bf16) * packed_elems(s.B, s.H, s.T, kernel_widths(s).dv) + 15) / 16 * 16;
}
Packed packed_in(const AttnDims &s, const void *saved, void *work) {
    Widths w = kernel_widths(s);
    Packed p;
    p.q = (bf16 *)saved;
    p.k = p.q + packed_elems(s.B, s.H, s.T, w.dk);
    p.v = p.k + packed_elems(s.B, s.Hkv, s.T, w.dk);
    p.dout = (bf16 *)work;
    p.dk_heads = work ? (float *)((char *)work + dout_bytes(s)) : nullptr;
    return p;
}

// Warpgroups a wgmma kernel's block takes (64 rows each, sharing the tiles of the other side).
// These kernels are latency-bound: what counts is the warps an SM holds. At heads of 128 one
// block fits an SM at any count (registers or shared memory), so more warpgroups are more warps:
// on an H200 at (4, 4096, 16, 128) (ncu, 2026-12-02) the forward took 1.34 / 1.23 / 1.04 ms at
// 1 / 2 / 3 warpgroups, dQ 1.78 / 1.78 / 1.50, dK and dV 2.17 / 2.11 (3 do not fit), and
// fwd+bwd 4.20 to 3.82 ms. Narrower heads fit several blocks an SM at one warpgroup, and there
// more lost: dQ at heads of 64 went from 3 blocks of 4 warps to one of 8 (0.30 to 0.35 ms), and
// in training (heads of 64, and MLA's q.k heads of 96) every variant tried ran 0.8% to 2.4%
// slower than one warpgroup with the one-tile-at-a-time forward, including the overlapped
// forward at one warpgroup, which ncu timed no slower alone: so one warpgroup, and
// flash_forward_kernel, for every width but 128. (Those variants' backward also computed the
// warpgroup index at run time, which alone cost MLA 3% (f2fab47). With it folded, two warpgroups
// for the forward alone (FLASH_FWD_NARROW_WARPGROUPS=2), 2026-12-02: forward 0.23 to 0.22 ms at
// (8, 2048, 8, 64), softmax 431,763 / 431,393 against 428,215 / 430,864 tok/s, MLA 366,665 /
// 368,389 against 368,616 / 366,981: level. And for the backward at MLA's q.k heads of 96, where
// dK/dV's registers allow two blocks of one warpgroup: two warpgroups for dK/dV gain 0.5%, for
// dQ they lose 1.7%: FLASH_DKV_MID_WARPGROUPS above.)
enum class AttnKernel { forward, dq, dkv };
template <int DK, int DV> constexpr int block_warpgroups(AttnKernel k) {
    if (DK == 128 && DV == 128) return k == AttnKernel::dkv ? 2 : 3;
    if (k == AttnKernel::forward) return FLASH_FWD_NARROW_WARPGROUPS;
    if (DK > 64 && DK < 128) return k == AttnKernel::dkv ? FLASH_DKV_MID_WARPGROUPS : FLASH_DQ_MID_WARPGROUPS;
    return 1;
}

// the keys a tile of flash_forward_kernel
template <class P, int DK, int DV> constexpr int forward_key_tile() {
    return !P::warps_skip && DK <= 64 && DV <= 64 ? FLASH_FWD_KEY_TILE : ROWS;
}

// one warpgroup or mma.sync: a tile at a time (flash_forward_kernel); several: overlapped
template <class P, int DK, int DV> void forward(const AttnDims &s, float *o, float *lse, const Packed &p) {
    constexpr int wgs = P::warps_skip ? 1 : block_warpgroups<DK, DV>(AttnKernel::forward), rows = ROWS * wgs;
    constexpr int keys = wgs > 1 ? ROWS : forward_key_tile<P, DK, DV>();
    static_assert(rows <= GUARD && keys <= GUARD, "a block reads at most GUARD rows past T");
    size_t smem = sizeof(bf16) * (wgs * P::template elems<ROWS, DK>() +
                                  2 * (P::template elems<keys, DK>() + P::template elems<keys, DV>()));
    auto launch = [&](auto kernel) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        kernel<<<dim3((s.T + rows - 1) / rows, s.B * s.H), THREADS * wgs, smem>>>(s, o, lse, p.q, p.k, p.v);
        CUDA_LAUNCHED();
    };
    if constexpr (wgs > 1) launch(flash_forward_overlap_kernel<DK, DV, wgs>);
    else launch(flash_forward_kernel<P, DK, DV, keys>);
}

template <class P, int DK, int DV>
void backward(const AttnDims &s, float *dq, float *dk, float *dv, const float *lse, const float *D, const Packed &p) {
    constexpr int B2 = P::template other_tile<DK, DV>();
    constexpr int wq = P::warps_skip ? 1 : block_warpgroups<DK, DV>(AttnKernel::dq),
                  wkv = P::warps_skip ? 1 : block_warpgroups<DK, DV>(AttnKernel::dkv);
    static_assert(ROWS * wq <= GUARD && ROWS * wkv <= GUARD, "a block reads at most GUARD rows past T");
    size_t smem_q = sizeof(bf16) * (wq * (P::template elems<ROWS, DK>() + P::template elems<ROWS, DV>()) +
                                    2 * (P::template elems<B2, DK>() + P::template elems<B2, DV>()));
    auto dq_kernel = flash_dq_kernel<P, DK, DV, B2, wq>;
    CUDA_CHECK(cudaFuncSetAttribute(dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    dq_kernel<<<dim3((s.T + ROWS * wq - 1) / (ROWS * wq), s.B * s.H), THREADS * wq, smem_q>>>(s, dq, p.q, p.k, p.v,
                                                                                             p.dout, lse, D);
    CUDA_LAUNCHED();
    size_t smem_kv = sizeof(bf16) * (wkv * (P::template elems<ROWS, DK>() + P::template elems<ROWS, DV>()) +
                                     2 * (P::template elems<B2, DK>() + P::template elems<B2, DV>())) +
                     sizeof(float) * 4 * B2;
    auto dkv_kernel = flash_dkv_kernel<P, DK, DV, B2, wkv>;
    CUDA_CHECK(cudaFuncSetAttribute(dkv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    dkv_kernel<<<dim3((s.T + ROWS * wkv - 1) / (ROWS * wkv), s.B * s.Hkv), THREADS * wkv, smem_kv>>>(
        s, dk, p.dk_heads, dv, p.q, p.k, p.v, p.dout, lse, D);
    CUDA_LAUNCHED();
}

} // namespace

bool flash_mma_supports(const AttnDims &s) { return s.Dk <= 128 && s.Dv <= 128; }

bool flash_mma_rotates(const AttnDims &s) {
    return flash_mma_supports(s) && kernel_widths(s).dk == s.Dk &&
           (s.rot == s.Dk || ((s.rot == 32 || s.rot == 64) && s.rot < s.Dk));
}

namespace {
__global__ void wgmma_built_kernel(int *built) { *built = WGMMA_BUILT; }
} // namespace

bool flash_mma_wgmma_built(void) {
    int *d, built = 0;
    CUDA_CHECK(cudaMalloc(&d, sizeof(int)));
    wgmma_built_kernel<<<1, 1>>>(d);
    CUDA_LAUNCHED();
    CUDA_CHECK(cudaMemcpy(&built, d, sizeof(int), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(d));
    return built != 0;
}

size_t flash_mma_saved(const AttnDims &s) {
    Widths w = kernel_widths(s);
    size_t elems =
        packed_elems(s.B, s.H, s.T, w.dk) + packed_elems(s.B, s.Hkv, s.T, w.dk) + packed_elems(s.B, s.Hkv, s.T, w.dv);
    return sizeof(bf16) * elems;
}

size_t flash_mma_workspace(const AttnDims &s) {
    return dout_bytes(s) + sizeof(float) * (size_t)s.B * s.T * s.Hkv * s.kshare;
}

// dispatch on the kernels' widths (kernel_widths): 32, 64, 96 or 128 each
#define FLASH_DISPATCH(CALL)                                                                                         \
    switch (kernel_widths(s).dk * 1000 + kernel_widths(s).dv) {                                                      \
    case 32032: CALL(32, 32); break;                                                                                 \
    case 64064: CALL(64, 64); break;                                                                                 \
    case 96064: CALL(96, 64); break;                                                                                 \
    case 128064: CALL(128, 64); break;                                                                               \
    case 96096: CALL(96, 96); break;                                                                                 \
    case 64032: CALL(64, 32); break;                                                                                 \
    case 32064: CALL(32, 64); break;                                                                                 \
    default: CALL(128, 128); break;                                                                                  \
    }

// q (times scale log2 e: scores in base 2), k and v
void flash_mma_forward(const AttnDims &s, float *o, float *lse, const float *q, const float *k, const float *k_shared,
                       const float *v, void *saved) {
    Packed p = packed_in(s, saved, nullptr);
    Widths w = kernel_widths(s);
    pack_heads(p.q, heads_side_by_side(q, s.qs, s.Dk, s.rope_cos, s.rope_sin, s.rot), s.B, s.T, s.H, s.Dk, w.dk,
               s.scale * LOG2E);
    pack_heads(p.k, PackSource{k, s.ks, s.kh, s.Dk - s.kshare, k_shared, s.kss, s.rope_cos, s.rope_sin, s.rot}, s.B,
               s.T, s.Hkv, s.Dk, w.dk, 1.0f);
    pack_heads(p.v, PackSource{v, s.vs, s.vh, s.Dv, nullptr, 0, nullptr, nullptr, 0}, s.B, s.T, s.Hkv, s.Dv, w.dv,
               1.0f);
#define CALL(A, B) cuda_wgmma() ? forward<GroupMma, A, B>(s, o, lse, p) : forward<WarpMma, A, B>(s, o, lse, p)
    FLASH_DISPATCH(CALL)
#undef CALL
}

bool flash_mma_rowdot_in_pack(const AttnDims &s) {
    int dv = kernel_widths(s).dv;
    return dv == 32 || dv == 64 || dv == 128;
}

void flash_mma_backward(const AttnDims &s, float *dq, float *dk, float *dk_shared, float *dv, const float *dout,
                        const float *o, const float *lse, float *D, const void *saved, void *work) {
    Packed p = packed_in(s, saved, work);
    int wv = kernel_widths(s).dv;
    if (flash_mma_rowdot_in_pack(s)) {
        size_t threads = ((size_t)s.B * s.H * s.T + GUARD) * (wv / 8);
#define PACK(L)                                                                                                      \
    pack_dout_rowdot_kernel<L><<<grid_for(threads, 256), 256>>>(p.dout, D, dout, o, s.B, s.T, s.H, s.Dv, s.os)
        if (wv == 32) PACK(4);
        else if (wv == 64) PACK(8);
        else if (wv == 128) PACK(16);
        else die("internal: dO packed with its row sums at a width of %d", wv);
#undef PACK
        CUDA_LAUNCHED();
    } else {
        pack_heads(p.dout, heads_side_by_side(dout, s.os, s.Dv), s.B, s.T, s.H, s.Dv, wv, 1.0f);
    }
#define CALL(A, B)                                                                                                   \
    cuda_wgmma() ? backward<GroupMma, A, B>(s, dq, dk, dv, lse, D, p) : backward<WarpMma, A, B>(s, dq, dk, dv, lse, D, p)
    FLASH_DISPATCH(CALL)
#undef CALL
    if (s.kshare)
        attn_sum_shared_grads(cuda_copy_heads, dk_shared, s.kss, p.dk_heads, (long)s.Hkv * s.kshare, s.kshare,
                              s.B * s.T, s.Hkv, s.kshare);
}
