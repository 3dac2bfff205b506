/* The inverse of a unit lower-triangular matrix, which the chunkwise delta rule applies to a
 * chunk's values in the forward and (transposed) to their gradients in the backward. Inverting
 * once and multiplying is two matmuls where forward or back substitution would be n^2 / 2 short
 * vector updates: at n = 64, OpenBLAS's strsm and a substitution loop both take ~8 us, the
 * blocked inverse below ~2.2 us and the product ~3 us. */
#include <string.h>

#include "cpu_ops.h"

/* Blocks up to this size are inverted row by row; larger ones are split in two. */
enum { DIRECT_ROWS = TRIANGLE_ROWS };

/* T_r = e_r - sum_{j<r} N_rj T_j, row by row: L T = I with L = I + N. Rows are kept
 * DIRECT_ROWS wide (zero beyond the diagonal), so each update is one fixed-width vector
 * operation; with two partial sums the dependency chain is half as long. */
static void invert_directly(float *T, int n, int ld) {
    float rows[DIRECT_ROWS][DIRECT_ROWS];
    for (int r = 0; r < n; r++) {
        float even[DIRECT_ROWS] = {0}, odd[DIRECT_ROWS] = {0};
        const float *nr = T + (size_t)r * ld;
        int j = 0;
        for (; j + 1 < r; j += 2) {
            float a = nr[j], b = nr[j + 1];
            for (int x = 0; x < DIRECT_ROWS; x++) {
                even[x] -= a * rows[j][x];
                odd[x] -= b * rows[j + 1][x];
            }
        }
        if (j < r)
            for (int x = 0; x < DIRECT_ROWS; x++) even[x] -= nr[j] * rows[j][x];
        for (int x = 0; x < DIRECT_ROWS; x++) rows[r][x] = even[x] + odd[x];
        rows[r][r] = 1.0f;
    }
    for (int r = 0; r < n; r++) memcpy(T + (size_t)r * ld, rows[r], sizeof(float) * (size_t)n);
}

/* C = alpha A L for A (m x n) and L (n x n) lower triangular, by column blocks, reading nothing
 * right of L's diagonal blocks. */
static void gemm_times_lower(int m, int n, float alpha, const float *A, int lda, const float *L, int ldl, float *C,
                             int ldc) {
    for (int j0 = 0; j0 < n; j0 += TRIANGLE_ROWS) {
        int j1 = triangle_block_end(j0, n);
        cpu_gemm(false, false, m, j1 - j0, n - j0, alpha, A + j0, lda, L + (size_t)j0 * ldl + j0, ldl, 0.0f, C + j0,
                 ldc);
    }
}

/* With L = [L11 0; L21 L22]: L^-1 = [T11 0; -T22 L21 T11  T22], T11 = L11^-1, T22 = L22^-1.
 * The split falls on a multiple of TRIANGLE_ROWS, so the diagonal blocks of every level are the
 * matrix's own, and nothing right of them is read or written. */
void cpu_unit_lower_inverse(float *T, int n, int ld, float *tmp) {
    if (n <= DIRECT_ROWS) {
        invert_directly(T, n, ld);
        return;
    }
    int h = (n / 2 + DIRECT_ROWS - 1) / DIRECT_ROWS * DIRECT_ROWS; /* < n for n > DIRECT_ROWS */
    float *L21 = T + (size_t)h * ld, *T22 = L21 + h;
    cpu_unit_lower_inverse(T, h, ld, tmp);
    cpu_unit_lower_inverse(T22, n - h, ld, tmp);
    gemm_times_lower(n - h, h, 1.0f, L21, ld, T, ld, tmp, h);
    cpu_gemm_lower_left(false, n - h, h, -1.0f, T22, ld, tmp, h, 0.0f, L21, ld, NULL);
}

/* Matrix products with a lower-triangular n x n operand or result, by blocks of TRIANGLE_ROWS
 * rows, so that the blocks right of the diagonal ones cost nothing: at n = 64, blocks of 16
 * save 37% of the work, and OpenBLAS runs products of 16 rows as fast per flop as whole ones. */
void cpu_gemm_lower_left(bool trans_l, int n, int N, float alpha, const float *L, int ldl, const float *B, int ldb,
                         float beta, float *C, int ldc, Prefetch *pf) {
    for (int i0 = 0; i0 < n; i0 += TRIANGLE_ROWS) {
        int i1 = triangle_block_end(i0, n);
        if (trans_l) /* rows [i0, i1) of L^T B: L[i0:n, i0:i1]^T B[i0:n] */
            cpu_gemm(true, false, i1 - i0, N, n - i0, alpha, L + (size_t)i0 * ldl + i0, ldl, B + (size_t)i0 * ldb, ldb,
                     beta, C + (size_t)i0 * ldc, ldc);
        else /* rows [i0, i1) of L B: L[i0:i1, 0:i1] B[0:i1] */
            cpu_gemm(false, false, i1 - i0, N, i1, alpha, L + (size_t)i0 * ldl, ldl, B, ldb, beta, C + (size_t)i0 * ldc,
                     ldc);
        prefetch_lines(pf, PREFETCH_GAP_LINES);
    }
}

void cpu_gemm_lower_result(int n, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, Prefetch *pf) {
    for (int i0 = 0; i0 < n; i0 += TRIANGLE_ROWS) {
        int i1 = triangle_block_end(i0, n);
        cpu_gemm(false, false, i1 - i0, i1, K, alpha, A + (size_t)i0 * lda, lda, B, ldb, beta, C + (size_t)i0 * ldc,
                 ldc);
        prefetch_lines(pf, PREFETCH_GAP_LINES);
    }
}
