// Chunk layout shared by the GPU's linear-time cores. Inputs in the public layout [B, T, H, X] are
// copied to [B, H, Tp, X] with Tp = n_chunks * C (zero rows past T, which leave every state
// unchanged), so that chunk z = (b H + h) n_chunks + c is the C x X matrix at z C X: one stride,
// so every chunk's products are one strided-batched matmul. Also the kernels that the chunked
// delta rule (delta_rule.cu) and dplr (dplr.cu) share: the unit-triangular inverse of a chunk and
// the gradient of a chunk's end decay through the state.
#pragma once
#include "chunk_dims.cuh"
#include "chunk_state.cuh"
#include "cuda_common.cuh"

// dies, naming the core, unless its chunked form can run: chunks of at most 128 tokens, smem bytes
// (the core's largest per-chunk kernel) within 220 KiB, and the state recurrence's tiles fitting
static inline void check_chunk_fits(const ScanShape *s, size_t smem, const char *core) {
    if (s->chunk > 128) die("GPU %s: chunk_size %d exceeds 128", core, s->chunk);
    if (smem > 220 * 1024)
        die("GPU %s: chunk_size %d with key dimension %d does not fit in shared memory", core, s->chunk, s->K);
    ChunkState probe = {nullptr, nullptr, nullptr, 1, 1, s->chunk, s->K, s->V};
    chunk_state_check(probe);
}

static __global__ void to_chunks_kernel(float *dst, const float *src, int B, int T, int H, int X, int Tp) {
    size_t n = (size_t)B * H * Tp * X;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int x = (int)(i % X);
        size_t rest = i / X;
        int t = (int)(rest % Tp);
        size_t bh = rest / Tp;
        int h = (int)(bh % H), b = (int)(bh / H);
        dst[i] = t < T ? src[(((size_t)b * T + t) * H + h) * X + x] : 0.0f;
    }
}

static __global__ void from_chunks_kernel(float *dst, const float *src, int B, int T, int H, int X, int Tp) {
    size_t n = (size_t)B * T * H * X;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int x = (int)(i % X);
        size_t rest = i / X;
        int h = (int)(rest % H);
        size_t bt = rest / H;
        int t = (int)(bt % T), b = (int)(bt / T);
        dst[i] = src[(((size_t)b * H + h) * Tp + t) * X + x];
    }
}

// The same copies four floats a thread, with 32-bit index arithmetic: the per-float kernels above
// divide 64-bit indices for every float and ran at about 1.6 TB/s on an H200 (ncu, fa71a06: 62 us a
// call for 16,384 rows of 768, 9.5 ms of the 3:1 hybrid's training step). For X a multiple of 4,
// 16-byte aligned buffers and fewer than 2^31 float4s; the others take the kernels above.
static __global__ void to_chunks4_kernel(float4 *dst, const float4 *src, int B, int T, int H, int X4, int Tp) {
    unsigned n = (unsigned)B * H * Tp * X4;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned x = i % X4, rest = i / X4, t = rest % Tp, bh = rest / Tp, h = bh % H, b = bh / H;
        dst[i] = t < (unsigned)T ? src[(((size_t)b * T + t) * H + h) * X4 + x] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

static __global__ void from_chunks4_kernel(float4 *dst, const float4 *src, int B, int T, int H, int X4, int Tp) {
    unsigned n = (unsigned)B * T * H * X4;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned x = i % X4, rest = i / X4, h = rest % H, bt = rest / H, t = bt % T, b = bt / T;
        dst[i] = src[(((size_t)b * H + h) * Tp + t) * X4 + x];
    }
}

static inline bool chunks_vec4(const float *dst, const float *src, const ChunkDims &d, int X) {
    return X % 4 == 0 && ((size_t)dst | (size_t)src) % 16 == 0 && (size_t)d.B * d.H * d.Tp * (X / 4) < (1u << 31);
}

static inline void to_chunks(float *dst, const float *src, const ChunkDims &d, int X) {
    if (chunks_vec4(dst, src, d, X))
        to_chunks4_kernel<<<grid_for((size_t)d.B * d.H * d.Tp * X / 4, 256), 256>>>((float4 *)dst, (const float4 *)src, d.B,
                                                                                    d.T, d.H, X / 4, d.Tp);
    else to_chunks_kernel<<<grid_for((size_t)d.B * d.H * d.Tp * X, 256), 256>>>(dst, src, d.B, d.T, d.H, X, d.Tp);
    CUDA_LAUNCHED();
}

static inline void from_chunks(float *dst, const float *src, const ChunkDims &d, int X) {
    if (chunks_vec4(dst, src, d, X))
        from_chunks4_kernel<<<grid_for((size_t)d.B * d.T * d.H * X / 4, 256), 256>>>((float4 *)dst, (const float4 *)src,
                                                                                      d.B, d.T, d.H, X / 4, d.Tp);
    else from_chunks_kernel<<<grid_for((size_t)d.B * d.T * d.H * X, 256), 256>>>(dst, src, d.B, d.T, d.H, X, d.Tp);
    CUDA_LAUNCHED();
}

// Zeroes the strictly upper (or, with strict, the upper and the diagonal) part of Z C x C matrices.
static __global__ void mask_upper_kernel(float *P, long Z, int C, int strict) {
    size_t n = (size_t)Z * C * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(i % C), r = (int)((i / C) % C);
        if (j > r || (strict && j == r)) P[i] = 0.0f;
    }
}

static inline void mask_upper(float *P, const ChunkDims &d, bool strict) {
    mask_upper_kernel<<<grid_for((size_t)d.Z * d.C * d.C, 256), 256>>>(P, d.Z, d.C, strict);
    CUDA_LAUNCHED();
}

/* Bump allocation of a workspace: each piece rounded to 256 bytes. */
struct Carve {
    char *base;
    size_t used;
    float *take(size_t floats) {
        float *p = (float *)(base + used);
        used += (sizeof(float) * floats + 255) / 256 * 256;
        return p;
    }
};

// A chunked core's buffers from three lists of F(name, floats), the floats in terms of the chunk
// count Z, the chunk size C, K, V and rows = Z C: WORK
// (forward and backward, in `work`), BACKWARD (the backward's alone, after them) and SAVED (what
// the backward needs of the forward, in `saved`). Defines struct Bufs with a float * per name,
// saved_floats(s), carve_saved(s, saved, b) and carve_work(s, work, b, backward), which returns the
// bytes taken (the pieces are Carve's, 256-byte aligned), and the entry points' core_saved_floats(s)
// and core_workspace(s).
#define CHUNK_BUF_SIZES(s)                                                                                            \
    const ChunkDims d = chunk_dims(s);                                                                                \
    [[maybe_unused]] const size_t Z = (size_t)d.Z, C = (size_t)d.C, K = (s)->K, V = (s)->V, rows = Z * C
#define CHUNK_BUF_DECLARE(name, floats) float *name;
#define CHUNK_BUF_COUNT(name, floats) total += floats;
#define CHUNK_BUF_TAKE(name, floats) b->name = c.take(floats);
#define CHUNK_BUFFERS(Bufs, WORK, BACKWARD, SAVED)                                                                    \
    struct Bufs {                                                                                                     \
        WORK(CHUNK_BUF_DECLARE) BACKWARD(CHUNK_BUF_DECLARE) SAVED(CHUNK_BUF_DECLARE)                                  \
    };                                                                                                                \
    static size_t saved_floats(const ScanShape *s) {                                                                  \
        CHUNK_BUF_SIZES(s);                                                                                           \
        size_t total = 8 * 64; /* room for rounding each piece up to 256 bytes */                                     \
        SAVED(CHUNK_BUF_COUNT)                                                                                        \
        return total;                                                                                                 \
    }                                                                                                                 \
    static void carve_saved(const ScanShape *s, float *saved, Bufs *b) {                                              \
        CHUNK_BUF_SIZES(s);                                                                                           \
        Carve c{(char *)saved, 0};                                                                                    \
        SAVED(CHUNK_BUF_TAKE)                                                                                         \
    }                                                                                                                 \
    static size_t carve_work(const ScanShape *s, float *work, Bufs *b, bool backward) {                               \
        CHUNK_BUF_SIZES(s);                                                                                           \
        Carve c{(char *)work, 0};                                                                                     \
        WORK(CHUNK_BUF_TAKE)                                                                                          \
        if (backward) {                                                                                               \
            BACKWARD(CHUNK_BUF_TAKE)                                                                                  \
        }                                                                                                             \
        return c.used;                                                                                                \
    }                                                                                                                 \
    /* the core's saved floats: the chunks' SAVED, or the recurrent form's every token's start state */               \
    static size_t core_saved_floats(const ScanShape *s) {                                                             \
        return s->chunk ? saved_floats(s) : (size_t)s->B * s->H * s->T * s->K * s->V;                                \
    }                                                                                                                 \
    /* its workspace bytes (the recurrent form needs none): WORK, then either the backward's own buffers or, for a    \
     * forward without `saved`, room for SAVED; never both, so they share the bytes after WORK */                     \
    static size_t core_workspace(const ScanShape *s) {                                                                \
        if (!s->chunk) return 256;                                                                                    \
        Bufs b;                                                                                                       \
        size_t backward = carve_work(s, NULL, &b, true),                                                              \
               forward_alone = carve_work(s, NULL, &b, false) + sizeof(float) * saved_floats(s);                      \
        return (backward > forward_alone ? backward : forward_alone) + 4096;                                          \
    }

// X = L^-1 for L = I + sign diag(beta) A (beta NULL: ones) with A strictly lower triangular, one
// block per chunk, thread c computing column c by forward substitution (it reads only its own
// column: no barrier). The delta rule's L is I + diag(beta) A', dplr's I - P_ab.
static __global__ void unit_lower_inverse_kernel(float *X, const float *A, const float *beta, float sign, int C) {
    extern __shared__ float sm[];
    const int p = C + 1;
    float *Ls = sm, *Xs = Ls + C * p;
    size_t z = blockIdx.x;
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int r = e / C, j = e % C;
        Ls[r * p + j] = sign * (beta ? beta[z * C + r] : 1.0f) * A[z * C * C + e];
    }
    __syncthreads();
    int c = threadIdx.x;
    if (c < C) {
        for (int r = 0; r < C; r++) {
            float x = r == c ? 1.0f : 0.0f;
            for (int j = c; j < r; j++) x -= Ls[r * p + j] * Xs[j * p + c];
            Xs[r * p + c] = x;
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) X[z * C * C + e] = Xs[(e / C) * p + e % C];
}

// The same inverse by 16-row blocks, for chunks a multiple of 16: each diagonal block's inverse by
// forward substitution (a thread a column, in registers: chains of 16 instead of C), then block row
// by block row X_ij = -X_ii sum_{k=j}^{i-1} L_ik X_kj for every j < i at once. With Xb (and beta),
// also Xb = X diag(beta). (The thread-per-column kernel above waits on C-long chains of dependent
// loads: 0.28 ms a layer of the 3:1 hybrid's training on an H200.)
constexpr int INV_BLOCK = 16;
static __global__ void __launch_bounds__(256) unit_lower_inverse_blocks_kernel(float *X, float *Xb, const float *A,
                                                                               const float *beta, float sign, int C) {
    extern __shared__ float sm[];
    const int p = C + 1, nb = C / INV_BLOCK, tp = INV_BLOCK + 1;
    float *Ls = sm, *Xs = Ls + C * p, *Ts = Xs + C * p; /* Ts: a 16 x 16 tile for each j < i */
    const size_t z = blockIdx.x;
    const float *bz = beta ? beta + z * C : nullptr;
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int r = e / C, j = e % C;
        Ls[r * p + j] = sign * (bz ? bz[r] : 1.0f) * A[z * C * C + e];
    }
    __syncthreads();
    if (threadIdx.x < C) { /* column c of diagonal block blk, zeros above its diagonal included */
        const int r0 = threadIdx.x / INV_BLOCK * INV_BLOCK, c = threadIdx.x % INV_BLOCK;
        float x[INV_BLOCK];
#pragma unroll
        for (int r = 0; r < INV_BLOCK; r++) {
            float v = r == c ? 1.0f : 0.0f;
#pragma unroll
            for (int j = 0; j < r; j++) v -= Ls[(r0 + r) * p + r0 + j] * x[j];
            x[r] = v;
        }
#pragma unroll
        for (int r = 0; r < INV_BLOCK; r++) Xs[(r0 + r) * p + r0 + c] = x[r];
    }
    __syncthreads();
    for (int i = 1; i < nb; i++) {
        const int ri = INV_BLOCK * i;
        for (int e = threadIdx.x; e < i * INV_BLOCK * INV_BLOCK; e += blockDim.x) { /* T_j = sum_k L_ik X_kj */
            int j = e / (INV_BLOCK * INV_BLOCK), a = e / INV_BLOCK % INV_BLOCK, b = e % INV_BLOCK;
            float acc = 0.0f;
            for (int m = INV_BLOCK * j; m < ri; m++) acc += Ls[(ri + a) * p + m] * Xs[m * p + INV_BLOCK * j + b];
            Ts[(j * INV_BLOCK + a) * tp + b] = acc;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < i * INV_BLOCK * INV_BLOCK; e += blockDim.x) { /* X_ij = -X_ii T_j */
            int j = e / (INV_BLOCK * INV_BLOCK), a = e / INV_BLOCK % INV_BLOCK, b = e % INV_BLOCK;
            float acc = 0.0f;
#pragma unroll
            for (int m = 0; m < INV_BLOCK; m++) acc += Xs[(ri + a) * p + ri + m] * Ts[(j * INV_BLOCK + m) * tp + b];
            Xs[(ri + a) * p + INV_BLOCK * j + b] = -acc;
        }
        __syncthreads();
    }
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int r = e / C, c = e % C;
        float x = c <= r ? Xs[r * p + c] : 0.0f;
        X[z * C * C + e] = x;
        if (Xb) Xb[z * C * C + e] = x * bz[c];
    }
}

// Xb = X diag(beta) for Z C x C matrices
static __global__ void scale_columns_kernel(float *Xb, const float *X, const float *beta, long Z, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)Z * C * C) Xb[i] = X[i] * beta[i / ((size_t)C * C) * C + i % C];
}

// X = (I + sign diag(beta) A)^-1 for Z chunks (beta NULL: ones), and with Xb (and beta) Xb = X diag(beta)
static inline void unit_lower_inverse(float *X, float *Xb, const float *A, const float *beta, float sign, long Z, int C) {
    if (Xb && !beta) die("unit_lower_inverse: Xb = X diag(beta) asked for without beta");
    if (C % INV_BLOCK == 0) {
        size_t smem = sizeof(float) * (2 * (size_t)C * (C + 1) + (size_t)(C / INV_BLOCK) * INV_BLOCK * (INV_BLOCK + 1));
        CUDA_CHECK(cudaFuncSetAttribute(unit_lower_inverse_blocks_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
        unit_lower_inverse_blocks_kernel<<<(unsigned)Z, 256, smem>>>(X, Xb, A, beta, sign, C);
        CUDA_LAUNCHED();
        return;
    }
    size_t smem = sizeof(float) * 2 * (size_t)C * (C + 1);
    CUDA_CHECK(cudaFuncSetAttribute(unit_lower_inverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    unit_lower_inverse_kernel<<<(unsigned)Z, C < 32 ? 32 : (C + 31) / 32 * 32, smem>>>(X, A, beta, sign, C);
    CUDA_LAUNCHED();
    if (Xb) {
        scale_columns_kernel<<<grid_for((size_t)Z * C * C, 256), 256>>>(Xb, X, beta, Z, C);
        CUDA_LAUNCHED();
    }
}

// d b_last[z, i] from the state decay: exp(b_last_i) sum_j dSend_ij S_ij
static __global__ void dblast_state_kernel(float *dblast, const float *dSend, const float *S, const float *blast, long Z,
                                           int K, int V) {
    WARP_ROW(i, Z * K);
    const float *ds = dSend + i * V, *st = S + i * V;
    float acc = 0.0f;
    for (int j = lane; j < V; j += 32) acc += ds[j] * st[j];
    acc = warp_sum(acc);
    if (lane == 0) dblast[i] = acc * expf(blast[i]);
}
