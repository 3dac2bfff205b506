/* Decayed pair products inside one chunk of the delta rule and of dplr, for any decay strength:
 *   P[r,j] = sum_d X_rd Y_jd exp(br_rd - bc_jd)   (j < r, or j <= r when inclusive; else 0)
 * with br, bc cumulative log decays of the rows and the columns (n x K per channel, or n for a
 * per-head gate; the delta rule passes one b for both, dplr's strict products b shifted by a row
 * for br), and their backward. Both only decrease, and br_r <= bc_j wherever j < r, so every
 * factor stays <= 1 and no decay overflows; the chunkwise cores use this when a chunk's decays
 * are too strong to factor through the chunk start. */
#include "core/util.h"
#include "cpu_ops.h"
#include "fastmath.h"

/* Channel-wise decays within a chunk go through sub-chunks of SUB rows. For rows r of a sub-chunk
 * starting at row rho and any earlier row j < rho,
 *   exp(br_r - bc_j) = exp(br_r - br_rho) * exp(br_rho - bc_j),
 * where both factors are <= 1 (br only decreases, br_rho <= bc_j), so the pairs of different
 * sub-chunks become one matmul of X * exp(br - br_rho) with Y * exp(br_rho - bc) without
 * overflow; only pairs inside a sub-chunk need an exp per channel. */
enum { SUB = 16 };

typedef struct {
    float *xp, *e;  /* X * e, e = exp(br_r - br_rho) for the sub-chunk's rows [nr, K] */
    float *yp, *f;  /* Y * f, f = exp(br_rho - bc_j) for the rows before it [rho, K] */
    float *dxp, *dyp;
} SubBlock;

static SubBlock sub_block(float *sub, const float *X, const float *Y, const float *br, const float *bc, int rho,
                          int nr, int K) {
    SubBlock sb;
    sb.xp = sub;
    sb.e = sb.xp + (size_t)SUB * K;
    sb.dxp = sb.e + (size_t)SUB * K;
    sb.yp = sb.dxp + (size_t)SUB * K;
    sb.f = sb.yp + (size_t)rho * K;
    sb.dyp = sb.f + (size_t)rho * K;
    const float *bref = br + (size_t)rho * K;
    for (int r = 0; r < nr; r++) {
        const float *brr = br + (size_t)(rho + r) * K, *xr = X + (size_t)(rho + r) * K;
        float *er = sb.e + (size_t)r * K, *xpr = sb.xp + (size_t)r * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            er[d] = fast_expf(brr[d] - bref[d]);
            xpr[d] = xr[d] * er[d];
        }
    }
    for (int j = 0; j < rho; j++) {
        const float *bj = bc + (size_t)j * K, *yj = Y + (size_t)j * K;
        float *fj = sb.f + (size_t)j * K, *ypj = sb.yp + (size_t)j * K;
#pragma omp simd
        for (int d = 0; d < K; d++) {
            fj[d] = fast_expf(bref[d] - bj[d]);
            ypj[d] = yj[d] * fj[d];
        }
    }
    return sb;
}

/* P[r,j] = sum_d X_rd Y_jd exp(br_rd - bc_jd) for j < r (or j <= r when inclusive), else 0.
 * sub: 3 SUB K + 3 n K floats of scratch (channel gates only). */
void cpu_decayed_products(float *P, const float *X, const float *Y, const float *br, const float *bc, int n, int K,
                          bool channel, bool inclusive, float *sub) {
    if (!channel) {
        cpu_gemm(false, true, n, n, K, 1.0f, X, K, Y, K, 0.0f, P, n);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                bool keep = j < r || (inclusive && j == r);
                P[r * n + j] = keep ? P[r * n + j] * expf(br[r] - bc[j]) : 0.0f;
            }
        return;
    }
    for (int r0 = 0; r0 < n; r0 += SUB) {
        int nr = min_int(SUB, n - r0);
        if (r0 > 0) { /* rows of this sub-chunk against every earlier row, as one matmul */
            SubBlock sb = sub_block(sub, X, Y, br, bc, r0, nr, K);
            cpu_gemm(false, true, nr, r0, K, 1.0f, sb.xp, K, sb.yp, K, 0.0f, P + (size_t)r0 * n, n);
        }
        for (int r = r0; r < r0 + nr; r++) { /* within the sub-chunk: pairwise differences */
            const float *xr = X + (size_t)r * K, *brr = br + (size_t)r * K;
            int last = inclusive ? r : r - 1;
            for (int j = r0; j <= last; j++) {
                const float *yj = Y + (size_t)j * K, *bj = bc + (size_t)j * K;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int d = 0; d < K; d++) acc += xr[d] * yj[d] * fast_expf(brr[d] - bj[d]);
                P[r * n + j] = acc;
            }
            for (int j = last + 1; j < n; j++) P[r * n + j] = 0.0f;
        }
    }
}

/* Adds the gradients of decayed_products given dP (zero where P is masked): dX, dY (which may
 * alias dX when X == Y), dbr and dbc (n x K, or n when the gate is per head; they may alias each
 * other, as br and bc may). P is the forward value. */
void cpu_decayed_products_backward(const float *dP, const float *P, const float *X, const float *Y, const float *br,
                                   const float *bc, float *dX, float *dY, float *dbr, float *dbc, float *tmp,
                                   float *sub, int n, int K, bool channel) {
    if (!channel) {
        /* with E_rj = exp(br_r - bc_j): dX += (dP . E) Y, dY += (dP . E)^T X, dbr_r += sum_j dP_rj P_rj,
         * dbc_j -= sum_r dP_rj P_rj; tmp holds dP . E */
        for (int r = 0; r < n; r++)
            for (int j = 0; j < n; j++) {
                float w = dP[r * n + j] * P[r * n + j];
                tmp[r * n + j] = dP[r * n + j] == 0.0f ? 0.0f : dP[r * n + j] * expf(br[r] - bc[j]);
                dbr[r] += w;
                dbc[j] -= w;
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
             * exponents br_r - br_rho and br_rho - bc_j send gradient to br_r, bc_j and br_rho */
            SubBlock sb = sub_block(sub, X, Y, br, bc, r0, nr, K);
            const float *dPb = dP + (size_t)r0 * n;
            cpu_gemm(false, false, nr, K, r0, 1.0f, dPb, n, sb.yp, K, 0.0f, sb.dxp, K);
            cpu_gemm(true, false, r0, K, nr, 1.0f, dPb, n, sb.xp, K, 0.0f, sb.dyp, K);
            float *dbref = dbr + (size_t)r0 * K;
            for (int r = 0; r < nr; r++) {
                float *dxr = dX + (size_t)(r0 + r) * K, *dbrr = dbr + (size_t)(r0 + r) * K;
                const float *g1 = sb.dxp + (size_t)r * K, *er = sb.e + (size_t)r * K, *xp = sb.xp + (size_t)r * K;
#pragma omp simd
                for (int d = 0; d < K; d++) {
                    float w = g1[d] * xp[d];
                    dxr[d] += g1[d] * er[d];
                    dbrr[d] += w;
                    dbref[d] -= w;
                }
            }
            for (int j = 0; j < r0; j++) {
                float *dyj = dY + (size_t)j * K, *dbj = dbc + (size_t)j * K;
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
            const float *xr = X + (size_t)r * K, *brr = br + (size_t)r * K;
            float *dxr = dX + (size_t)r * K, *dbrr = dbr + (size_t)r * K;
            for (int j = r0; j <= r; j++) {
                float d = dP[r * n + j];
                if (d == 0.0f) continue;
                const float *yj = Y + (size_t)j * K, *bj = bc + (size_t)j * K;
                float *dyj = dY + (size_t)j * K, *dbj = dbc + (size_t)j * K;
#pragma omp simd
                for (int c = 0; c < K; c++) {
                    float t = d * fast_expf(brr[c] - bj[c]);
                    float w = t * xr[c] * yj[c];
                    dxr[c] += t * yj[c];
                    dyj[c] += t * xr[c];
                    dbrr[c] += w;
                    dbj[c] -= w;
                }
            }
        }
    }
}

