// Hopper's warpgroup matrix multiply (wgmma, sm_90a): a warpgroup of 4 warps computes a 64 x N
// product, 16 rows a warp, with B (and A, unless it is given as registers) read by the tensor
// cores straight from shared memory. Against mma.sync, where each warp loads every B fragment
// into its registers, this reads a B tile once per warpgroup instead of once per warp, and frees
// the registers the fragments took.
//
// The accumulator fragment of warp w is mma.sync's C fragment of rows 16 w .. 16 w + 15
// (mma.cuh: d[n][0..1] = (g, 8 n + 2t..), d[n][2..3] = (g + 8, ..)), and the A registers of the
// register-sourced form are mma.sync's A fragment of those rows, so a product's result, rounded
// to bf16, feeds the next product as before.
//
// Shared tiles are swizzled as the hardware reads them: a tile of COLS columns is cut into
// atoms of 8 rows x W bytes (W = 128, or 64 where 2 COLS is not a multiple of 128: heads of 32 and
// 96), atom columns of all the tile's rows one after another; within an atom, the 16-byte chunk j
// of row r lies at chunk j ^ (r % 8) (W = 128) or j ^ ((r / 2) % 4) (W = 64). One tile serves as
// either kind of operand: K-major (its columns are K, as K in S = Q K^T) or MN-major (its rows are
// K, as V in O = P V, B transposed). Tiles start 1024-byte aligned. Without the swizzle (8 x
// 16-byte core matrices, a row's chunks 128 bytes apart) a warp's tile copy read 8 rows' 64 bytes
// instead of 2 rows whole: the attention forward ran at 78% of the L2's throughput (ncu) and took
// 2.00 ms at (4, 4096, 16, 128) on an H200, against 1.39 for mma.sync and 1.20 swizzled.
#pragma once
#include <stdint.h>

#include "mma.cuh"

// The wgmma forms exist only in sm_90a code (Makefile's CUDA_ARCH), which runs on compute
// capability 9.0 alone; elsewhere they trap, and the callers ask first (flash_mma_wgmma_built).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_BUILT 1
#else
#define WGMMA_BUILT 0
#endif

// The 64-bit descriptor of a tile at shared address `tile`: leading and stride byte offsets,
// swizzle mode (1: 128-byte, 2: 64-byte), base offset 0 (tiles are 1024-byte aligned)
__device__ __forceinline__ uint64_t wg_desc(const void *tile, int leading, int stride, int mode) {
    uint64_t a = (unsigned)__cvta_generic_to_shared(tile);
    return ((a & 0x3FFFF) >> 4) | ((uint64_t)(leading >> 4) << 16) | ((uint64_t)(stride >> 4) << 32) |
           ((uint64_t)mode << 62);
}

// Ordering: a thread's shared-memory writes become visible to wgmma's reads after
// fence_async_shared and a barrier, its cp.async copies once completed (cp.async.wait_group)
// before that fence; wg_fence before the first wgmma of a batch (its
// accumulators and A registers were last written by ordinary instructions); wg_commit closes a
// batch and wg_wait<N> waits until at most N batches are in flight.
__device__ __forceinline__ void fence_async_shared() {
#if WGMMA_BUILT
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_fence() {
#if WGMMA_BUILT
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if WGMMA_BUILT
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void wg_wait() {
#if WGMMA_BUILT
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// keeps the compiler from moving accumulator reads or writes across the asynchronous products
template <int N> __device__ __forceinline__ void wg_hold(float (&d)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) asm volatile("" : "+f"(d[n][i])::"memory");
}

// ... and A registers of a register-sourced product, read by wgmma until its wait
template <int N> __device__ __forceinline__ void wg_hold_registers(unsigned (&a)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) asm volatile("" : "+r"(a[n][i])::"memory");
}

// ---- swizzled tiles ----

template <int COLS> struct Swizzle {
    static constexpr int W = (2 * COLS) % 128 == 0 ? 128 : 64; // bytes of an atom's row
    static constexpr int E = W / 2;                              // ... in elements
    static constexpr int MODE = W == 128 ? 1 : 2;                // the descriptor's swizzle mode
};

// byte offset of element (r, c) in a swizzled tile of ROWS x COLS
template <int ROWS, int COLS> __host__ __device__ constexpr int swizzled_offset(int r, int c) {
    static_assert(ROWS % 8 == 0 && COLS % 32 == 0, "swizzled tiles: whole atoms of 8 rows and 64 bytes");
    constexpr int W = Swizzle<COLS>::W, E = Swizzle<COLS>::E;
    int a = (c / E) * ROWS * W + r * W + (c % E) * 2;
    return a ^ (((a >> 7) & (W / 16 - 1)) << 4);
}

// descriptors of the k16 slice `kk` of a ROWS x COLS tile used K-major (its columns are K: the
// slice is 32 bytes into an atom column, the next 8 rows 8 W bytes on) or MN-major (its rows are
// K: the slice is rows 16 kk.., the next atom column of N ROWS W bytes on, the next 8 rows 8 W)
template <int ROWS, int COLS> __device__ __forceinline__ uint64_t wg_k_major(const bf16 *tile, int kk) {
    static_assert(ROWS % 8 == 0 && COLS % 32 == 0, "swizzled tiles: whole atoms of 8 rows and 64 bytes");
    constexpr int W = Swizzle<COLS>::W, E = Swizzle<COLS>::E;
    const char *p = reinterpret_cast<const char *>(tile) + (16 * kk / E) * ROWS * W + (16 * kk % E) * 2;
    return wg_desc(p, 16, 8 * W, Swizzle<COLS>::MODE);
}
template <int ROWS, int COLS> __device__ __forceinline__ uint64_t wg_mn_major(const bf16 *tile, int kk) {
    static_assert(ROWS % 16 == 0 && COLS % 32 == 0, "swizzled tiles: whole k16 slices of 64-byte atoms");
    constexpr int W = Swizzle<COLS>::W;
    return wg_desc(reinterpret_cast<const char *>(tile) + kk * 16 * W, ROWS * W, 8 * W, Swizzle<COLS>::MODE);
}

// A ROWS x COLS bf16 tile from packed rows of COLS elements (16-byte aligned) into the swizzled
// layout, issued by the block's THREADS threads: consecutive threads read consecutive 16 bytes of
// a row and write them to its atom rows, whole 128-byte rows (no bank conflicts) where COLS is 32,
// 64 or 128; at 96, a row's three 64-byte atom rows lie ROWS x 64 bytes apart, and three of a
// warp's four 8-thread phases write two of them to the same banks. Committed and waited for by
// the caller.
template <int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void copy_tile_swizzled(bf16 *tile, const bf16 *src) {
    constexpr int G = COLS / 8, N = ROWS * G;
#pragma unroll
    for (int i = threadIdx.x; i < N; i += THREADS) {
        int r = i / G, c = (i % G) * 8;
        cp_async16(reinterpret_cast<char *>(tile) + swizzled_offset<ROWS, COLS>(r, c), src + (size_t)r * COLS + c);
    }
}

// d (+)= A B for a 64 x N product of one k16 slice: A and B given by descriptors (wgmma_ss) or A
// as this warp's mma.sync A fragment (wgmma_rs); accumulate = 0 overwrites d. TRANS_B = 1 for an
// MN-major B. PTX takes the accumulators one register at a time: WG_REGS_R lists the asm operands
// %0 .. %(R - 1) and WG_ACCS_R the R accumulators (R = N / 2), the operands after them numbered
// from R on.
template <int N> struct wgmma_n {};

#define WG_ACC4(n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define WG_ACCS_16 WG_ACC4(0), WG_ACC4(1), WG_ACC4(2), WG_ACC4(3)
#define WG_ACCS_32 WG_ACCS_16, WG_ACC4(4), WG_ACC4(5), WG_ACC4(6), WG_ACC4(7)
#define WG_ACCS_48 WG_ACCS_32, WG_ACC4(8), WG_ACC4(9), WG_ACC4(10), WG_ACC4(11)
#define WG_ACCS_64 WG_ACCS_48, WG_ACC4(12), WG_ACC4(13), WG_ACC4(14), WG_ACC4(15)
#define WG_REGS_16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define WG_REGS_32 WG_REGS_16 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_REGS_48                                                                                                 \
    WG_REGS_32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define WG_REGS_64                                                                                                 \
    WG_REGS_48 ", %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

#if WGMMA_BUILT
#define WG_ASM(...) asm volatile(__VA_ARGS__)
#else
#define WG_ASM(...) __trap() /* not sm_90a code: the callers run only where it is */
#endif

// the two forms for N (R = N / 2 accumulators); A, B, S, T: the operand numbers after them
#define WGMMA_FORMS(N, R, A, B, S, T, RB, RS, RT)                                                                  \
    template <int TRANS_B>                                                                                           \
    __device__ __forceinline__ void wgmma_ss(float(&d)[N / 8][4], uint64_t a, uint64_t b, int accumulate,          \
                                             wgmma_n<N>) {                                                         \
        WG_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %" #S ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N            \
               "k16.f32.bf16.bf16 {" WG_REGS_##R "}, %" #A ", %" #B ", p, 1, 1, 0, %" #T ";\n}\n"                 \
               : WG_ACCS_##R                                                                                        \
               : "l"(a), "l"(b), "r"(accumulate), "n"(TRANS_B));                                                   \
    }                                                                                                                \
    template <int TRANS_B>                                                                                           \
    __device__ __forceinline__ void wgmma_rs(float(&d)[N / 8][4], const unsigned(&a)[4], uint64_t b,              \
                                             int accumulate, wgmma_n<N>) {                                         \
        WG_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %" #RS ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N           \
               "k16.f32.bf16.bf16 {" WG_REGS_##R "}, {%" #A ", %" #B ", %" #S ", %" #T "}, %" #RB              \
               ", p, 1, 1, %" #RT ";\n}\n"                                                                      \
               : WG_ACCS_##R                                                                                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TRANS_B));            \
    }

WGMMA_FORMS(32, 16, 16, 17, 18, 19, 20, 21, 22)
WGMMA_FORMS(64, 32, 32, 33, 34, 35, 36, 37, 38)
WGMMA_FORMS(96, 48, 48, 49, 50, 51, 52, 53, 54)
WGMMA_FORMS(128, 64, 64, 65, 66, 67, 68, 69, 70)
