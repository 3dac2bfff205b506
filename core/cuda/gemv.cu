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
//
// A linear_group folds into the launch the ops around a decode step's products, each of which was
// a launch of its own: the block's RMSNorm of x (each warp also sums its slice's squares, which
// meet like the products; x is scaled by the norm's weights as it is loaded and the sum by 1 / rms
// at the end), and an MLP's SwiGLU (its gate and up columns j and F + j side by side in a block,
// one thread writing silu(gate) up). Folding the SwiGLU into the down projection's loads instead
// was slower: each of its output columns computed all 2,048 of them again.
#include "cuda_ops.cuh"

enum { GEMV_WARPS = 8, GEMV_THREADS = 32 * GEMV_WARPS, GEMV_WARPS_WANTED = 4096 };

typedef struct {
    const void *w; /* fp32, or bf16 where the launch reads decode_weights' copy */
    float *y;
    int ldw, ldy;
    float beta;
    int half; /* a SwiGLU output's width F (its columns 2j, 2j + 1 are W's rows j, F + j); 0: none */
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

// four (or one) of x's elements as the products read them: under RMSNorm, their squares join sq
// and the norm's weights g scale them (the row's 1 / rms multiplies the dot product at the end)
template <bool NORM> __device__ __forceinline__ float4 input4(const float *row, int u, float4 g, float &sq) {
    float4 v = __ldg(reinterpret_cast<const float4 *>(row) + u);
    if (NORM) {
        sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        v = make_float4(v.x * g.x, v.y * g.y, v.z * g.z, v.w * g.w);
    }
    return v;
}
template <bool NORM> __device__ __forceinline__ float input1(const float *row, int k, float g, float &sq) {
    float v = __ldg(row + k);
    if (NORM) sq += v * v, v *= g;
    return v;
}

// norm_w: the RMSNorm's weights (NORM). pairs: some job has a SwiGLU output (the same for every
// block, so its barrier is reached by all threads or none).
template <bool VEC, bool BF16W, bool NORM>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(GemvJobs jobs, const float *__restrict__ x, int lda, int M,
                                                            int K, float alpha, int split, const float *norm_w,
                                                            float eps, bool pairs) {
    pdl_begin();
    __shared__ float part[GEMV_WARPS][GEMV_MAX_ROWS], squares[NORM ? GEMV_WARPS : 1][GEMV_MAX_ROWS];
    __shared__ float sums[GEMV_WARPS][GEMV_MAX_ROWS]; /* per column of the block, for SwiGLU's pairs */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, slice = warp % split, col_in_block = warp / split;
    const int col = blockIdx.x * (GEMV_WARPS / split) + col_in_block;
    const bool live = col < jobs.first[jobs.n];
    int j = 0;
    while (live && col >= jobs.first[j + 1]) j++;
    const GemvJob job = jobs.job[j];
    const int n = col - jobs.first[j], row = job.half ? (n >> 1) + (n & 1) * job.half : n;
    float acc[GEMV_MAX_ROWS], sq[GEMV_MAX_ROWS];
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++) acc[m] = sq[m] = 0.0f;
    if (live) {
        const void *w = reinterpret_cast<const char *>(job.w) + (size_t)row * job.ldw * (BF16W ? 2 : 4);
        const int unit = VEC ? 4 : 1, units = K / unit, per = (units + split - 1) / split;
        const int u0 = slice * per, u1 = min(units, u0 + per);
#pragma unroll 4
        for (int u = u0 + lane; u < u1; u += 32) {
            if (VEC) {
                float4 wv = weights4<BF16W>(w, u), g = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                if (NORM) g = __ldg(reinterpret_cast<const float4 *>(norm_w) + u);
#pragma unroll
                for (int m = 0; m < GEMV_MAX_ROWS; m++) {
                    if (m >= M) break;
                    float4 xv = input4<NORM>(x + (size_t)m * lda, u, g, sq[m]);
                    acc[m] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
                }
            } else {
                float wk = weight1<BF16W>(w, u), g = NORM ? __ldg(norm_w + u) : 1.0f;
#pragma unroll
                for (int m = 0; m < GEMV_MAX_ROWS; m++) {
                    if (m >= M) break;
                    acc[m] += wk * input1<NORM>(x + (size_t)m * lda, u, g, sq[m]);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < GEMV_MAX_ROWS; m++) {
        if (m >= M) break;
        float s = warp_sum(acc[m]);
        if (lane == 0) part[warp][m] = s;
        if (NORM) {
            float q = warp_sum(sq[m]);
            if (lane == 0) squares[warp][m] = q;
        }
    }
    __syncthreads();
    const bool writer = live && slice == 0 && lane < M; /* a column's row m: lane m of its first warp */
    const int m = lane;
    float s = 0.0f, q = 0.0f;
    if (writer) {
        for (int i = 0; i < split; i++) {
            s += part[warp + i][m];
            if (NORM) q += squares[warp + i][m];
        }
        if (NORM && K > 0) s *= rsqrtf(q / K + eps);
        s *= alpha;
    }
    if (pairs) {
        if (writer) sums[col_in_block][m] = s;
        __syncthreads();
        if (job.half && writer && !(n & 1)) /* the gate column writes; its up column is the next */
            job.y[(size_t)m * job.ldy + (n >> 1)] = swiglu_of(s, sums[col_in_block + 1][m]);
        if (job.half) return;
    }
    if (!writer) return;
    float *y = job.y + (size_t)m * job.ldy + n;
    *y = job.beta == 0.0f ? s : s + job.beta * *y; /* beta 0 reads nothing, as BLAS */
}

static bool aligned(const void *p, size_t bytes) { return (size_t)p % bytes == 0; }

// decode_weights' bf16 copies: the model's parameter buffer, then any weights a mixer derives from
// it (MLA's absorbed ones, one a layer); whether products read them now
typedef struct {
    const float *from;
    size_t n;
    __nv_bfloat16 *copy;
} WeightCopy;
static WeightCopy *copies;
static int n_copies, cap_copies;
static bool copy_in_use;

static void forget_copies(void) {
    for (int i = 0; i < n_copies; i++) backend_cuda()->release(copies[i].copy); /* allocated in the memory ledger */
    n_copies = 0;
}

extern "C" void cuda_decode_weights(const float *w, size_t n, bool convert) {
    if (!convert) {
        copy_in_use = w && n_copies && w == copies[0].from && n == copies[0].n && cuda_tensor_cores();
        return;
    }
    copy_in_use = false;
    if (!w) { /* a new decode: forget the last one's */
        forget_copies();
        return;
    }
    if (!n || !cuda_tensor_cores()) return; /* the fp32 mode reads the fp32 weights */
    for (int i = 0; i < n_copies; i++) /* a copy made again without forgetting the last decode's */
        if (w < copies[i].from + copies[i].n && copies[i].from < w + n)
            die("internal: decode weights copied twice (forget the last decode's first)");
    if (n_copies == cap_copies) {
        cap_copies = cap_copies ? 2 * cap_copies : 16;
        copies = (WeightCopy *)xrealloc(copies, sizeof(WeightCopy) * (size_t)cap_copies);
    }
    __nv_bfloat16 *copy = (__nv_bfloat16 *)backend_cuda()->alloc(sizeof(__nv_bfloat16) * n);
    cuda_to_bf16_flat(copy, w, n);
    copies[n_copies++] = WeightCopy{w, n, copy};
}

// the bf16 copy of fp32 weights at w, where a decode step's products read it (else NULL)
static const __nv_bfloat16 *copy_of(const void *w) {
    const float *p = (const float *)w;
    if (!copy_in_use) return NULL;
    for (int i = 0; i < n_copies; i++)
        if (p >= copies[i].from && p < copies[i].from + copies[i].n) return copies[i].copy + (p - copies[i].from);
    return NULL;
}

// the products of jobs over x's M rows (K of them read), RMSNorm'd with norm unless it is NULL
static void launch_gemv(GemvJobs jobs, const float *x, int lda, int M, int K, float alpha, const RowNorm *norm) {
    bool bf16w = true, pairs = false; /* every product's weights in the copy, or none read it */
    for (int j = 0; j < jobs.n; j++) bf16w = bf16w && copy_of(jobs.job[j].w), pairs = pairs || jobs.job[j].half;
    if (bf16w)
        for (int j = 0; j < jobs.n; j++) jobs.job[j].w = copy_of(jobs.job[j].w);
    const float *norm_w = norm ? norm->w : NULL;
    float eps = norm ? norm->eps : 0.0f;
    bool vec = aligned(x, 16) && lda % 4 == 0 && K % 4 == 0 && (!norm_w || aligned(norm_w, 16));
    for (int j = 0; j < jobs.n; j++) vec = vec && aligned(jobs.job[j].w, bf16w ? 8 : 16) && jobs.job[j].ldw % 4 == 0;
    /* slices of at least a 16-byte load a lane, as many as bring the warps up to GEMV_WARPS_WANTED;
     * at most 4 where SwiGLU pairs (2 columns) share a block */
    int cols = jobs.first[jobs.n], split = 1, max_split = pairs ? GEMV_WARPS / 2 : GEMV_WARPS;
    while (split < max_split && (long)cols * split < GEMV_WARPS_WANTED && K / (2 * split) >= 128) split *= 2;
    int per_block = GEMV_WARPS / split;
    unsigned blocks = (unsigned)((cols + per_block - 1) / per_block);
    auto kernel = norm_w ? (bf16w ? (vec ? gemv_kernel<true, true, true> : gemv_kernel<false, true, true>)
                                  : (vec ? gemv_kernel<true, false, true> : gemv_kernel<false, false, true>))
                         : (bf16w ? (vec ? gemv_kernel<true, true, false> : gemv_kernel<false, true, false>)
                                  : (vec ? gemv_kernel<true, false, false> : gemv_kernel<false, false, false>));
    pdl_launch(kernel, blocks, GEMV_THREADS, 0, jobs, x, lda, M, K, alpha, split, norm_w, eps, pairs);
    CUDA_LAUNCHED();
}

void cuda_gemv(int M, int N, int K, float alpha, const float *x, int lda, const float *w, int ldw, float beta, float *y,
               int ldy) {
    GemvJobs jobs;
    jobs.job[0] = GemvJob{w, y, ldw, ldy, beta, 0};
    jobs.first[0] = 0;
    jobs.first[1] = N;
    jobs.n = 1;
    launch_gemv(jobs, x, lda, M, K, alpha, NULL);
}

// Many rows: the norm into a buffer of the backend's, then cuBLAS's products, a SwiGLU output's
// through the buffer too and then the SwiGLU kernel, as the ops ran before they were folded. The
// few-row kernel 8 rows at a time would read every weight N / 8 times (MLA's step at 1K for 64
// sequences took 3.8 ms that way against 1.8 on an H200). The buffer grows on the first step of
// a decode, which runs eagerly; a step being recorded as a graph never grows it.
static float *wide_space;
static size_t wide_cap;

static void linear_group_wide(const float *x, const RowNorm *norm, int N, int in, int n, const LinearOut *outs) {
    size_t normed = norm ? (size_t)N * in + (size_t)N : 0, widest = 0; /* the norm's rows and rstd; a SwiGLU input */
    for (int i = 0; i < n; i++)
        if (outs[i].op == LINEAR_SWIGLU && (size_t)N * outs[i].out > widest) widest = (size_t)N * outs[i].out;
    size_t need = normed + widest;
    if (need > wide_cap) {
        if (cuda_capture_refuses()) return;
        const Backend *be = backend_cuda(); /* its allocations are in the memory ledger */
        if (wide_space) be->release(wide_space);
        wide_space = (float *)be->alloc(sizeof(float) * need);
        wide_cap = need;
    }
    if (norm) {
        cuda_rmsnorm_forward(wide_space, wide_space + (size_t)N * in, x, norm->w, N, in, norm->eps);
        x = wide_space;
    }
    /* the products on bf16 operands round x once between them (a delta layer's q, k, v and gates,
     * MLA's queries and latent), each otherwise the product cuda_gemm makes alone */
    bool converts[LINEAR_GROUP_MAX];
    int converting = 0;
    size_t widest_w = 0;
    for (int i = 0; i < n; i++) {
        converts[i] = outs[i].out > 0 && cuda_gemm_converts(N, outs[i].out, in);
        if (!converts[i]) continue;
        converting++;
        if ((size_t)outs[i].out * in > widest_w) widest_w = (size_t)outs[i].out * in;
    }
    const __nv_bfloat16 *x16 = NULL;
    if (converting > 1 && !cuda_held(x, (size_t)N * in)) { /* a held x has its copy: each cuda_gemm reads it */
        if (cuda_capture_refuses()) return; /* the operand space may grow, as in cuda_gemm */
        x16 = cuda_bf16_input(x, N, in, widest_w);
    }
    for (int i = 0; i < n; i++) {
        const LinearOut *o = &outs[i];
        bool swiglu = o->op == LINEAR_SWIGLU;
        float *y = swiglu ? wide_space + normed : o->y; /* a SwiGLU output's product into the buffer first */
        float beta = o->op == LINEAR_ADD ? 1.0f : 0.0f;
        if (x16 && converts[i])
            cuda_gemm_bf16_input(x16, N, o->out, in, o->w, beta, y, o->out);
        else
            cuda_gemm(false, true, N, o->out, in, 1.0f, x, in, o->w, in, beta, y, o->out);
        if (swiglu) cuda_swiglu_forward(o->y, wide_space + normed, N, o->out / 2);
    }
}

// Few rows: one launch for the group, the norm and SwiGLU outputs folded in; many: apart.
extern "C" void cuda_linear_group(const float *x, const RowNorm *norm, int N, int in, int n, const LinearOut *outs) {
    if (n < 0 || n > LINEAR_GROUP_MAX) die("linear_group: %d products, at most %d", n, LINEAR_GROUP_MAX);
    for (int i = 0; i < n; i++)
        if (outs[i].op == LINEAR_SWIGLU && outs[i].out % 2)
            die("linear_group: a SwiGLU output of %d columns (gate and up halves: even)", outs[i].out);
    if (N <= 0) return;
    if (N > GEMV_MAX_ROWS || in <= 0) {
        linear_group_wide(x, norm, N, in, n, outs);
        return;
    }
    GemvJobs jobs;
    jobs.first[0] = 0;
    jobs.n = 0;
    /* SwiGLU outputs first: their even widths keep every pair inside a block */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            const LinearOut *o = &outs[i];
            bool pair = o->op == LINEAR_SWIGLU;
            if (o->out <= 0 || pair != (pass == 0)) continue;
            int ldy = pair ? o->out / 2 : o->out;
            jobs.job[jobs.n] = GemvJob{o->w, o->y, in, ldy, o->op == LINEAR_ADD ? 1.0f : 0.0f, pair ? o->out / 2 : 0};
            jobs.first[jobs.n + 1] = jobs.first[jobs.n] + o->out;
            jobs.n++;
        }
    if (jobs.n) launch_gemv(jobs, x, in, N, in, 1.0f, norm);
}
