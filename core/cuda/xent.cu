// The LM head fused with cross-entropy on the GPU: logits for a chunk of rows with cuBLAS, one
// block per row for the softmax, loss, argmax and the gradient of the logits (in place), then
// cuBLAS for dx and dW. The per-row losses are summed on the host in row order.
//
// Where the products into dx and dW take bf16 operands, the row kernel writes the gradient in bf16
// itself (the rounding those products' own conversions made, without their two passes over the
// logits): at MQAR's shape (vocabulary 8192, 16,384 rows, width 512) the two
// conversions and the row kernel's four reads of each row were about a third of a softmax model's
// kernel time.
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

// The row's logits are read from global memory once, into shared memory where the row fits (a
// block may ask for 227 KiB on an H100/H200: V up to 58,112), and the passes after read them there;
// a wider row is read from global memory at each pass. bf16_grad (only with a cached row, whose
// reads are all done before the first write) writes the gradient's bf16 values over the start of
// the row: packed, 2V bf16 values from one row's start to the next.
__global__ void xent_rows_kernel(float *logits, float *row_loss, float *row_hit, const int *targets, int V,
                                 float grad_scale, bool want_grad, bool cached, bool vec4, bool bf16_grad) {
    extern __shared__ float cached_row[];
    float *l = logits + (size_t)blockIdx.x * V;
    const float *row = cached ? cached_row : l;
    int tgt = targets[blockIdx.x];
    float mx = -INFINITY;
    if (cached && vec4) { /* 16-byte loads: V a multiple of 4 and the logits 16-byte aligned */
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            float4 v = reinterpret_cast<const float4 *>(l)[j];
            reinterpret_cast<float4 *>(cached_row)[j] = v;
            mx = fmaxf(mx, fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w)));
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float v = l[j];
            if (cached) cached_row[j] = v;
            mx = fmaxf(mx, v);
        }
    }
    mx = block_max(mx); /* its __syncthreads also orders the cached row's writes before the reads below */
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += __expf(row[j] - mx);
    sum = block_sum(sum);
    float lse = mx + logf(sum);
    /* argmax: the first index that reaches the maximum, as the CPU's loop takes it */
    __shared__ int arg;
    if (threadIdx.x == 0) arg = V;
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        if (row[j] == mx) atomicMin(&arg, j);
    __syncthreads();
    if (threadIdx.x == 0) {
        row_loss[blockIdx.x] = tgt >= 0 ? lse - row[tgt] : 0.0f;
        row_hit[blockIdx.x] = tgt >= 0 && arg == tgt;
    }
    __syncthreads(); /* row[tgt] is read above before it is overwritten below */
    if (!want_grad) return;
    __nv_bfloat16 *g16 = reinterpret_cast<__nv_bfloat16 *>(l);
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float p = tgt >= 0 ? __expf(row[j] - lse) * grad_scale : 0.0f;
        float g = j == tgt ? p - grad_scale : p;
        if (bf16_grad)
            g16[j] = __float2bfloat16_rn(g);
        else
            l[j] = g;
    }
}

extern "C" XentStats cuda_lm_head_xent(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                                       int C, int V, float grad_scale, float *work) {
    int R = chunk_rows(N, V);
    float *logits = work, *row_loss = work + (size_t)R * V, *row_hit = row_loss + N;
    size_t row_bytes = sizeof(float) * (size_t)V;
    bool cached = row_bytes <= cuda_smem_limits().per_block, vec4 = V % 4 == 0 && aligned16(logits);
    if (cached && row_bytes > 48 * 1024) cuda_allow_smem(xent_rows_kernel, row_bytes);
    for (int n0 = 0; n0 < N; n0 += R) {
        int nr = N - n0 < R ? N - n0 : R;
        /* the two backward products on bf16 operands, as cuda_linear_backward takes them */
        bool bf16_grad = dx && cached && cuda_gemm_converts(nr, C, V) && cuda_gemm_converts(V, C, nr);
        cuda_gemm(false, true, nr, V, C, 1.0f, x + (size_t)n0 * C, C, W, C, 0.0f, logits, V);
        xent_rows_kernel<<<nr, 256, cached ? row_bytes : 0>>>(logits, row_loss + n0, row_hit + n0, targets + n0, V,
                                                                grad_scale, dx != NULL, cached, vec4, bf16_grad);
        CUDA_LAUNCHED();
        if (bf16_grad) {
            const __nv_bfloat16 *g16 = reinterpret_cast<const __nv_bfloat16 *>(logits);
            cuda_gemm_bf16_a(false, false, nr, C, V, 1.0f, g16, 2 * V, W, C, 0.0f, dx + (size_t)n0 * C, C);
            cuda_gemm_bf16_a(true, false, V, C, nr, 1.0f, g16, 2 * V, x + (size_t)n0 * C, C, 1.0f, dW, C);
        } else if (dx) {
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
