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
// x is read through the cache by every warp (M x K floats, a few KiB at decode). fp32
// arithmetic; the weights are fp32, or, in the tensor-core mode during a decode step, the bf16
// copy decode_weights made (the bf16 rounding the training forward's products apply too).
#include "cuda_ops.cuh"

enum { GEMV_WARPS = 8, GEMV_THREADS = 32 * GEMV_WARPS, GEMV_WARPS_WANTED = 4096 };

typedef struct {
    const void *w; /* fp32, or bf16 where the launch reads decode_weights' copy */
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

// four weights of a row from its u-th group of four (16 bytes of fp32, 8 of bf16), and one
template <bool BF16W> __device__ __forceinline__ float4 weights4(const void *row, int u) {
    if (!BF16W) return __ldg(reinterpret_cast<const float4 *>(row) + u);
    uint2 raw = __ldg(reinterpret_cast<const uint2 *>(row) + u);
    float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.x)),
           hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.y));
    return make_float4(lo.x, lo.y, hi.x, hi.y);
}
template <bool BF16W> __device__ __forceinline__ float weight1(const void *row, int k) {
    if (!BF16W) return __ldg(reinterpret_cast<const float *>(row) + k);
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(row)[k]);
}

template <bool VEC, bool BF16W>
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
        const void *w = reinterpret_cast<const char *>(job.w) + (size_t)n * job.ldw * (BF16W ? 2 : 4);
        const int unit = VEC ? 4 : 1, units = K / unit, per = (units + split - 1) / split;
        const int u0 = slice * per, u1 = min(units, u0 + per);
#pragma unroll 4
        for (int u = u0 + lane; u < u1; u += 32) {
            if (VEC) {
                float4 wv = weights4<BF16W>(w, u);
#pragma unroll
                for (int m = 0; m < GEMV_MAX_ROWS; m++) {
                    if (m >= M) break;
                    float4 xv = __ldg(reinterpret_cast<const float4 *>(x + (size_t)m * lda) + u);
                    acc[m] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
                }
            } else {
                float wk = weight1<BF16W>(w, u);
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

static bool aligned(const void *p, size_t bytes) { return (size_t)p % bytes == 0; }

// decode_weights' bf16 copy of the model's parameter buffer, and whether products read it now
static const float *copied_from;
static size_t copied_n, copy_cap;
static __nv_bfloat16 *weights_copy;
static bool copy_in_use;

extern "C" void cuda_decode_weights(const float *w, size_t n, bool convert) {
    if (!convert) {
        copy_in_use = w && w == copied_from && n == copied_n && cuda_tensor_cores();
        return;
    }
    copy_in_use = false;
    copied_from = NULL;
    if (!w || !n || !cuda_tensor_cores()) return; /* the fp32 mode reads the fp32 weights */
    if (n > copy_cap) {
        const Backend *be = backend_cuda(); /* its allocations are in the memory ledger */
        if (weights_copy) be->release(weights_copy);
        weights_copy = (__nv_bfloat16 *)be->alloc(sizeof(__nv_bfloat16) * n);
        copy_cap = n;
    }
    const size_t row = 1 << 20, rows = n / row, rest = n - rows * row; /* rows of a million */
    if (rows) cuda_to_bf16(weights_copy, w, (int)rows, (int)row, (long)row);
    if (rest) cuda_to_bf16(weights_copy + rows * row, w + rows * row, 1, (int)rest, (long)rest);
    copied_from = w;
    copied_n = n;
}

// the bf16 copy of fp32 weights at w, where a decode step's products read it (else NULL)
static const __nv_bfloat16 *copy_of(const void *w) {
    const float *p = (const float *)w;
    if (!copy_in_use || p < copied_from || p >= copied_from + copied_n) return NULL;
    return weights_copy + (p - copied_from);
}

static void launch_gemv(GemvJobs jobs, const float *x, int lda, int M, int K, float alpha) {
    bool bf16w = true; /* every product's weights in the copy, or none read it */
    for (int j = 0; j < jobs.n; j++) bf16w = bf16w && copy_of(jobs.job[j].w);
    if (bf16w)
        for (int j = 0; j < jobs.n; j++) jobs.job[j].w = copy_of(jobs.job[j].w);
    bool vec = aligned(x, 16) && lda % 4 == 0 && K % 4 == 0;
    for (int j = 0; j < jobs.n; j++) vec = vec && aligned(jobs.job[j].w, bf16w ? 8 : 16) && jobs.job[j].ldw % 4 == 0;
    /* slices of at least a 16-byte load a lane, as many as bring the warps up to GEMV_WARPS_WANTED */
    int cols = jobs.first[jobs.n], split = 1;
    while (split < GEMV_WARPS && (long)cols * split < GEMV_WARPS_WANTED && K / (2 * split) >= 128) split *= 2;
    int per_block = GEMV_WARPS / split;
    unsigned blocks = (unsigned)((cols + per_block - 1) / per_block);
    auto kernel = bf16w ? (vec ? gemv_kernel<true, true> : gemv_kernel<false, true>)
                        : (vec ? gemv_kernel<true, false> : gemv_kernel<false, false>);
    pdl_launch(kernel, blocks, GEMV_THREADS, 0, jobs, x, lda, M, K, alpha, split);
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
