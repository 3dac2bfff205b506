// The GPU backend: device memory, cuBLAS for every matmul (bf16 tensor cores with fp32
// accumulation: fp32 data rounded to bf16 inside the product), and the vtable that points at
// the kernels of the other files. ATTNLAB_CUDA_MATMUL=fp32 makes the products exact fp32 (the
// parity tests use it to separate kernel bugs from bf16 rounding).
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory_ledger.h"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"

static cublasHandle_t cublas;
static cublasComputeType_t compute_type = CUBLAS_COMPUTE_32F_FAST_16BF;
static bool initialized;

#define CUBLAS_CHECK(call)                                                                                            \
    do {                                                                                                              \
        cublasStatus_t st_ = (call);                                                                                  \
        if (st_ != CUBLAS_STATUS_SUCCESS) die("cuBLAS error %d at %s:%d in %s", (int)st_, __FILE__, __LINE__, #call); \
    } while (0)

extern "C" bool backend_cuda_usable(char *why, size_t len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why) snprintf(why, len, "no usable GPU (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        return false;
    }
    return true;
}

static void init_cuda(void) {
    if (initialized) return;
    char why[256];
    if (!backend_cuda_usable(why, sizeof why)) die("device 'cuda': %s", why);
    CUBLAS_CHECK(cublasCreate(&cublas));
    const char *mode = getenv("ATTNLAB_CUDA_MATMUL");
    if (mode && strcmp(mode, "fp32") == 0) compute_type = CUBLAS_COMPUTE_32F;
    else if (mode && strcmp(mode, "bf16") != 0) die("ATTNLAB_CUDA_MATMUL: expected bf16 or fp32, got '%s'", mode);
    initialized = true;
}

bool cuda_tensor_cores(void) { return compute_type != CUBLAS_COMPUTE_32F; }

// ---- memory ----

static MemoryLedger gpu_memory;

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (!bytes) bytes = 256;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) die("out of GPU memory allocating %.1f MiB: %s", bytes / 1048576.0, cudaGetErrorString(e));
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    ledger_add(&gpu_memory, p, bytes);
    return p;
}

static void cuda_release(void *p) {
    ledger_remove(&gpu_memory, p);
    CUDA_CHECK(cudaFree(p));
}
static size_t cuda_peak_bytes(void) { return gpu_memory.peak; }
static void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cuda_download(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

// dense bf16 tensor-core peaks from the vendors' data sheets (the sparse figures are twice these)
static double cuda_peak_flops(char *what, size_t len) {
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    struct { const char *name; double tflops; } known[] = {
        {"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H100", 989.4}, {"H200", 989.4}, {"H800", 989.4},
        {"A100", 312.0},      {"L40S", 362.0},     {"A10", 125.0},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(p.name, known[i].name)) {
            snprintf(what, len, "%s, dense bf16 peak %.0f TFLOP/s", p.name, known[i].tflops);
            return known[i].tflops * 1e12;
        }
    snprintf(what, len, "%s (peak unknown)", p.name);
    return 0.0;
}
extern "C" void cuda_zero(float *x, size_t n) {
    if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * n));
}
extern "C" void cuda_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyDeviceToDevice));
}

__global__ void add_kernel(float *y, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}
extern "C" void cuda_add(float *y, const float *x, size_t n) {
    if (!n) return;
    add_kernel<<<grid_for(n, 256), 256>>>(y, x, n);
    CUDA_LAUNCHED();
}

// ---- matmul: row-major C = A B is column-major C^T = B^T A^T, so the operands swap ----

extern "C" void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: scale C */
        CUBLAS_CHECK(cublasSgeam(cublas, CUBLAS_OP_N, CUBLAS_OP_N, N, M, &beta, C, ldc, &beta, C, ldc, C, ldc));
        if (beta == 0.0f) CUDA_CHECK(cudaMemset2DAsync(C, sizeof(float) * ldc, 0, sizeof(float) * N, M));
        return;
    }
    CUBLAS_CHECK(cublasGemmEx(cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc, compute_type,
                              CUBLAS_GEMM_DEFAULT));
}

extern "C" void cuda_gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                                  long long stride_a, const float *B, int ldb, long long stride_b, float beta, float *C,
                                  int ldc, long long stride_c, int count) {
    if (M <= 0 || N <= 0 || count <= 0) return;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &alpha, B, CUDA_R_32F, ldb, stride_b, A, CUDA_R_32F, lda, stride_a,
                                            &beta, C, CUDA_R_32F, ldc, stride_c, count, compute_type,
                                            CUBLAS_GEMM_DEFAULT));
}

// ---- the vtable ----

// Filled field by field: C++17 has no designated initializers.
static Backend make_backend(void) {
    Backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.alloc = cuda_alloc;
    b.release = cuda_release;
    b.upload = cuda_upload;
    b.download = cuda_download;
    b.sync = cuda_sync;
    b.peak_flops = cuda_peak_flops;
    b.peak_bytes = cuda_peak_bytes;
#define CUDA_OP_ENTRY(ret, op, params) b.op = cuda_##op;
    BACKEND_OPS(CUDA_OP_ENTRY)
#undef CUDA_OP_ENTRY
    return b;
}

extern "C" const Backend *backend_cuda(void) {
    static Backend backend;
    if (!initialized) {
        init_cuda();
        backend = make_backend();
    }
    return &backend;
}
