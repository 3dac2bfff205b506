// TF32 tensor-core products over fp32 tiles in shared memory (mma.sync m16n8k8, fp32
// accumulators): the chunkwise cores' products, whose operands stay fp32 in shared memory and are
// rounded to TF32 (10 mantissa bits) as their fragments load. Tiles are row-major fp32 with row
// strides chosen so that a fragment's 32 loads fall in 32 banks: 4 mod 32 words for a tile read
// along its rows (frag_a, frag_b_t), 8 mod 32 for one read down its columns (frag_a_t, frag_b).
#pragma once
#include <stddef.h>

#include "mma.cuh"

// The m16n8k8 TF32 mma with fp32 accumulators (lane = 4 g + t): A (16 x 8): a[0] = (g, t)
// a[1] = (g+8, t) a[2] = (g, t+4) a[3] = (g+8, t+4); B (8 x 8): b0 = (t, g) b1 = (t+4, g);
// C (16 x 8): c[0..1] = (g, 2t..2t+1) c[2..3] = (g+8, 2t..2t+1).
__device__ __forceinline__ void mma_tf32(float c[4], const unsigned a[4], const unsigned b0, const unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// x rounded to TF32 (10 mantissa bits, to nearest), as the mma's operand
__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// the fp32 operand's sign bit flipped: a product subtracted instead of added
__device__ __forceinline__ unsigned tf32_signed(float x, unsigned sign) { return to_tf32(x) ^ sign; }

// A fragment of the 16 x 8 block at (row0, k0) of a row-major tile
__device__ __forceinline__ void frag_a(unsigned a[4], const float *T, int ld, int row0, int k0, int lane, unsigned sign) {
    const float *p = T + (row0 + lane / 4) * ld + k0 + lane % 4;
    a[0] = tf32_signed(p[0], sign), a[1] = tf32_signed(p[8 * ld], sign);
    a[2] = tf32_signed(p[4], sign), a[3] = tf32_signed(p[8 * ld + 4], sign);
}

// A fragment of the same block of the transpose of a row-major tile T [k][m]
__device__ __forceinline__ void frag_a_t(unsigned a[4], const float *T, int ld, int row0, int k0, int lane,
                                         unsigned sign) {
    const float *p = T + (k0 + lane % 4) * ld + row0 + lane / 4;
    a[0] = tf32_signed(p[0], sign), a[1] = tf32_signed(p[8], sign);
    a[2] = tf32_signed(p[4 * ld], sign), a[3] = tf32_signed(p[4 * ld + 8], sign);
}

// B fragment of the 8 x 8 block at (k0, n0) of B = T^T, T a row-major tile [n][k]
__device__ __forceinline__ void frag_b_t(unsigned b[2], const float *T, int ld, int k0, int n0, int lane) {
    const float *p = T + (n0 + lane / 4) * ld + k0 + lane % 4;
    b[0] = to_tf32(p[0]), b[1] = to_tf32(p[4]);
}

// B fragment of the 8 x 8 block at (k0, n0) of a row-major tile [k][n]
__device__ __forceinline__ void frag_b(unsigned b[2], const float *T, int ld, int k0, int n0, int lane) {
    const float *p = T + (k0 + lane % 4) * ld + n0 + lane / 4;
    b[0] = to_tf32(p[0]), b[1] = to_tf32(p[4 * ld]);
}

// A warp's accumulator tile c (16 rows from row0, N blocks of 8 columns from col0) from, or to,
// fp32 rows at stride ld: lane 4 g + t holds rows g and g + 8, columns 2 t and 2 t + 1 of a block
template <int N> __device__ __forceinline__ void load_acc(float c[N][4], const float *src, size_t ld, int row0, int col0,
                                                          int lane) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float2 f = *reinterpret_cast<const float2 *>(src + (row0 + lane / 4 + 8 * h) * ld + col0 + 8 * n + 2 * (lane % 4));
            c[n][2 * h] = f.x, c[n][2 * h + 1] = f.y;
        }
}
template <int N> __device__ __forceinline__ void store_acc(float *dst, size_t ld, const float c[N][4], int row0, int col0,
                                                           int lane) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int h = 0; h < 2; h++)
            *reinterpret_cast<float2 *>(dst + (row0 + lane / 4 + 8 * h) * ld + col0 + 8 * n + 2 * (lane % 4)) =
                make_float2(c[n][2 * h], c[n][2 * h + 1]);
}

// c += op(A) op(B) over kdim: op(A) the 16 rows from row0 of a row-major tile A, or with A_T of
// the transpose of a row-major A [k][m]; op(B) the N blocks of 8 columns from col0 of a row-major
// [k][n] tile B, or with B_T of the transpose of a row-major B [n][k]; sign flips op(A)'s sign
// (a product subtracted)
template <int N, bool A_T, bool B_T = false>
__device__ __forceinline__ void accumulate(float c[N][4], const float *A, int lda, int row0, const float *B, int ldb,
                                           int col0, int kdim, int lane, unsigned sign) {
#pragma unroll 4
    for (int k0 = 0; k0 < kdim; k0 += 8) {
        unsigned af[4];
        if (A_T) frag_a_t(af, A, lda, row0, k0, lane, sign);
        else frag_a(af, A, lda, row0, k0, lane, sign);
#pragma unroll
        for (int n = 0; n < N; n++) {
            unsigned bf[2];
            if (B_T) frag_b_t(bf, B, ldb, k0, col0 + 8 * n, lane);
            else frag_b(bf, B, ldb, k0, col0 + 8 * n, lane);
            mma_tf32(c[n], af, bf[0], bf[1]);
        }
    }
}

// rows x cols floats (cols a multiple of 4, 16-byte aligned rows) at src (row stride src_ld) into
// a shared tile of row stride ld, 16 bytes a cp.async, by the block's THREADS threads; committed
// by the caller
template <int THREADS>
__device__ __forceinline__ void copy_rows_async(float *tile, int ld, const float *src, size_t src_ld, int rows, int cols) {
    const int per_row = cols / 4;
    for (int i = threadIdx.x; i < rows * per_row; i += THREADS) {
        int r = i / per_row, c = (i % per_row) * 4;
        cp_async16(tile + r * ld + c, src + r * src_ld + c);
    }
}

// a shared rows x cols tile (row stride ld) to rows of dst at stride dst_ld, 16 bytes a store, by
// the block's THREADS threads
template <int THREADS>
__device__ __forceinline__ void store_tile_rows(float *dst, size_t dst_ld, const float *tile, int ld, int rows, int cols) {
    const int per_row = cols / 4;
    for (int i = threadIdx.x; i < rows * per_row; i += THREADS) {
        int r = i / per_row, c = (i % per_row) * 4;
        *reinterpret_cast<float4 *>(dst + r * dst_ld + c) = *reinterpret_cast<const float4 *>(tile + r * ld + c);
    }
}
