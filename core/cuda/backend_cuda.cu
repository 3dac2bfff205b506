// The GPU backend: device memory, cuBLAS for every matmul, and the vtable that points at the
// kernels of the other files. Matmuls run on tensor cores with fp32 accumulation: a product of at
// least BF16_MIN_FLOPS and BF16_MIN_INTENSITY takes bf16 operands, rounded from the fp32 data
// once per call, a training step's weights once per step (step_weights), as PyTorch's autocast
// rounds activations per op and caches its casts of the weights; smaller ones (decode, the
// chunkwise cores' batched products) pass the fp32 data to cuBLAS's FAST_16BF mode, which on
// Hopper picks TF32 kernels (an ncu profile shows sm90 "tf32" kernels there).
// ATTNLAB_CUDA_MATMUL=fp32 makes every product exact fp32 (the parity tests use it to separate
// kernel bugs from tensor-core rounding).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory_ledger.h"
#include "attention_shape.cuh"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"

static cublasHandle_t cublas;
static cublasComputeType_t compute_type = CUBLAS_COMPUTE_32F_FAST_16BF;
static bool initialized;
static bool graphs_off; // ATTNLAB_CUDA_GRAPHS=0: decode steps run launch by launch
static bool pdl_off;    // ATTNLAB_CUDA_PDL=0: every kernel waits for the one before it to end
static bool wgmma;      // the attention's wgmma kernels run here (flash_mma_wgmma_built; ATTNLAB_CUDA_WGMMA=0: no)
enum { CUBLAS_WORKSPACE_BYTES = 32 << 20 };

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

// ATTNLAB_CUDA_MATMUL's mode, NULL when unset
static const char *matmul_from_env(void) {
    const char *mode = getenv("ATTNLAB_CUDA_MATMUL");
    if (mode && strcmp(mode, "fp32") != 0 && strcmp(mode, "bf16") != 0)
        die("ATTNLAB_CUDA_MATMUL: expected bf16 or fp32, got '%s'", mode);
    return mode;
}

static void init_cuda(void) {
    if (initialized) return;
    char why[256];
    if (!backend_cuda_usable(why, sizeof why)) die("device 'cuda': %s", why);
    CUBLAS_CHECK(cublasCreate(&cublas));
    CUBLAS_CHECK(cublasSetStream(cublas, cudaStreamPerThread));
    /* a workspace of its own, so that cuBLAS allocates nothing while a graph is recorded */
    void *workspace;
    CUDA_CHECK(cudaMalloc(&workspace, CUBLAS_WORKSPACE_BYTES));
    CUBLAS_CHECK(cublasSetWorkspace(cublas, workspace, CUBLAS_WORKSPACE_BYTES));
    const char *graphs = getenv("ATTNLAB_CUDA_GRAPHS");
    if (graphs && strcmp(graphs, "0") == 0) graphs_off = true;
    else if (graphs && strcmp(graphs, "1") != 0) die("ATTNLAB_CUDA_GRAPHS: expected 0 or 1, got '%s'", graphs);
    const char *pdl = getenv("ATTNLAB_CUDA_PDL");
    if (pdl && strcmp(pdl, "0") == 0) pdl_off = true;
    else if (pdl && strcmp(pdl, "1") != 0) die("ATTNLAB_CUDA_PDL: expected 0 or 1, got '%s'", pdl);
    const char *wg = getenv("ATTNLAB_CUDA_WGMMA");
    if (wg && strcmp(wg, "0") != 0 && strcmp(wg, "1") != 0) die("ATTNLAB_CUDA_WGMMA: expected 0 or 1, got '%s'", wg);
    wgmma = !(wg && strcmp(wg, "0") == 0) && flash_mma_wgmma_built(); // before any graph is recorded
    const char *mode = matmul_from_env();
    if (mode) compute_type = strcmp(mode, "fp32") == 0 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_16BF;
    initialized = true;
}

bool cuda_tensor_cores(void) { return compute_type != CUBLAS_COMPUTE_32F; }

extern "C" const char *backend_cuda_matmul(const char *mode) {
    const char *env = matmul_from_env();
    if (env) mode = env;
    compute_type = strcmp(mode, "fp32") == 0 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_16BF;
    return strcmp(mode, "fp32") == 0 ? "fp32" : "bf16";
}

extern "C" int backend_cuda_compute_capability(void) {
    static int cc = -1;
    if (cc < 0) {
        int dev, major, minor;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
        cc = 10 * major + minor;
    }
    return cc;
}

bool cuda_pdl(void) { return backend_cuda_compute_capability() >= 90 && !pdl_off; }

bool cuda_wgmma(void) { return wgmma; }

extern "C" const char *backend_cuda_attention_kernels(void) {
    backend_cuda();
    return !cuda_tensor_cores() ? "fp32" : cuda_wgmma() ? "wgmma" : "mma.sync";
}

int cuda_sm_count(void) {
    static int sms;
    if (!sms) {
        int dev;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    }
    return sms;
}

static int device_attribute(cudaDeviceAttr what) {
    int dev, v;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&v, what, dev));
    return v;
}

SmemLimits cuda_smem_limits(void) {
    static SmemLimits l;
    if (!l.per_block) {
        l.per_block = (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
        l.per_sm = (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor);
        l.reserved = (size_t)device_attribute(cudaDevAttrReservedSharedMemoryPerBlock);
    }
    return l;
}

int cuda_blocks_per_sm(size_t smem) {
    SmemLimits l = cuda_smem_limits();
    return smem > l.per_block ? 0 : (int)(l.per_sm / (smem + l.reserved));
}

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

// A product converts its operands to bf16 (bf16 tensor cores run at about twice TF32's rate) when
// it does at least BF16_MIN_INTENSITY multiply-adds per converted element: below that, the pass
// over both operands (4 bytes read, 2 written each) costs more than the faster product saves. At
// 12 x 768 and 8 x 2048 tokens every projection's forward and backward products pass, MLA's
// latent ones included (at 384 a multiply-add, MLA's up-projection's weight gradient and input
// gradient (intensity 307 and 380) and the down-projection's weight gradient (256) stayed TF32:
// 3.3 ms of an MLA step in cuBLAS's TF32 kernels, at about 136 TFLOP/s); decode's (one token) and
// the chunkwise cores' small products do not. (The intensity counts a weight's rounding, which a
// training step now makes once, step_weights; not re-tuned for that.)
enum { BF16_MIN_INTENSITY = 192, BF16_MIN_FLOPS = 1 << 26 };

// rows x cols of a row-major fp32 matrix with leading dimension ld into bf16 rows of leading
// dimension dst_ld, zeros in their columns [cols, pad_to): a thread converts 4 neighbours (one
// 16-byte load, one 8-byte store where the rows allow it)
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, long dst_ld, const float *src, int rows, int cols, int pad_to,
                               long ld, bool vec4) {
    int c = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= pad_to) return;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *s = src + (size_t)r * ld + c;
        __nv_bfloat16 *d = dst + (size_t)r * dst_ld + c;
        if (vec4 && c < cols) { /* cols a multiple of 4: the group lies whole in the data */
            float4 v = __ldg(reinterpret_cast<const float4 *>(s));
            __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
            *reinterpret_cast<uint2 *>(d) =
                make_uint2(*reinterpret_cast<unsigned *>(&lo), *reinterpret_cast<unsigned *>(&hi));
        } else {
            for (int j = 0; j < 4 && c + j < pad_to; j++) d[j] = __float2bfloat16_rn(c + j < cols ? s[j] : 0.0f);
        }
    }
}

// into dst's columns [0, cols) of rows dst_ld apart, zeros in [cols, pad_to)
static void to_bf16_into(__nv_bfloat16 *dst, long dst_ld, const float *src, int rows, int cols, int pad_to, long ld) {
    /* the 8-byte stores need dst aligned too: a second operand packed after a first of an odd size is not */
    bool vec4 = (size_t)src % 16 == 0 && (size_t)dst % 8 == 0 && ld % 4 == 0 && dst_ld % 4 == 0 && cols % 4 == 0;
    dim3 grid((unsigned)((pad_to + 1023) / 1024), (unsigned)(rows < 65535 ? rows : 65535));
    to_bf16_kernel<<<grid, 256>>>(dst, dst_ld, src, rows, cols, pad_to, ld, vec4);
    CUDA_LAUNCHED();
}

void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, int rows, int cols, long ld) {
    to_bf16_into(dst, cols, src, rows, cols, cols, ld);
}

void cuda_to_bf16_flat(__nv_bfloat16 *dst, const float *src, size_t n) {
    const size_t row = 1 << 20, rows = n / row, rest = n - rows * row; /* rows of a million */
    if (rows) cuda_to_bf16(dst, src, (int)rows, (int)row, (long)row);
    if (rest) cuda_to_bf16(dst + rows * row, src + rows * row, 1, (int)rest, (long)rest);
}

// step_weights' copy: the parameter buffer as a training step's bf16 products read it (its
// buffer kept from step to step, as the operand space is), and the weights it was made of while
// a step runs (NULL between steps)
static __nv_bfloat16 *step_copy;
static size_t step_cap, step_n;
static const float *step_from;

extern "C" void cuda_step_weights(const float *w, size_t n) {
    step_from = NULL;
    step_n = 0;
    if (!w || !n || !cuda_tensor_cores()) return; /* the fp32 mode reads the fp32 weights */
    if (n > step_cap) {
        if (step_copy) cuda_release(step_copy);
        step_copy = (__nv_bfloat16 *)cuda_alloc(sizeof(__nv_bfloat16) * n);
        step_cap = n;
    }
    cuda_to_bf16_flat(step_copy, w, n);
    step_from = w;
    step_n = n;
}

const __nv_bfloat16 *cuda_step_copy(const float *w, size_t n) {
    if (!step_from || w < step_from || w + n > step_from + step_n) return NULL;
    return step_copy + (w - step_from);
}

// hold_operand's copy: one activation (a block's normed input) as the bf16 products after it
// read it, rounded once for all of them: by the RMSNorm that writes it (cuda_held_target), else by
// the first product that reads it (held_rows). NULL from: nothing held.
static __nv_bfloat16 *held_copy;
static size_t held_cap, held_n;
static const float *held_from;
static bool held_made;

extern "C" void cuda_hold_operand(const float *x, size_t n) {
    held_from = NULL;
    held_n = 0;
    held_made = false;
    if (!x || !n || !cuda_tensor_cores()) return; /* the fp32 mode reads x */
    if (n > held_cap) {
        if (cuda_capture_refuses()) return; /* a graph would keep the old buffer */
        if (held_copy) cuda_release(held_copy);
        held_copy = (__nv_bfloat16 *)cuda_alloc(sizeof(__nv_bfloat16) * n);
        held_cap = n;
    }
    held_from = x;
    held_n = n;
}

__nv_bfloat16 *cuda_held_target(const float *out, size_t n) {
    if (!held_from || out != held_from || n != held_n) return NULL;
    held_made = true; /* by the caller's kernel, in stream order before any product reads it */
    return held_copy;
}

bool cuda_held(const float *src, size_t n) { return held_from && src >= held_from && src + n <= held_from + held_n; }

// the held copy of [src, src + n) where it lies inside the held operand (rounded now if no norm made it)
static const __nv_bfloat16 *held_rows(const float *src, size_t n) {
    if (!cuda_held(src, n)) return NULL;
    if (!held_made) {
        cuda_to_bf16_flat(held_copy, held_from, held_n);
        held_made = true;
    }
    return held_copy + (src - held_from);
}

Bf16Operand cuda_bf16_operand(const float *src, int rows, int cols, int ld, __nv_bfloat16 *space) {
    size_t n = (size_t)(rows - 1) * ld + cols;
    const __nv_bfloat16 *copy = cuda_step_copy(src, n);
    if (!copy) copy = held_rows(src, n);
    if (copy) return Bf16Operand{copy, ld};
    cuda_to_bf16(space, src, rows, cols, ld);
    return Bf16Operand{space, cols};
}

// The bf16 copies of both operands, grown on demand (the first steps of a run) and kept in the
// memory ledger, so bench train's peak includes them.
static __nv_bfloat16 *operands;
static size_t operands_cap;

static __nv_bfloat16 *operand_space(size_t n) {
    if (n > operands_cap) {
        if (operands) cuda_release(operands);
        operands = (__nv_bfloat16 *)cuda_alloc(sizeof(__nv_bfloat16) * n);
        operands_cap = n;
    }
    return operands;
}

extern "C" bool cuda_gemm_converts(int M, int N, int K) {
    double mads = (double)M * N * K, converted = (double)M * K + (double)K * N;
    return cuda_tensor_cores() && 2.0 * mads >= BF16_MIN_FLOPS && mads >= BF16_MIN_INTENSITY * converted;
}

void cuda_gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                    const __nv_bfloat16 *B, int ldb, float beta, void *C, bool c_bf16, int ldc) {
    CUBLAS_CHECK(cublasGemmEx(cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                              c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void gemm_bf16_operands(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc) {
    int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K, b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    size_t na = (size_t)a_rows * a_cols, nb = (size_t)b_rows * b_cols;
    __nv_bfloat16 *space = operand_space(na + nb);
    Bf16Operand a = cuda_bf16_operand(A, a_rows, a_cols, lda, space);
    Bf16Operand b = cuda_bf16_operand(B, b_rows, b_cols, ldb, space + na);
    cuda_gemm_bf16(trans_a, trans_b, M, N, K, alpha, a.p, a.ld, b.p, b.ld, beta, C, false, ldc);
}

void cuda_gemm_bf16_a(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    if (cuda_capture_refuses()) return; /* its operand buffer may grow, and a graph would keep the old one */
    int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    Bf16Operand b = cuda_bf16_operand(B, b_rows, b_cols, ldb, operand_space((size_t)b_rows * b_cols));
    cuda_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, b.p, b.ld, beta, C, false, ldc);
}

__nv_bfloat16 *cuda_bf16_input(const float *x, int N, int in, size_t room) {
    __nv_bfloat16 *x16 = operand_space((size_t)N * in + room);
    cuda_to_bf16(x16, x, N, in, in);
    return x16;
}

void cuda_gemm_bf16_input(const __nv_bfloat16 *x16, int N, int out, int in, const float *W, float beta, float *y,
                          int ldy) {
    /* W where gemm_bf16_operands would put it, so the product is the one cuda_gemm makes alone:
     * after the rows cuda_bf16_input made last, in the room it kept */
    if (x16 != operands || operands_cap < (size_t)N * in + (size_t)out * in)
        die("internal: cuda_gemm_bf16_input past the room of the last cuda_bf16_input, or on other rows");
    Bf16Operand w = cuda_bf16_operand(W, out, in, in, operands + (size_t)N * in);
    cuda_gemm_bf16(false, true, N, out, in, 1.0f, x16, in, w.p, w.ld, beta, y, false, ldy);
}

extern "C" void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: scale C */
        CUBLAS_CHECK(cublasSgeam(cublas, CUBLAS_OP_N, CUBLAS_OP_N, N, M, &beta, C, ldc, &beta, C, ldc, C, ldc));
        if (beta == 0.0f) CUDA_CHECK(cudaMemset2DAsync(C, sizeof(float) * ldc, 0, sizeof(float) * N, M));
        return;
    }
    if (!trans_a && trans_b && M <= GEMV_MAX_ROWS) { /* a few tokens through a linear layer (decode) */
        cuda_gemv(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (cuda_gemm_converts(M, N, K)) {
        if (cuda_capture_refuses()) return; /* its operand buffer may grow, and a graph would keep the old one */
        gemm_bf16_operands(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    CUBLAS_CHECK(cublasGemmEx(cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc, compute_type,
                              CUBLAS_GEMM_DEFAULT));
}

// Both products on bf16 operands round dy once instead of twice: dy is the larger operand of the
// backward's products (its rows are as wide as the layer's output), so this saves about a third of
// a training step's conversions.
extern "C" void cuda_linear_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int N,
                                     int in, int out, bool accumulate_dx) {
    float dx_beta = accumulate_dx ? 1.0f : 0.0f;
    if (!dx || !cuda_gemm_converts(out, in, N) || !cuda_gemm_converts(N, in, out)) {
        cuda_gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
        if (dx) cuda_gemm(false, false, N, in, out, 1.0f, dy, out, W, in, dx_beta, dx, in);
        return;
    }
    if (cuda_capture_refuses()) return;
    size_t ndy = (size_t)N * out, nx = (size_t)N * in, nw = (size_t)out * in;
    __nv_bfloat16 *dy16 = operand_space(ndy + (nx > nw ? nx : nw)), *other = dy16 + ndy;
    cuda_to_bf16(dy16, dy, N, out, out);
    Bf16Operand x16 = cuda_bf16_operand(x, N, in, in, other); /* hold_operand's copy where x is held */
    cuda_gemm_bf16(true, false, out, in, N, 1.0f, dy16, out, x16.p, x16.ld, 1.0f, dW, false, in);
    Bf16Operand w = cuda_bf16_operand(W, out, in, in, other); /* after the dW product in stream order */
    cuda_gemm_bf16(false, false, N, in, out, 1.0f, dy16, out, w.p, w.ld, dx_beta, dx, false, in);
}

static int padded8(int n) { return (n + 7) / 8 * 8; }

// The layers' dx in one product: dx = [dy_1 | ... | dy_n] [W_1; ...; W_n], the dy_i rounded side
// by side into one bf16 operand of rows as wide as all outputs together, the weights' bf16 rows
// (the step's copy, else rounded) stacked below each other; so dx is written once instead of read
// and written once a layer, and the narrow layers (a gate's few columns, MLA's shared rotary key),
// whose products alone stay fp32 (cuda_gemm_converts), ride on the wide product's rounding. Each
// dW_i reads its dy_i's columns of that operand and x's held copy. Each layer's columns start at
// a multiple of 8 (16 bytes: cuBLAS's fast bf16 kernels want aligned rows; a gate of 12 columns
// misaligned the rest and cost kda 3% a step), the gaps zero in dy's operand and the weights'.
extern "C" void cuda_linear_group_backward(float *dx, const float *x, int N, int in, int n, const LinearGrad *grads,
                                           bool accumulate_dx) {
    if (n < 1 || n > LINEAR_GROUP_MAX) die("linear_group_backward: %d layers, want 1 to %d", n, LINEAR_GROUP_MAX);
    int total = 0;
    for (int i = 0; i < n; i++) total += padded8(grads[i].out);
    if (n == 1 || !dx || !cuda_gemm_converts(N, in, total)) {
        for (int i = 0; i < n; i++)
            cuda_linear_backward(dx, grads[i].dw, grads[i].dy, x, grads[i].w, N, in, grads[i].out,
                                 i > 0 || accumulate_dx);
        return;
    }
    if (cuda_capture_refuses()) return;
    size_t ndy = (size_t)N * total, nw = (size_t)total * in, nx = cuda_held(x, (size_t)N * in) ? 0 : (size_t)N * in;
    __nv_bfloat16 *dy16 = operand_space(ndy + nw + nx), *w16 = dy16 + ndy;
    for (int i = 0, col = 0; i < n; col += padded8(grads[i].out), i++) {
        const LinearGrad *g = &grads[i];
        int gap = padded8(g->out) - g->out;
        to_bf16_into(dy16 + col, total, g->dy, N, g->out, g->out + gap, g->out);
        size_t nwi = (size_t)g->out * in;
        __nv_bfloat16 *rows = w16 + (size_t)col * in;
        const __nv_bfloat16 *copy = cuda_step_copy(g->w, nwi);
        if (copy) CUDA_CHECK(cudaMemcpyAsync(rows, copy, sizeof(__nv_bfloat16) * nwi, cudaMemcpyDeviceToDevice));
        else cuda_to_bf16(rows, g->w, g->out, in, in);
        if (gap) CUDA_CHECK(cudaMemsetAsync(rows + nwi, 0, sizeof(__nv_bfloat16) * gap * in));
    }
    Bf16Operand x16 = cuda_bf16_operand(x, N, in, in, w16 + nw); /* hold_operand's copy where x is held */
    cuda_gemm_bf16(false, false, N, in, total, 1.0f, dy16, total, w16, in, accumulate_dx ? 1.0f : 0.0f, dx, false, in);
    for (int i = 0, col = 0; i < n; col += padded8(grads[i].out), i++)
        cuda_gemm_bf16(true, false, grads[i].out, in, N, 1.0f, dy16 + col, total, x16.p, x16.ld, 1.0f, grads[i].dw,
                       false, in);
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

// ---- graphs: a decode step recorded once and replayed ----

static bool capturing, capture_broken;

bool cuda_capture_refuses(void) {
    if (!capturing) return false;
    capture_broken = true;
    return true;
}

extern "C" bool cuda_graph_begin(void) {
    if (graphs_off) return false;
    /* relaxed: calls such as cudaFuncSetAttribute stay allowed while recording (an allocation would
     * be too, so lazily grown buffers refuse the recording themselves: cuda_capture_refuses) */
    CUDA_CHECK(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeRelaxed));
    capturing = true;
    capture_broken = false;
    return true;
}

// A recording that CUDA itself refuses (invalidated, or not instantiable) is a refusal too: the
// step then runs launch by launch, as with an op that depended on a host value.
extern "C" void *cuda_graph_end(void) {
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cudaStreamPerThread, &graph);
    capturing = false;
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !capture_broken && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) exec = NULL;
    if (graph) CUDA_CHECK(cudaGraphDestroy(graph));
    (void)cudaGetLastError(); /* a refused recording leaves its error behind: clear it */
    return exec;
}

extern "C" void cuda_graph_launch(void *graph) {
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, cudaStreamPerThread));
}

extern "C" void cuda_graph_free(void *graph) {
    if (graph) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
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
