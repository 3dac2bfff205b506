/* The CPU reference backend's operations (cpu_NAME for every NAME of BACKEND_OPS in
 * core/backend.h, one file per concern) and the CPU-only helpers they share. */
#pragma once
#include <omp.h>

#include "core/backend.h"
#include "prefetch.h"

/* Inside a parallel region: this thread's share [*lo, *hi) of n items, split evenly in order.
 * Used where a thread must own a fixed slice (deterministic reductions, disjoint columns). */
static inline void thread_share(long n, long *lo, long *hi) {
    long nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

#define CPU_OP_PROTOTYPE(ret, op, params) ret cpu_##op params;
BACKEND_OPS(CPU_OP_PROTOTYPE)
#undef CPU_OP_PROTOTYPE

int cpu_threads(void);

/* held_operand.c: the norm that wrote out tells the check of hold_operand's contract (a no-op
 * unless ATTNLAB_CHECK_HELD is set and out is the held operand) */
void cpu_held_written(const float *out);

/* RMSNorm(x) of N rows of C into a new buffer (free it), for the ops that fold a norm in */
float *cpu_rmsnorm_copy(const float *x, const RowNorm *norm, int N, int C);

/* dst [cols, rows] = src [rows, cols]^T (OpenBLAS's somatcopy: ~0.3 us for 64 x 64) */
void cpu_transpose(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);

/* triangular.c: lower-triangular n x n matrices by diagonal blocks of TRIANGLE_ROWS rows. Entries
 * right of the diagonal blocks are never read or written by these functions (their callers may
 * leave them unset); entries above the diagonal inside a diagonal block are read as they are,
 * so they must be zero in an operand. */
enum { TRIANGLE_ROWS = 16 };
/* T (row stride ld) holds N in its strict lower triangle on entry and (I + N)^-1 on return, with
 * zeros above the diagonal inside the diagonal blocks; tmp holds n * n / 4 floats */
void cpu_unit_lower_inverse(float *T, int n, int ld, float *tmp);
/* C = alpha op(L) B + beta C with L lower triangular and B n x N; between the block products,
 * a few of pf's queued lines are requested (prefetch.h; pf may be NULL) */
void cpu_gemm_lower_left(bool trans_l, int n, int N, float alpha, const float *L, int ldl, const float *B, int ldb,
                         float beta, float *C, int ldc, Prefetch *pf);
/* C = alpha A B + beta C (A n x K, B K x n) on C's diagonal blocks and left of them; pf as above */
void cpu_gemm_lower_result(int n, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, Prefetch *pf);
/* the end of the diagonal block holding row r */
static inline int triangle_block_end(int r, int n) {
    int end = (r / TRIANGLE_ROWS + 1) * TRIANGLE_ROWS;
    return end < n ? end : n;
}

/* decayed_products.c: P[r,j] = sum_d X_rd Y_jd exp(br_rd - bc_jd) for j < r (j <= r when
 * inclusive), else 0; br, bc are n x K (channel) or n, nonincreasing, br_r <= bc_j for j < r; sub
 * holds 3 * 16 * K + 3 * n * K floats */
void cpu_decayed_products(float *P, const float *X, const float *Y, const float *br, const float *bc, int n, int K,
                          bool channel, bool inclusive, float *sub);
/* adds dX, dY (may alias dX), dbr and dbc (may alias dbr) given dP (zero where P is masked) and
 * the forward P */
void cpu_decayed_products_backward(const float *dP, const float *P, const float *X, const float *Y, const float *br,
                                   const float *bc, float *dX, float *dY, float *dbr, float *dbc, float *tmp,
                                   float *sub, int n, int K, bool channel);
