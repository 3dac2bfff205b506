// The LM head fused with cross-entropy on the GPU: logits for a chunk of rows with cuBLAS, one
// block per row for the softmax, loss, argmax and the gradient of the logits (in place), then
// cuBLAS for dx and dW. The per-row losses are summed on the host in row order.
#include <math.h>

#include "cuda_common.cuh"
#include "cuda_ops.cuh"

static int chunk_rows(int N, int V) {
    long rows = (16L << 20) / (V > 0 ? V : 1);
    if (rows < 64) rows = 64;
    return rows < N ? (int)rows : N;
}

extern "C" size_t cuda_lm_head_xent_workspace(int N, int C, int V) {
    (void)C;
    size_t R = (size_t)chunk_rows(N, V);
    return sizeof(float) * (R * V + 2 * (size_t)N);
}

__global__ void xent_rows_kernel(float *logits, float *row_loss, float *row_hit, const int *targets, int V,
                                 float grad_scale, int want_grad) {
    float *l = logits + (size_t)blockIdx.x * V;
    int tgt = targets[blockIdx.x];
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += __expf(l[j] - mx);
    sum = block_sum(sum);
    float lse = mx + logf(sum);
    /* argmax: the first index that reaches the maximum, as the CPU's loop takes it */
    __shared__ int arg;
    if (threadIdx.x == 0) arg = V;
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        if (l[j] == mx) atomicMin(&arg, j);
    __syncthreads();
    if (threadIdx.x == 0) {
        row_loss[blockIdx.x] = tgt >= 0 ? lse - l[tgt] : 0.0f;
        row_hit[blockIdx.x] = tgt >= 0 && arg == tgt;
    }
    __syncthreads(); /* l[tgt] is read above before it is overwritten below */
    if (!want_grad) return;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float p = tgt >= 0 ? __expf(l[j] - lse) * grad_scale : 0.0f;
        l[j] = j == tgt ? p - grad_scale : p;
    }
}

extern "C" XentStats cuda_lm_head_xent(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                                       int C, int V, float grad_scale, float *work) {
    int R = chunk_rows(N, V);
    float *logits = work, *row_loss = work + (size_t)R * V, *row_hit = row_loss + N;
    for (int n0 = 0; n0 < N; n0 += R) {
        int nr = N - n0 < R ? N - n0 : R;
        cuda_gemm(false, true, nr, V, C, 1.0f, x + (size_t)n0 * C, C, W, C, 0.0f, logits, V);
        xent_rows_kernel<<<nr, 256>>>(logits, row_loss + n0, row_hit + n0, targets + n0, V, grad_scale, dx != NULL);
        CUDA_LAUNCHED();
        if (dx) {
            cuda_gemm(false, false, nr, C, V, 1.0f, logits, V, W, C, 0.0f, dx + (size_t)n0 * C, C);
            cuda_gemm(true, false, V, C, nr, 1.0f, logits, V, x + (size_t)n0 * C, C, 1.0f, dW, C);
        }
    }
    float *loss = (float *)xmalloc(sizeof(float) * 2 * (size_t)N);
    int *tg = (int *)xmalloc(sizeof(int) * (size_t)N);
    CUDA_CHECK(cudaMemcpy(loss, row_loss, sizeof(float) * 2 * (size_t)N, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(tg, targets, sizeof(int) * (size_t)N, cudaMemcpyDeviceToHost));
    XentStats st = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        st.loss_sum += loss[i];
        st.n_correct += loss[N + i] != 0.0f;
        st.n_targets += tg[i] >= 0;
    }
    free(loss);
    free(tg);
    return st;
}
