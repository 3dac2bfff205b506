/* The inverse of a unit lower-triangular matrix, which the chunkwise delta rule applies to a
 * chunk's values in the forward and (transposed) to their gradients in the backward. Inverting
 * once and multiplying is two matmuls where forward or back substitution would be n^2 / 2 short
 * vector updates: at n = 64, OpenBLAS's strsm and a substitution loop both take ~8 us, the
 * blocked inverse below ~2 us and the product ~3 us. */
#include "cpu_ops.h"

/* Blocks up to this size are inverted row by row; larger ones are split in two. */
enum { DIRECT_ROWS = 16 };

/* T_r = e_r - sum_{j<r} N_rj T_j, row by row: L T = I with L = I + N. */
static void invert_directly(float *T, int n, int ld) {
    for (int r = 0; r < n; r++) {
        float *row = T + (size_t)r * ld, acc[DIRECT_ROWS];
        for (int x = 0; x < r; x++) acc[x] = 0.0f;
        for (int j = 0; j < r; j++) {
            float a = row[j];
            const float *tj = T + (size_t)j * ld;
            for (int x = 0; x <= j; x++) acc[x] -= a * tj[x];
        }
        for (int x = 0; x < r; x++) row[x] = acc[x];
        row[r] = 1.0f;
        for (int x = r + 1; x < n; x++) row[x] = 0.0f;
    }
}

/* With L = [L11 0; L21 L22]: L^-1 = [T11 0; -T22 L21 T11  T22], T11 = L11^-1, T22 = L22^-1. */
void cpu_unit_lower_inverse(float *T, int n, int ld, float *tmp) {
    if (n <= DIRECT_ROWS) {
        invert_directly(T, n, ld);
        return;
    }
    int h = (n / 2 + DIRECT_ROWS - 1) / DIRECT_ROWS * DIRECT_ROWS; /* whole blocks on the left when it can */
    if (h >= n) h = n / 2;
    float *L21 = T + (size_t)h * ld, *T22 = L21 + h;
    cpu_unit_lower_inverse(T, h, ld, tmp);
    cpu_unit_lower_inverse(T22, n - h, ld, tmp);
    for (int r = 0; r < h; r++)
        for (int x = h; x < n; x++) T[(size_t)r * ld + x] = 0.0f;
    cpu_gemm(false, false, n - h, h, h, 1.0f, L21, ld, T, ld, 0.0f, tmp, h);
    cpu_gemm(false, false, n - h, h, n - h, -1.0f, T22, ld, tmp, h, 0.0f, L21, ld);
}
