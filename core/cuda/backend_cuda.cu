// The GPU backend: device memory, cuBLAS for every matmul (bf16 tensor cores with fp32
// accumulation: fp32 data rounded to bf16 inside the product), and the vtable that points at
// the kernels of the other files. ATTNLAB_CUDA_MATMUL=fp32 makes the products exact fp32 (the
// parity tests use it to separate kernel bugs from bf16 rounding).
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

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

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (!bytes) bytes = 256;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) die("out of GPU memory allocating %.1f MiB: %s", bytes / 1048576.0, cudaGetErrorString(e));
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

static void cuda_release(void *p) { CUDA_CHECK(cudaFree(p)); }
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
static void cuda_zero(float *x, size_t n) {
    if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * n));
}
static void cuda_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyDeviceToDevice));
}

__global__ void add_kernel(float *y, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}
static void cuda_add(float *y, const float *x, size_t n) {
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

// Filled field by field: C++ takes designated initializers only in declaration order.
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
    b.zero = cuda_zero;
    b.copy = cuda_copy;
    b.add = cuda_add;
    b.gemm = cuda_gemm;
    b.embedding_forward = cuda_embedding_forward;
    b.embedding_backward = cuda_embedding_backward;
    b.rmsnorm_forward = cuda_rmsnorm_forward;
    b.rmsnorm_backward = cuda_rmsnorm_backward;
    b.swiglu_forward = cuda_swiglu_forward;
    b.swiglu_backward = cuda_swiglu_backward;
    b.rope_forward = cuda_rope_forward;
    b.rope_backward = cuda_rope_backward;
    b.attention_workspace = cuda_attention_workspace;
    b.attention_forward = cuda_attention_forward;
    b.attention_backward = cuda_attention_backward;
    b.attention_decode_workspace = cuda_attention_decode_workspace;
    b.attention_decode = cuda_attention_decode;
    b.lm_head_xent_workspace = cuda_lm_head_xent_workspace;
    b.lm_head_xent = cuda_lm_head_xent;
    b.silu_forward = cuda_silu_forward;
    b.silu_backward = cuda_silu_backward;
    b.sigmoid_forward = cuda_sigmoid_forward;
    b.sigmoid_backward = cuda_sigmoid_backward;
    b.gate_forward = cuda_gate_forward;
    b.gate_backward = cuda_gate_backward;
    b.feature_map_forward = cuda_feature_map_forward;
    b.feature_map_backward = cuda_feature_map_backward;
    b.bias_forward = cuda_bias_forward;
    b.bias_backward = cuda_bias_backward;
    b.append_ones = cuda_append_ones;
    b.normalize_by_last = cuda_normalize_by_last;
    b.normalize_by_last_backward = cuda_normalize_by_last_backward;
    b.copy_rows = cuda_copy_rows;
    b.conv1d_forward = cuda_conv1d_forward;
    b.conv1d_backward = cuda_conv1d_backward;
    b.conv1d_step = cuda_conv1d_step;
    b.l2norm_forward = cuda_l2norm_forward;
    b.l2norm_backward = cuda_l2norm_backward;
    b.decay_gate_forward = cuda_decay_gate_forward;
    b.decay_gate_backward = cuda_decay_gate_backward;
    b.linear_attn_saved = cuda_linear_attn_saved;
    b.linear_attn_workspace = cuda_linear_attn_workspace;
    b.linear_attn_forward = cuda_linear_attn_forward;
    b.linear_attn_backward = cuda_linear_attn_backward;
    b.linear_attn_step = cuda_linear_attn_step;
    b.delta_rule_saved = cuda_delta_rule_saved;
    b.delta_rule_workspace = cuda_delta_rule_workspace;
    b.delta_rule_forward = cuda_delta_rule_forward;
    b.delta_rule_backward = cuda_delta_rule_backward;
    b.delta_rule_step = cuda_delta_rule_step;
    b.sum_squares = cuda_sum_squares;
    b.adamw = cuda_adamw;
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
