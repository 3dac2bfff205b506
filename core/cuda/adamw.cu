// AdamW on the GPU (fp32 weights and moments) and the squared norm for gradient clipping, summed
// in double over fixed blocks and then in order, so that it does not depend on scheduling.
#include <math.h>

#include "cuda_common.cuh"
#include "cuda_ops.cuh"

__global__ void adamw_kernel(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float weight_decay, float grad_scale, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + weight_decay * w[i]);
}

extern "C" void cuda_adamw(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                           float eps, float weight_decay, float grad_scale, int step) {
    if (!n) return;
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    adamw_kernel<<<grid_for(n, 256), 256>>>(w, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    CUDA_LAUNCHED();
}

enum { SQ_BLOCKS = 1024, SQ_THREADS = 256 };

// each block sums a fixed stride of the vector in double; the host adds the blocks in order
__global__ void sum_squares_kernel(double *partial, const float *x, size_t n) {
    __shared__ double s[SQ_THREADS];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * SQ_THREADS + threadIdx.x; i < n; i += (size_t)SQ_BLOCKS * SQ_THREADS)
        acc += (double)x[i] * x[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int o = SQ_THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

extern "C" double cuda_sum_squares(const float *x, size_t n) {
    static double *partial;
    if (!partial) CUDA_CHECK(cudaMalloc(&partial, sizeof(double) * SQ_BLOCKS)); /* once per process */
    sum_squares_kernel<<<SQ_BLOCKS, SQ_THREADS>>>(partial, x, n);
    CUDA_LAUNCHED();
    double host[SQ_BLOCKS], total = 0.0;
    CUDA_CHECK(cudaMemcpy(host, partial, sizeof host, cudaMemcpyDeviceToHost));
    for (int b = 0; b < SQ_BLOCKS; b++) total += host[b];
    return total;
}
