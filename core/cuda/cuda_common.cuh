// What every CUDA file of the GPU backend shares: error checks that die with the call and the
// place, launch sizes, warp and block reductions. One stream (the default) orders all the work.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>

extern "C" {
#include "core/backend.h"
#include "core/util.h"
}

#define CUDA_CHECK(call)                                                                                              \
    do {                                                                                                              \
        cudaError_t err_ = (call);                                                                                    \
        if (err_ != cudaSuccess) die("CUDA error at %s:%d in %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
    } while (0)

// After a launch: a bad configuration shows here, a fault at the next synchronizing call.
#define CUDA_LAUNCHED() CUDA_CHECK(cudaGetLastError())

static inline unsigned grid_for(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of up to 1024 threads (blockDim.x a multiple of 32); every thread gets it.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads(); // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float t = lane < warps ? partial[lane] : 0.0f;
    return warp_sum(t);
}

__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float t = lane < warps ? partial[lane] : -INFINITY;
    return warp_max(t);
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + __expf(-x)); }

// The GPU backend's operations, one group per .cu file (signatures as in core/backend.h).
extern "C" {
void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);
/* the same product for `count` matrices at fixed strides (chunkwise cores) */
void cuda_gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                       long long stride_a, const float *B, int ldb, long long stride_b, float beta, float *C, int ldc,
                       long long stride_c, int count);
}
