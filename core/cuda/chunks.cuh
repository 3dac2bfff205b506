// Chunk layout shared by the GPU's linear-time cores. Inputs in the public layout [B, T, H, X] are
// copied to [B, H, Tp, X] with Tp = n_chunks * C (zero rows past T, which leave every state
// unchanged), so that chunk z = (b H + h) n_chunks + c is the C x X matrix at z C X: one stride,
// so every chunk's products are one strided-batched matmul.
#pragma once
#include "cuda_common.cuh"

struct ChunkDims {
    int B, T, H, C, nc, Tp; /* Tp = nc * C */
    long Z;                 /* chunks in all: B * H * nc */
};

static inline ChunkDims chunk_dims(const ScanShape *s) {
    ChunkDims d;
    d.B = s->B;
    d.T = s->T;
    d.H = s->H;
    d.C = s->chunk;
    d.nc = (s->T + s->chunk - 1) / s->chunk;
    d.Tp = d.nc * d.C;
    d.Z = (long)s->B * s->H * d.nc;
    return d;
}

static __global__ void to_chunks_kernel(float *dst, const float *src, int B, int T, int H, int X, int Tp) {
    size_t n = (size_t)B * H * Tp * X;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int x = (int)(i % X);
        size_t rest = i / X;
        int t = (int)(rest % Tp);
        size_t bh = rest / Tp;
        int h = (int)(bh % H), b = (int)(bh / H);
        dst[i] = t < T ? src[(((size_t)b * T + t) * H + h) * X + x] : 0.0f;
    }
}

static __global__ void from_chunks_kernel(float *dst, const float *src, int B, int T, int H, int X, int Tp) {
    size_t n = (size_t)B * T * H * X;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int x = (int)(i % X);
        size_t rest = i / X;
        int h = (int)(rest % H);
        size_t bt = rest / H;
        int t = (int)(bt % T), b = (int)(bt / T);
        dst[i] = src[(((size_t)b * H + h) * Tp + t) * X + x];
    }
}

static inline void to_chunks(float *dst, const float *src, const ChunkDims &d, int X) {
    to_chunks_kernel<<<grid_for((size_t)d.B * d.H * d.Tp * X, 256), 256>>>(dst, src, d.B, d.T, d.H, X, d.Tp);
    CUDA_LAUNCHED();
}

static inline void from_chunks(float *dst, const float *src, const ChunkDims &d, int X) {
    from_chunks_kernel<<<grid_for((size_t)d.B * d.T * d.H * X, 256), 256>>>(dst, src, d.B, d.T, d.H, X, d.Tp);
    CUDA_LAUNCHED();
}

// Zeroes the strictly upper (or, with strict, the upper and the diagonal) part of Z C x C matrices.
static __global__ void mask_upper_kernel(float *P, long Z, int C, int strict) {
    size_t n = (size_t)Z * C * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(i % C), r = (int)((i / C) % C);
        if (j > r || (strict && j == r)) P[i] = 0.0f;
    }
}

static inline void mask_upper(float *P, const ChunkDims &d, bool strict) {
    mask_upper_kernel<<<grid_for((size_t)d.Z * d.C * d.C, 256), 256>>>(P, d.Z, d.C, strict);
    CUDA_LAUNCHED();
}

/* Bump allocation of a workspace: each piece rounded to 256 bytes. */
struct Carve {
    char *base;
    size_t used;
    float *take(size_t floats) {
        float *p = (float *)(base + used);
        used += (sizeof(float) * floats + 255) / 256 * 256;
        return p;
    }
};
