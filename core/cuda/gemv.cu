// Products of a few rows (a decode step's tokens) with a weight matrix: y = alpha x W^T + beta y,
// x [M, K] with M <= GEMV_MAX_ROWS, W [N, K]. At one token every projection is a launch's worth
// of work (768 x 768 weights are 2.4 MB, under a microsecond of the H200's bandwidth), so what
// counts is launches: cuBLAS spends one on a wide output and two (a dot kernel and a reduction)
// on a narrow one, and a linear_group of several projections of one input takes one here.
//
// Each output column is a dot product of W's row with every x row. Its K columns are cut into
// `split` slices, a warp each (8 / split columns a block of 8 warps), so that a step has enough
// loads in flight to approach the memory's bandwidth: a warp a column gave 768 warps for a 768 x
// 768 matrix, under 6 an SM, and the MLP's down projection (K 2048) took 10 us on an H200 for
// 6.3 MB. A warp's lanes read its slice side by side (16-byte loads where the rows allow); the
// slices' sums meet in shared memory and one thread adds them in slice order (deterministic).
// x is read through the cache by every warp (M x K floats, a few KiB at decode). Full fp32
// arithmetic in both matmul modes.
#include "cuda_ops.cuh"

enum { GEMV_WARPS = 8, GEMV_THREADS = 32 * GEMV_WARPS, GEMV_WARPS_WANTED = 4096 };

typedef struct {
    const float *w;
    float *y;
    int ldw, ldy;
    float beta;
} GemvJob;

// a launch's products: job j owns output columns [first[j], first[j + 1]) of the launch
typedef struct {
    GemvJob job[LINEAR_GROUP_MAX];
    int first[LINEAR_GROUP_MAX + 1];
    int n;
} GemvJobs;

template <bool VEC>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(GemvJobs jobs, const float *__restrict__ x, int lda, int M,
                                                            int K, float alpha, int split) {
    pdl_begin();
    __shared__ float part[GEMV_WARPS][GEMV_MAX_ROWS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, slice = warp % split;
    const int col = blockIdx.x * (GEMV_WARPS / split) + warp / split;
    const bool live = col < jobs.first[jobs.n];
    int j = 0;
    while (live && col >= jobs.first[j + 1]) j++;
    const GemvJob job = jobs.job[j];
    const int n = col - jobs.first[j];
    float acc[GEMV_MAX_ROWS];
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++) acc[m] = 0.0f;
    if (live) {
        const float *w = job.w + (size_t)n * job.ldw;
        const int unit = VEC ? 4 : 1, units = K / unit, per = (units + split - 1) / split;
        const int u0 = slice * per, u1 = min(units, u0 + per);
#pragma unroll 4
        for (int u = u0 + lane; u < u1; u += 32) {
            if (VEC) {
                float4 wv = __ldg(reinterpret_cast<const float4 *>(w) + u);
#pragma unroll
                for (int m = 0; m < GEMV_MAX_ROWS; m++) {
                    if (m >= M) break;
                    float4 xv = __ldg(reinterpret_cast<const float4 *>(x + (size_t)m * lda) + u);
                    acc[m] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
                }
            } else {
                float wk = __ldg(w + u);
#pragma unroll
                for (int m = 0; m < GEMV_MAX_ROWS; m++) {
                    if (m >= M) break;
                    acc[m] += wk * __ldg(x + (size_t)m * lda + u);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++) {
        if (m >= M) break;
        float s = warp_sum(acc[m]);
        if (lane == 0) part[warp][m] = s;
    }
    __syncthreads();
    if (!live || slice != 0 || lane >= M) return;
    const int m = lane;
    float s = 0.0f;
    for (int i = 0; i < split; i++) s += part[warp + i][m];
    float *y = job.y + (size_t)m * job.ldy + n;
    *y = job.beta == 0.0f ? alpha * s : alpha * s + job.beta * *y; /* beta 0 reads nothing, as BLAS */
}

static bool aligned16(const void *p) { return (size_t)p % 16 == 0; }

static void launch_gemv(const GemvJobs &jobs, const float *x, int lda, int M, int K, float alpha) {
    bool vec = aligned16(x) && lda % 4 == 0 && K % 4 == 0;
    for (int j = 0; j < jobs.n; j++) vec = vec && aligned16(jobs.job[j].w) && jobs.job[j].ldw % 4 == 0;
    /* slices of at least a 16-byte load a lane, as many as bring the warps up to GEMV_WARPS_WANTED */
    int cols = jobs.first[jobs.n], split = 1;
    while (split < GEMV_WARPS && (long)cols * split < GEMV_WARPS_WANTED && K / (2 * split) >= 128) split *= 2;
    int per_block = GEMV_WARPS / split;
    unsigned blocks = (unsigned)((cols + per_block - 1) / per_block);
    pdl_launch(vec ? gemv_kernel<true> : gemv_kernel<false>, blocks, GEMV_THREADS, 0, jobs, x, lda, M, K, alpha, split);
    CUDA_LAUNCHED();
}

void cuda_gemv(int M, int N, int K, float alpha, const float *x, int lda, const float *w, int ldw, float beta, float *y,
               int ldy) {
    GemvJobs jobs;
    jobs.job[0] = GemvJob{w, y, ldw, ldy, beta};
    jobs.first[0] = 0;
    jobs.first[1] = N;
    jobs.n = 1;
    launch_gemv(jobs, x, lda, M, K, alpha);
}

extern "C" void cuda_linear_group(const float *x, int N, int in, int n, const LinearOut *outs) {
    if (n < 0 || n > LINEAR_GROUP_MAX) die("linear_group: %d products, at most %d", n, LINEAR_GROUP_MAX);
    if (N > GEMV_MAX_ROWS || in <= 0) { /* a wide input: cuBLAS's products, one each */
        for (int i = 0; i < n; i++)
            cuda_gemm(false, true, N, outs[i].out, in, 1.0f, x, in, outs[i].w, in, outs[i].accumulate ? 1.0f : 0.0f,
                      outs[i].y, outs[i].out);
        return;
    }
    if (N <= 0) return;
    GemvJobs jobs;
    jobs.first[0] = 0;
    jobs.n = 0;
    for (int i = 0; i < n; i++) {
        if (outs[i].out <= 0) continue;
        jobs.job[jobs.n] = GemvJob{outs[i].w, outs[i].y, in, outs[i].out, outs[i].accumulate ? 1.0f : 0.0f};
        jobs.first[jobs.n + 1] = jobs.first[jobs.n] + outs[i].out;
        jobs.n++;
    }
    if (jobs.n) launch_gemv(jobs, x, in, N, in, 1.0f);
}
