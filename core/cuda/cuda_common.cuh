// What every CUDA file of the GPU backend shares: error checks that die with the call and the
// place, launch sizes, warp and block reductions. One stream orders all the work: the default
// stream, made per-thread by nvcc's --default-stream per-thread (the Makefile), which, unlike the
// legacy one, can be recorded into a CUDA graph.
#pragma once
#include <initializer_list>
#ifndef CUDA_API_PER_THREAD_DEFAULT_STREAM
#error "build the GPU backend with nvcc --default-stream per-thread (the Makefile's NVCCFLAGS): decode steps are recorded on that stream"
#endif
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

// v summed over the G lanes of a group (lanes that differ only in their low log2 G bits, all in
// mask), scattered: the lane of index i in its group keeps in v[0 .. N / G) the sums of
// v[N / G * i ...]. A butterfly: each step sends half of what is left and adds the other lane's
// half, in a fixed order (the same bits every run).
template <int N, int G> __device__ __forceinline__ void group_sum_scatter(float (&v)[N], int i, unsigned mask) {
    if constexpr (G > 1) {
        constexpr int H = N / 2, S = G / 2;
        const bool upper = i & S;
#pragma unroll
        for (int e = 0; e < H; e++) {
            const float send = upper ? v[e] : v[e + H], keep = upper ? v[e + H] : v[e];
            v[e] = keep + __shfl_xor_sync(mask, send, S);
        }
        group_sum_scatter<H, S>(reinterpret_cast<float(&)[H]>(v), i, mask);
    }
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// A grid-stride loop over n elements, i of them this thread's
#define EACH(i, n) for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// One warp per row (launch 32 threads a row): a thread per row would read its row's floats while its neighbours
// read theirs a row apart (uncoalesced); a warp reads one row's floats side by side.
#define WARP_ROW(i, n)                                                                                               \
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                                                  \
    const int lane = threadIdx.x & 31;                                                                               \
    if (i >= (size_t)(n)) return

// Adds x summed over all the block's threads to *acc (in shared memory): a warp reduction, then
// one atomic per warp. Every thread of every warp must call it (pass 0 for nothing); an atomic
// per thread on one address would serialize them all.
__device__ __forceinline__ void add_over_block(float *acc, float x) {
    x = warp_sum(x);
    if ((threadIdx.x & 31) == 0) atomicAdd(acc, x);
}

// Column sums over many rows (parameter gradients): a block of 32 x COL_SUM_Y threads takes 32
// columns of a band of COL_SUM_BAND rows, each thread every COL_SUM_Y-th row of the band; the
// band's sums are added with one atomic per column. An atomic per row on one address would
// serialize thousands of additions; a thread per column alone would leave most of the GPU idle.
enum { COL_SUM_Y = 8, COL_SUM_BAND = 256 };
static inline dim3 col_sum_grid(int rows, int cols) {
    return dim3((unsigned)((cols + 31) / 32), (unsigned)((rows + COL_SUM_BAND - 1) / COL_SUM_BAND));
}
static inline dim3 col_sum_block(void) { return dim3(32, COL_SUM_Y); }
#define COL_SUM_ROWS(r, rows)                                                                                         \
    for (int r = blockIdx.y * COL_SUM_BAND + threadIdx.y, r##_end_ = min((int)(rows), (int)(blockIdx.y + 1) * COL_SUM_BAND); \
         r < r##_end_; r += COL_SUM_Y)
// the sum of v over the block's threadIdx.y, in the threads with threadIdx.y == 0
__device__ __forceinline__ float col_sum_reduce(float v) {
    __shared__ float part[COL_SUM_Y][33];
    __syncthreads(); // part may still be read by a previous call
    part[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.y == 0)
        for (int y = 1; y < COL_SUM_Y; y++) v += part[y][threadIdx.x];
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

// One channel's SwiGLU and its gradients, shared by every SwiGLU kernel (fp32, 4-wide, bf16) so
// they round alike.
__device__ __forceinline__ float swiglu_of(float g, float u) { return g * sigmoidf_(g) * u; }
__device__ __forceinline__ void swiglu_grad(float *dg, float *du, float g, float u, float dy) {
    float s = sigmoidf_(g);
    *du = dy * g * s;
    *dg = dy * u * s * (1.0f + g * (1.0f - s));
}

// ---- programmatic dependent launch (Hopper) ----
// A kernel launched with pdl_launch may be scheduled while the kernel before it in the stream is
// still running, and so must begin with pdl_begin: it lets the next kernel be scheduled, then
// waits until the one before has ended and its writes are visible (griddepcontrol). At a decode
// step of small kernels this hides each launch's latency behind the kernel before it. A kernel
// launched plainly (cuBLAS's, or ours) waits for the one before it as always; pdl_begin is a
// no-op there and before sm_90.
__device__ __forceinline__ void pdl_begin(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// true on sm_90 and later unless ATTNLAB_CUDA_PDL=0 (backend_cuda.cu)
bool cuda_pdl(void);
template <typename... Params, typename... Args>
static inline void pdl_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cudaStreamPerThread;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = cuda_pdl() ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...));
}

// false under ATTNLAB_CUDA_MATMUL=fp32: every product then runs in exact fp32
bool cuda_tensor_cores(void);
// true where the attention kernels loaded for this GPU are sm_90a code (flash_mma_wgmma_built),
// unless ATTNLAB_CUDA_WGMMA=0: kernels with a wgmma form then use it
bool cuda_wgmma(void);
// the GPU's multiprocessors, for kernels that size their grids to fill it
int cuda_sm_count(void);
// the GPU's shared memory: the most a block may ask for (opt-in), an SM's, and what the system
// keeps of it for each block (H100, H200: 227, 228 and 1 KiB; A100: 163, 164 and 1)
struct SmemLimits {
    size_t per_block, per_sm, reserved;
};
SmemLimits cuda_smem_limits(void);
// the blocks of `smem` dynamic shared-memory bytes that fit on an SM at once (0: not even one)
int cuda_blocks_per_sm(size_t smem);
// whether p can be read or written 16 bytes at a time (cp.async, float4)
__host__ __device__ inline bool aligned16(const void *p) { return (size_t)p % 16 == 0; }
inline bool all_aligned16(std::initializer_list<const void *> ps) {
    for (const void *p : ps)
        if (!aligned16(p)) return false;
    return true;
}
// lets a kernel ask for `bytes` of dynamic shared memory (past the default 48 KiB)
template <typename Kernel> inline void cuda_allow_smem(Kernel kernel, size_t bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// For an op whose work depends on a host value that can change between calls (a length read back,
// a buffer grown on demand): while a graph is being recorded it marks the recording unusable
// (graph_end then returns NULL and the caller runs the work as it is) and returns true, and the op
// must return without queueing anything (backend_cuda.cu).
bool cuda_capture_refuses(void);

// whether cuda_gemm converts the operands of an M x N x K product to bf16 (backend_cuda.cu)
extern "C" bool cuda_gemm_converts(int M, int N, int K);

// y = alpha x W^T + beta y for x [M, K] of at most GEMV_MAX_ROWS rows, W [N, K]: one launch, warps
// on slices of each output column, fp32 (gemv.cu; cuda_gemm sends such products there)
enum { GEMV_MAX_ROWS = 8 };
void cuda_gemv(int M, int N, int K, float alpha, const float *x, int lda, const float *w, int ldw, float beta, float *y,
               int ldy);

// rows x cols of a row-major fp32 matrix (leading dimension ld) into packed bf16 rows (backend_cuda.cu)
void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, int rows, int cols, long ld);
// An operand's bf16 rows for a product: the training step's copy (step_weights) or the held
// activation's (hold_operand) where the whole matrix (rows x cols, leading dimension ld) lies
// inside it, with that leading dimension; else rounded into space, packed (leading dimension
// cols) (backend_cuda.cu)
typedef struct {
    const __nv_bfloat16 *p;
    int ld;
} Bf16Operand;
Bf16Operand cuda_bf16_operand(const float *src, int rows, int cols, int ld, __nv_bfloat16 *space);
// hold_operand's copy of out [n] for the RMSNorm about to write exactly the held operand (it writes
// both), else NULL (backend_cuda.cu)
__nv_bfloat16 *cuda_held_target(const float *out, size_t n);
// whether [src, src + n) lies inside the held operand (hold_operand), whose copy products read (backend_cuda.cu)
bool cuda_held(const float *src, size_t n);
// n contiguous floats into bf16 (backend_cuda.cu)
void cuda_to_bf16_flat(__nv_bfloat16 *dst, const float *src, size_t n);
// x [N, in] rounded to bf16 once for several products x W^T (a linear_group's that take bf16
// operands: cuda_gemm_converts), into the operand space with room after it for the largest W
// [out, in] one of them rounds (backend_cuda.cu)
__nv_bfloat16 *cuda_bf16_input(const float *x, int N, int in, size_t room);
// y = x W^T + beta y for the rows cuda_bf16_input made last (ldy: y's leading dimension), W the
// step's copy or rounded after them: the product cuda_gemm makes of x and W alone (backend_cuda.cu)
void cuda_gemm_bf16_input(const __nv_bfloat16 *x16, int N, int out, int in, const float *W, float beta, float *y,
                          int ldy);
// the bf16 copy step_weights made of the n weights at w, where a training step runs and they lie
// inside it; else NULL (backend_cuda.cu)
const __nv_bfloat16 *cuda_step_copy(const float *w, size_t n);
// C = alpha op(A) op(B) + beta C on row-major bf16 operands (leading dimensions lda, ldb), fp32
// accumulation; C fp32, or bf16 with c_bf16 (backend_cuda.cu)
void cuda_gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                    const __nv_bfloat16 *B, int ldb, float beta, void *C, bool c_bf16, int ldc);
// C = alpha op(A) op(B) + beta C (fp32) for A already in bf16, B rounded as cuda_gemm rounds it: the
// step's copy or the held operand's where B lies in one, else into the operand space (backend_cuda.cu)
void cuda_gemm_bf16_a(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc);

