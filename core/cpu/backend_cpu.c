/* The CPU reference backend: host memory, OpenBLAS for every matmul, OpenMP for the rest. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory_ledger.h"
#include "core/util.h"
#include "cpu_ops.h"

static MemoryLedger cpu_memory;
static void *cpu_alloc(size_t bytes) {
    void *p = xalloc_aligned(bytes);
    ledger_add(&cpu_memory, p, bytes);
    return p;
}
static void cpu_release(void *p) {
    ledger_remove(&cpu_memory, p);
    free(p);
}
static size_t cpu_peak_bytes(void) { return cpu_memory.peak; }
static void cpu_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_sync(void) {} /* every CPU operation has finished when it returns */
static double cpu_peak_flops(char *what, size_t len) { /* no portable way to know it */
    if (len) what[0] = 0;
    return 0.0;
}

void cpu_zero(float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] = 0.0f;
}

void cpu_copy(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

void cpu_add(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* The CPU runs every op as it is called: nothing to record or replay. */
bool cpu_graph_begin(void) { return false; }
void *cpu_graph_end(void) { return NULL; }
void cpu_graph_launch(void *graph) { (void)graph; }
void cpu_graph_free(void *graph) { (void)graph; }

/* OpenBLAS's own threading cuts a product into as many pieces as there are threads, and with
   some of its kernels (Haswell's; the generic Prescott kernels 0.3.21 falls back to on CPUs it
   does not know, such as Emerald Rapids) the edge tiles of a piece sum in another order, so
   training changed in its last bits with `threads`. Large products are cut here instead, into
   pieces that depend on the shape alone, each run by one OpenBLAS thread. */
enum { GEMM_PIECE_FLOPS = 1 << 23, GEMM_MAX_PIECES = 6, GEMM_PIECE_ALIGN = 128 };

static void gemm_piece(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: C = beta * C (BLAS may not touch C at all) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    double flops = 2.0 * M * N * K;
    bool by_rows = M >= N;
    int dim = by_rows ? M : N;
    int pieces = (int)(flops / GEMM_PIECE_FLOPS);
    if (pieces > GEMM_MAX_PIECES) pieces = GEMM_MAX_PIECES;
    int piece = (dim + pieces - 1) / (pieces > 0 ? pieces : 1);
    piece = (piece + GEMM_PIECE_ALIGN - 1) / GEMM_PIECE_ALIGN * GEMM_PIECE_ALIGN;
    if (omp_in_parallel()) { /* OpenBLAS runs one thread inside a parallel region */
        gemm_piece(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (pieces <= 1 || piece >= dim) { /* OpenBLAS follows OpenMP's thread count: make it one */
        int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        gemm_piece(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads(threads);
        return;
    }
    int n_pieces = (dim + piece - 1) / piece;
#pragma omp parallel for schedule(dynamic, 1)
    for (int p = 0; p < n_pieces; p++) {
        int start = p * piece, len = dim - start < piece ? dim - start : piece;
        if (by_rows) {
            const float *Ap = trans_a ? A + start : A + (size_t)start * lda;
            gemm_piece(trans_a, trans_b, len, N, K, alpha, Ap, lda, B, ldb, beta, C + (size_t)start * ldc, ldc);
        } else {
            const float *Bp = trans_b ? B + (size_t)start * ldb : B + start;
            gemm_piece(trans_a, trans_b, M, len, K, alpha, A, lda, Bp, ldb, beta, C + start, ldc);
        }
    }
}

/* Each product alone, so that it rounds exactly as the same cpu_gemm call would. */
void cpu_gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      long long stride_a, const float *B, int ldb, long long stride_b, float beta, float *C, int ldc,
                      long long stride_c, int count) {
    for (int i = 0; i < count; i++)
        cpu_gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c,
                 ldc);
}

void cpu_decode_weights(const float *w, size_t n, bool convert) {
    (void)w, (void)n, (void)convert; /* the products read the fp32 weights themselves */
}

void cpu_step_weights(const float *w, size_t n) {
    (void)w, (void)n; /* the products read the fp32 weights themselves */
}

/* The norm into a buffer of the call's own (a decode step's few rows), then the products, a SwiGLU
 * output through a buffer of its own too: the same ops, so the same numbers, as the norm, the
 * linear layers and the SwiGLU apart. */
void cpu_linear_group(const float *x, const RowNorm *norm, int N, int in, int n, const LinearOut *outs) {
    float *normed = NULL;
    if (norm && N > 0) x = normed = cpu_rmsnorm_copy(x, norm, N, in);
    for (int i = 0; i < n; i++) {
        const LinearOut *o = &outs[i];
        if (o->op == LINEAR_SWIGLU) {
            if (o->out % 2) die("linear_group: a SwiGLU output of %d columns (gate and up halves: even)", o->out);
            float *gate_up = xalloc_aligned(sizeof(float) * ((size_t)N * o->out + 1));
            cpu_gemm(false, true, N, o->out, in, 1.0f, x, in, o->w, in, 0.0f, gate_up, o->out);
            cpu_swiglu_forward(o->y, gate_up, N, o->out / 2);
            free(gate_up);
        } else {
            float beta = o->op == LINEAR_ADD ? 1.0f : 0.0f;
            cpu_gemm(false, true, N, o->out, in, 1.0f, x, in, o->w, in, beta, o->y, o->out);
        }
    }
    free(normed);
}

void cpu_linear_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int N, int in,
                         int out, bool accumulate_dx) {
    cpu_gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (dx) cpu_gemm(false, false, N, in, out, 1.0f, dy, out, W, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
}

/* each layer's linear_backward in turn: dx's sum in the layers' order */
void cpu_linear_group_backward(float *dx, const float *x, int N, int in, int n, const LinearGrad *grads,
                               bool accumulate_dx) {
    if (n < 1 || n > LINEAR_GROUP_MAX) die("linear_group_backward: %d layers, want 1 to %d", n, LINEAR_GROUP_MAX);
    for (int i = 0; i < n; i++)
        cpu_linear_backward(dx, grads[i].dw, grads[i].dy, x, grads[i].w, N, in, grads[i].out, i > 0 || accumulate_dx);
}

void cpu_transpose(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
    if (rows > 0 && cols > 0) cblas_somatcopy(CblasRowMajor, CblasTrans, rows, cols, 1.0f, src, ld_src, dst, ld_dst);
}

int cpu_threads(void) { return omp_get_max_threads(); }

int backend_threads(void) { return omp_get_max_threads(); }

void backend_set_threads(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads); /* OpenBLAS follows it (cpu_gemm gives it one thread a piece) */
}

static const Backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .sync = cpu_sync,
    .peak_flops = cpu_peak_flops,
    .peak_bytes = cpu_peak_bytes,
#define CPU_OP_ENTRY(ret, op, params) .op = cpu_##op,
    BACKEND_OPS(CPU_OP_ENTRY)
#undef CPU_OP_ENTRY
};

const Backend *backend_cpu(void) { return &cpu_backend; }

