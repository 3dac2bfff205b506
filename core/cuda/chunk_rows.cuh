// A chunk's rows where the caller keeps them ([B, T, H, X], chunk z = (b H + h) n_chunks + c, as
// in chunk_dims.cuh): for kernels that read or write a chunk's matrix in place instead of through a
// chunk-layout copy. Rows past T do not exist there: they read as zeros and are not written.
#pragma once
#include "chunk_dims.cuh"
#include "mma.cuh"

// chunk z's first row in a caller's [B, T, H, X] tensor (an offset in floats), the rows' stride
// (H X), and how many of the chunk's C rows lie before T
struct CallerRows {
    size_t offset, ld;
    int n;
};
__device__ __forceinline__ CallerRows caller_rows(const ChunkDims &d, size_t z, int X) {
    const size_t bh = z / d.nc;
    const int t0 = (int)(z % d.nc) * d.C, h = (int)(bh % d.H), b = (int)(bh / d.H);
    return CallerRows{(((size_t)b * d.T + t0) * d.H + h) * X, (size_t)d.H * X, min(d.C, d.T - t0)};
}

// columns c0 .. c0 + cols - 1 of chunk z's C rows of a caller's tensor of X columns into a shared
// tile of row stride ld, zeros past T, 16 bytes a cp.async (X, c0 and cols multiples of 4, src
// 16-byte aligned), by the block's THREADS threads; committed by the caller
template <int THREADS>
__device__ __forceinline__ void copy_caller_columns_async(float *tile, int ld, const float *src, const ChunkDims &d,
                                                          size_t z, int X, int c0, int cols) {
    const CallerRows rows = caller_rows(d, z, X);
    const int per_row = cols / 4;
    for (int i = threadIdx.x; i < d.C * per_row; i += THREADS) {
        const int r = i / per_row, c = i % per_row * 4;
        if (r < rows.n) cp_async16(tile + r * ld + c, src + rows.offset + r * rows.ld + c0 + c);
        else *reinterpret_cast<float4 *>(tile + r * ld + c) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

// the same, all X columns
template <int THREADS>
__device__ __forceinline__ void copy_caller_rows_async(float *tile, int ld, const float *src, const ChunkDims &d,
                                                       size_t z, int X) {
    copy_caller_columns_async<THREADS>(tile, ld, src, d, z, X, 0, X);
}

// chunk z's C rows of a caller's fp32 tensor of X columns into a shared bf16 tile of row stride ld
// (rounded to nearest), zeros past T: 16 bytes a load and 8 a store (X a multiple of 4, src
// 16-byte aligned, ld a multiple of 4), by the block's THREADS threads
template <int THREADS>
__device__ __forceinline__ void load_caller_rows_bf16(bf16 *tile, int ld, const float *src, const ChunkDims &d,
                                                      size_t z, int X) {
    const CallerRows rows = caller_rows(d, z, X);
    const int per_row = X / 4;
#pragma unroll 4
    for (int i = threadIdx.x; i < d.C * per_row; i += THREADS) {
        const int r = i / per_row, c = i % per_row * 4;
        const float4 f = r < rows.n ? *reinterpret_cast<const float4 *>(src + rows.offset + r * rows.ld + c)
                                    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        *reinterpret_cast<uint2 *>(tile + r * ld + c) = make_uint2(pack_bf16(f.x, f.y), pack_bf16(f.z, f.w));
    }
}
