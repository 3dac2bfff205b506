/* The LM head fused with softmax cross-entropy: logits are made for a chunk of rows at a time,
 * turned into the loss and, when training, straight into the gradients, so the full [N, V]
 * logits never exist at once (it matters for large vocabularies). */
#include <math.h>

#include "core/util.h"
#include "cpu_ops.h"
#include "fastmath.h"

/* Rows per chunk: enough for efficient matmuls, few enough that chunk x V stays near 16 MiB. */
static int chunk_rows(int N, int V) {
    long rows = (4L << 20) / (V > 0 ? V : 1);
    if (rows < 64) rows = 64;
    return rows < N ? (int)rows : N;
}

size_t cpu_lm_head_xent_workspace(int N, int C, int V) {
    (void)C;
    size_t R = (size_t)chunk_rows(N, V);
    return sizeof(float) * (R * V + 2 * R);
}

XentStats cpu_lm_head_xent(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                           int C, int V, float grad_scale, float *work) {
    int R = chunk_rows(N, V);
    float *logits = work, *row_loss = work + (size_t)R * V, *row_hit = row_loss + R;
    XentStats st = {0, 0, 0};
    for (int n0 = 0; n0 < N; n0 += R) {
        int nr = min_int(R, N - n0);
        cpu_gemm(false, true, nr, V, C, 1.0f, x + (size_t)n0 * C, C, W, C, 0.0f, logits, V);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nr; i++) {
            float *l = logits + (size_t)i * V;
            int tgt = targets[n0 + i];
            float mx = -INFINITY;
            int arg = 0;
            for (int j = 0; j < V; j++)
                if (l[j] > mx) {
                    mx = l[j];
                    arg = j;
                }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < V; j++) sum += fast_expf(l[j] - mx);
            float lse = mx + logf(sum);
            row_loss[i] = tgt >= 0 ? lse - l[tgt] : 0.0f;
            row_hit[i] = tgt >= 0 && arg == tgt;
            if (!dx) continue;
            if (tgt < 0) {
                for (int j = 0; j < V; j++) l[j] = 0.0f;
                continue;
            }
#pragma omp simd
            for (int j = 0; j < V; j++) l[j] = fast_expf(l[j] - lse) * grad_scale;
            l[tgt] -= grad_scale;
        }
        /* summed in row order so the result does not depend on the thread count */
        for (int i = 0; i < nr; i++) {
            st.loss_sum += row_loss[i];
            st.n_correct += row_hit[i] != 0.0f;
            st.n_targets += targets[n0 + i] >= 0;
        }
        if (dx) {
            cpu_gemm(false, false, nr, C, V, 1.0f, logits, V, W, C, 0.0f, dx + (size_t)n0 * C, C);
            cpu_gemm(true, false, V, C, nr, 1.0f, logits, V, x + (size_t)n0 * C, C, 1.0f, dW, C);
        }
    }
    return st;
}
