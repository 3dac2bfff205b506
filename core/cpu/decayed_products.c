/* Decayed pair products inside one chunk of the delta rule, for any decay strength:
 *   P[r,j] = sum_d X_rd Y_jd exp(b_rd - b_jd)   (j < r, or j <= r when inclusive; else 0)
 * with b the cumulative log decay (n x K per channel, or n for a per-head gate), and their
 * backward. Every factor stays <= 1 (b only decreases), so no decay overflows; the chunkwise
 * delta rule uses this when a chunk's decays are too strong to factor through the chunk start. */
#include "core/util.h"
#include "cpu_ops.h"
#include "fastmath.h"

/* Channel-wise decays within a chunk go through sub-chunks of SUB rows. For rows r of a sub-chunk
 * starting at row rho and any earlier row j < rho,
 *   exp(b_r - b_j) = exp(b_r - b_rho) * exp(b_rho - b_j),
 * where both factors are <= 1 (b only decreases), so the pairs of different sub-chunks become one
 * matmul of X * exp(b - b_rho) with Y * exp(b_rho - b) without overflow; only pairs inside a
 * sub-chunk need an exp per channel. */
enum { SUB = 16 };

typedef struct {
    float *xp, *e;  /* X * e, e = exp(b_r - b_rho) for the sub-chunk's rows [nr, K] */
    float *yp, *f;  /* Y * f, f = exp(b_rho - b_j) for the rows before it [rho, K] */
    float *dxp, *dyp;
} SubBlock;

static SubBlock sub_block(float *sub, const float *X, const float *Y, const float *b, int rho, int nr, int K) {
    SubBlock sb;
    sb.xp = sub;
    sb.e = sb.xp + (size_t)SUB * K;
    sb.dxp = sb.e + (size_t)SUB * K;
    sb.yp = sb.dxp + (size_t)SUB * K;
    sb.f = sb.yp + (size_t)rho * K;
    sb.dyp = sb.f + (size_t)rho * K;
    const float *bref = b + (size_t)rho * K;
    for (int r = 0; r < nr; r++) {
        const float *br = b + (size_t)(rho + r) * K, *xr = X + (size_t)(rho + r) * K;
        float *er = sb.e + (size_t)r * K, *xpr = sb.xp + (size_t)r * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            er[d] = fast_expf(br[d] - bref[d]);
            xpr[d] = xr[d] * er[d];
        }
    }
    for (int j = 0; j < rho; j++) {
        const float *bj = b + (size_t)j * K, *yj = Y + (size_t)j * K;
        float *fj = sb.f + (size_t)j * K, *ypj = sb.yp + (size_t)j * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            fj[d] = fast_expf(bref[d] - bj[d]);
            ypj[d] = yj[d] * fj[d];
        }
    }
    return sb;
}

/* P[r,j] = sum_d X_rd Y_jd exp(b_rd - b_jd) for j < r (or j <= r when inclusive), else 0.
 * sub: 3 SUB K + 3 n K floats of scratch (channel gates only). */
void cpu_decayed_products(float *P, const float *X, const float *Y, const float *b, int n, int K, bool channel,
                             bool inclusive, float *sub) {
    if (!channel) {
        cpu_gemm(false, true, n, n, K, 1.0f, X, K, Y, K, 0.0f, P, n);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                bool keep = j < r || (inclusive && j == r);
                P[r * n + j] = keep ? P[r * n + j] * expf(b[r] - b[j]) : 0.0f;
            }
        return;
    }
    for (int r0 = 0; r0 < n; r0 += SUB) {
        int nr = min_int(SUB, n - r0);
        if (r0 > 0) { /* rows of this sub-chunk against every earlier row, as one matmul */
            SubBlock sb = sub_block(sub, X, Y, b, r0, nr, K);
            cpu_gemm(false, true, nr, r0, K, 1.0f, sb.xp, K, sb.yp, K, 0.0f, P + (size_t)r0 * n, n);
        }
        for (int r = r0; r < r0 + nr; r++) { /* within the sub-chunk: pairwise differences */
            const float *xr = X + (size_t)r * K, *br = b + (size_t)r * K;
            int last = inclusive ? r : r - 1;
            for (int j = r0; j <= last; j++) {
                const float *yj = Y + (size_t)j * K, *bj = b + (size_t)j * K;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int d = 0; d < K; d++) acc += xr[d] * yj[d] * fast_expf(br[d] - bj[d]);
                P[r * n + j] = acc;
            }
            for (int j = last + 1; j < n; j++) P[r * n + j] = 0.0f;
        }
    }
}

/* Adds the gradients of decayed_products given dP (zero where P is masked): dX, dY (which may
 * alias dX when X == Y) and db (n x K, or n when the gate is per head). P is the forward value. */
void cpu_decayed_products_backward(const float *dP, const float *P, const float *X, const float *Y,
                                      const float *b, float *dX, float *dY, float *db, float *tmp, float *sub, int n,
                                      int K, bool channel) {
    if (!channel) {
        /* with E_rj = exp(b_r - b_j): dX += (dP . E) Y, dY += (dP . E)^T X, db_r += sum_j dP_rj P_rj,
         * db_j -= sum_r dP_rj P_rj; tmp holds dP . E */
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                float w = dP[r * n + j] * P[r * n + j];
                tmp[r * n + j] = dP[r * n + j] == 0.0f ? 0.0f : dP[r * n + j] * expf(b[r] - b[j]);
                db[r] += w;
                db[j] -= w;
            }
        cpu_gemm(false, false, n, K, n, 1.0f, tmp, n, Y, K, 1.0f, dX, K);
        cpu_gemm(true, false, n, K, n, 1.0f, tmp, n, X, K, 1.0f, dY, K);
        return;
    }
    (void)P;
    (void)tmp;
    for (int r0 = 0; r0 < n; r0 += SUB) {
        int nr = min_int(SUB, n - r0);
        if (r0 > 0) {
            /* P_RJ = Xp Yp^T: dXp = dP_RJ Yp, dYp = dP_RJ^T Xp; then through Xp = X e, Yp = Y f, whose
             * exponents b_r - b_rho and b_rho - b_j send gradient to b_r, b_j and b_rho */
            SubBlock sb = sub_block(sub, X, Y, b, r0, nr, K);
            const float *dPb = dP + (size_t)r0 * n;
            cpu_gemm(false, false, nr, K, r0, 1.0f, dPb, n, sb.yp, K, 0.0f, sb.dxp, K);
            cpu_gemm(true, false, r0, K, nr, 1.0f, dPb, n, sb.xp, K, 0.0f, sb.dyp, K);
            float *dbref = db + (size_t)r0 * K;
            for (int r = 0; r < nr; r++) {
                float *dxr = dX + (size_t)(r0 + r) * K, *dbr = db + (size_t)(r0 + r) * K;
                const float *g1 = sb.dxp + (size_t)r * K, *er = sb.e + (size_t)r * K, *xp = sb.xp + (size_t)r * K;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = g1[d] * xp[d];
                    dxr[d] += g1[d] * er[d];
                    dbr[d] += w;
                    dbref[d] -= w;
                }
            }
            for (int j = 0; j < r0; j++) {
                float *dyj = dY + (size_t)j * K, *dbj = db + (size_t)j * K;
                const float *g2 = sb.dyp + (size_t)j * K, *fj = sb.f + (size_t)j * K, *yp = sb.yp + (size_t)j * K;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = g2[d] * yp[d];
                    dyj[d] += g2[d] * fj[d];
                    dbj[d] -= w;
                    dbref[d] += w;
                }
            }
        }
        for (int r = r0; r < r0 + nr; r++) {
            const float *xr = X + (size_t)r * K, *br = b + (size_t)r * K;
            float *dxr = dX + (size_t)r * K, *dbr = db + (size_t)r * K;
            for (int j = r0; j <= r; j++) {
                float d = dP[r * n + j];
                if (d == 0.0f) continue;
                const float *yj = Y + (size_t)j * K, *bj = b + (size_t)j * K;
                float *dyj = dY + (size_t)j * K, *dbj = db + (size_t)j * K;
#pragma omp simd
                for (int c = 0; c < K; c++) {
                    float t = d * fast_expf(br[c] - bj[c]);
                    float w = t * xr[c] * yj[c];
                    dxr[c] += t * yj[c];
                    dyj[c] += t * xr[c];
                    dbr[c] += w;
                    dbj[c] -= w;
                }
            }
        }
    }
}

