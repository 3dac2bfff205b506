// The sequential part of the chunkwise delta rule: the state carried from chunk to chunk, in one
// kernel per direction instead of a few launches per chunk. The value columns of the state are
// independent (every product below mixes rows, never columns), so a block takes one (batch,
// head) and a slice of VS value columns, keeps its K x VS state in shared memory and walks the
// chunks; BH x V/VS blocks fill the GPU. fp32 throughout, like the CPU reference: the fp32 mode's
// form, and the tensor-core mode's where chunk_state_mma.cu's does not run.
//
// forward, per chunk c (spec notation):  save S_c;  U_c -= W_c S_c;  S_{c+1} = e^{b_last} S_c (+ P_c) + Kc_c^T U_c
// backward, last chunk first:            save G as dS_end_c;  dU_c += Kc_c G;
//                                        G = e^{b_last} G + P2_c - W_c^T dU_c
#include "chunk_state.cuh"
#include "cuda_common.cuh"

namespace {

constexpr int THREADS = 256; // 16 x 16: thread (tr, tc) takes rows tr + 16 u and columns tc + 16 w

// out[r][j] += sign sum_i op(A)[r][i] X[i][j]  (out: R x VS, X: n x VS), where op(A) is A
// (R x n at stride lda) or, with A_T, the transpose of an n x R A at stride lda
template <int VS, bool A_T>
__device__ void accumulate_product(float *out, int R, const float *A, int lda, const float *X, int n, float sign) {
    constexpr int CT = VS / 16;
    int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
    for (int r0 = 0; r0 < R; r0 += 64) {
        float acc[4][CT] = {};
        for (int i = 0; i < n; i++) {
            float a[4], x[CT];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int r = r0 + tr + 16 * u;
                a[u] = r < R ? A[A_T ? i * lda + r : r * lda + i] : 0.0f;
            }
#pragma unroll
            for (int w = 0; w < CT; w++) x[w] = X[i * VS + tc + 16 * w];
#pragma unroll
            for (int u = 0; u < 4; u++)
#pragma unroll
                for (int w = 0; w < CT; w++) acc[u][w] += a[u] * x[w];
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int r = r0 + tr + 16 * u;
            if (r < R)
#pragma unroll
                for (int w = 0; w < CT; w++) out[r * VS + tc + 16 * w] += sign * acc[u][w];
        }
    }
}

// a C x K matrix into shared memory at row stride K + 1 (odd: the rows of a column are in
// different banks)
__device__ void load_rows(float *dst, const float *src, int C, int K) {
    for (int e = threadIdx.x; e < C * K; e += THREADS) dst[(e / K) * (K + 1) + e % K] = src[e];
}

// the VS-column slice at v0 of a rows x V matrix, to (or from) a dense rows x VS tile; columns
// past V are zero in the tile and never written back
template <int VS> __device__ void load_slice(float *tile, const float *src, int rows, int V, int v0) {
    for (int e = threadIdx.x; e < rows * VS; e += THREADS) {
        int r = e / VS, j = e % VS;
        tile[e] = v0 + j < V ? src[(size_t)r * V + v0 + j] : 0.0f;
    }
}
template <int VS> __device__ void store_slice(float *dst, const float *tile, int rows, int V, int v0) {
    for (int e = threadIdx.x; e < rows * VS; e += THREADS) {
        int r = e / VS, j = e % VS;
        if (v0 + j < V) dst[(size_t)r * V + v0 + j] = tile[e];
    }
}

// the block's state slice (as load_slice) of (batch, head) bh of src [BH, K, V], or zeros when
// src is NULL
template <int VS> __device__ void load_state(float *S, const float *src, size_t bh, int K, int V, int v0) {
    if (src) load_slice<VS>(S, src + bh * ((size_t)K * V), K, V, v0);
    else
        for (int e = threadIdx.x; e < K * VS; e += THREADS) S[e] = 0.0f;
}

// S = e^{b_last} S (+ P), a row of S per key channel
template <int VS> __device__ void decay_rows(float *S, const float *blast, const float *P, int K, int V, int v0) {
    for (int e = threadIdx.x; e < K * VS; e += THREADS) {
        int i = e / VS, j = e % VS;
        float x = __expf(blast[i]) * S[e];
        if (P && v0 + j < V) x += P[(size_t)i * V + v0 + j];
        S[e] = x;
    }
}

// One chunk z of either pass on the block's K x VS state slice X (S forward, G backward), with A
// and Ys the shared tiles of the chunk's rows of A1 and A2 and of Y (U forward, dU backward):
//   save X;  Y_z += sign1 A1_z X;  X = e^{b_last} X (+ Pz) + sign2 A2_z^T Y_z
// Pz is the chunk's own K x V matrix (the backward's P2), or NULL.
template <int VS>
__device__ __forceinline__ void chunk_step(const ChunkState &a, size_t z, int v0, float *X, float *A, float *Ys,
                                           float *save, float *Y, const float *A1, float sign1, const float *A2,
                                           float sign2, const float *Pz) {
    const int C = a.C, K = a.K, V = a.V;
    const size_t KV = (size_t)K * V;
    __syncthreads();
    store_slice<VS>(save + z * KV, X, K, V, v0);
    load_rows(A, A1 + z * C * K, C, K);
    load_slice<VS>(Ys, Y + z * C * V, C, V, v0);
    __syncthreads();
    accumulate_product<VS, false>(Ys, C, A, K + 1, X, K, sign1);
    __syncthreads();
    store_slice<VS>(Y + z * C * V, Ys, C, V, v0);
    load_rows(A, A2 + z * C * K, C, K);
    decay_rows<VS>(X, a.blast + z * K, Pz, K, V, v0);
    __syncthreads();
    accumulate_product<VS, true>(X, K, A, K + 1, Ys, C, sign2);
}

template <int VS>
__global__ void __launch_bounds__(THREADS) state_forward_kernel(ChunkState a, float *S_all, float *U, float *final_state,
                                                                const float *init, const float *P) {
    extern __shared__ float sm[];
    const int C = a.C, K = a.K, V = a.V, nc = a.nc, v0 = blockIdx.y * VS;
    const size_t bh = blockIdx.x, KV = (size_t)K * V;
    float *S = sm, *A = S + K * VS, *Us = A + C * (K + 1);
    load_state<VS>(S, init, bh, K, V, v0);
    for (int c = 0; c < nc; c++) { /* U_c = U~_c - W_c S_c;  S_{c+1} = e^{b_last} S_c (+ P_c) + Kc_c^T U_c */
        size_t z = bh * nc + c;
        chunk_step<VS>(a, z, v0, S, A, Us, S_all, U, a.W, -1.0f, a.Kc, 1.0f, P ? P + z * KV : nullptr);
    }
    __syncthreads();
    if (final_state) store_slice<VS>(final_state + bh * KV, S, K, V, v0);
}

template <int VS>
__global__ void __launch_bounds__(THREADS) state_backward_kernel(ChunkState a, float *dSend, float *dU, float *dinit,
                                                                 const float *dfinal, const float *P2) {
    extern __shared__ float sm[];
    const int C = a.C, K = a.K, V = a.V, nc = a.nc, v0 = blockIdx.y * VS;
    const size_t bh = blockIdx.x, KV = (size_t)K * V;
    float *G = sm, *A = G + K * VS, *Us = A + C * (K + 1);
    load_state<VS>(G, dfinal, bh, K, V, v0);
    for (int c = nc - 1; c >= 0; c--) { /* dU_c += Kc_c G;  G = e^{b_last} G + P2_c - W_c^T dU_c */
        size_t z = bh * nc + c;
        chunk_step<VS>(a, z, v0, G, A, Us, dSend, dU, a.Kc, 1.0f, a.W, -1.0f, P2 + z * KV);
    }
    __syncthreads();
    if (dinit) store_slice<VS>(dinit + bh * KV, G, K, V, v0);
}

size_t smem_bytes(const ChunkState &a, int vs) {
    return sizeof(float) * ((size_t)a.K * vs + (size_t)a.C * (a.K + 1) + (size_t)a.C * vs);
}

constexpr size_t SMEM_LIMIT = 200 * 1024;

// The slice width: the widest of 64, 32, 16 that still gives the GPU two blocks per SM (wider
// slices re-read W and Kc fewer times, but a block walks every chunk in turn, so a grid of one
// block per (batch, head) leaves SMs idle and the rest latency-bound: at 8 x 12 heads of 64 on an
// H200, 96 blocks for 132 SMs), and fits in shared memory. The sums are the same at every width:
// a column's products do not depend on its neighbours.
int slice_width(const ChunkState &a) {
    long want = 2L * cuda_sm_count();
    int widths[] = {64, 32, 16};
    for (int vs : widths) {
        bool last = vs == 16, fills = (long)a.BH * ((a.V + vs - 1) / vs) >= want, narrow_enough = vs <= 32 || a.V > 32;
        if (smem_bytes(a, vs) <= SMEM_LIMIT && narrow_enough && (fills || last)) return vs;
    }
    die("GPU delta rule: chunk_size %d with key dimension %d does not fit in shared memory", a.C, a.K);
}

template <int VS> dim3 grid_of(const ChunkState &a) { return dim3((unsigned)a.BH, (unsigned)((a.V + VS - 1) / VS)); }

} // namespace

void chunk_state_check(const ChunkState &a) { (void)slice_width(a); }

// the kernel for the slice width, with its shared memory allowed
template <typename Kernel> static void prepare_kernel(Kernel kernel, size_t smem) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

#define STATE_LAUNCH(KERNEL, VS, ...)                                                                                 \
    do {                                                                                                              \
        prepare_kernel(KERNEL<VS>, smem);                                                                             \
        KERNEL<VS><<<grid_of<VS>(a), THREADS, smem>>>(a, __VA_ARGS__);                                                \
    } while (0)
#define STATE_DISPATCH(KERNEL, ...)                                                                                   \
    do {                                                                                                              \
        size_t smem = smem_bytes(a, vs);                                                                              \
        if (vs == 64) STATE_LAUNCH(KERNEL, 64, __VA_ARGS__);                                                          \
        else if (vs == 32) STATE_LAUNCH(KERNEL, 32, __VA_ARGS__);                                                     \
        else STATE_LAUNCH(KERNEL, 16, __VA_ARGS__);                                                                   \
        CUDA_LAUNCHED();                                                                                              \
    } while (0)

// One chunk walked from a zero state whose end nobody reads (training at a length of one chunk,
// MQAR's 64 tokens): either pass would save a zero state and leave U (dU) as it was, since the
// products with that zero state add nothing; the zeros are written and the pass is skipped.
static bool one_chunk_from_zero(const ChunkState &a, float *save, const float *first, const float *last) {
    if (a.nc != 1 || first || last) return false;
    CUDA_CHECK(cudaMemsetAsync(save, 0, sizeof(float) * (size_t)a.BH * a.K * a.V));
    return true;
}

void chunk_state_forward(const ChunkState &a, float *S_all, float *U, float *final_state, const float *init,
                         const float *P) {
    if (one_chunk_from_zero(a, S_all, init, final_state)) return;
    if (chunk_state_mma_forward(a, S_all, U, final_state, init, P)) return;
    int vs = slice_width(a);
    STATE_DISPATCH(state_forward_kernel, S_all, U, final_state, init, P);
}

void chunk_state_backward(const ChunkState &a, float *dSend, float *dU, float *dinit, const float *dfinal,
                          const float *P2) {
    if (one_chunk_from_zero(a, dSend, dfinal, dinit)) return;
    if (chunk_state_mma_backward(a, dSend, dU, dinit, dfinal, P2)) return;
    int vs = slice_width(a);
    STATE_DISPATCH(state_backward_kernel, dSend, dU, dinit, dfinal, P2);
}

// for the parity tests: the columns a block of the tensor-core passes takes for a core of this
// shape, 0 where the fp32 passes run
extern "C" int cuda_chunk_state_columns(int BH, int nc, int C, int K, int V) {
    ChunkState a = {nullptr, nullptr, nullptr, BH, nc, C, K, V};
    return chunk_state_mma_columns(a);
}
