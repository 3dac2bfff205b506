// Linear attention on the GPU. Chunkwise: every chunk's products are strided-batched matmuls
// over all chunks at once (tensor cores through cuBLAS); the chunk-start states are a prefix
// sum of the chunks' K^T V, and in the backward the chunk-end state gradients a suffix sum of
// their scale Q^T dO. Recurrent (the reference, and decode): one block per (batch, head), the
// state in shared memory, one thread per value channel.
#include "chunks.cuh"
#include "cuda_ops.cuh"
#include "decode_step.cuh"
#include "recurrent.cuh"

// ---- chunkwise ----

struct LinBufs {
    float *q, *k, *v, *o, *M, *S, *dO, *dq, *dk, *dv, *dM;
};

static LinBufs carve_lin(const ScanShape *s, float *work, bool backward) {
    ChunkDims d = chunk_dims(s);
    Carve c{(char *)work, 0};
    LinBufs b;
    size_t rows = (size_t)d.Z * d.C;
    b.q = c.take(rows * s->K);
    b.k = c.take(rows * s->K);
    b.v = c.take(rows * s->V);
    b.o = c.take(rows * s->V);
    b.M = c.take((size_t)d.Z * d.C * d.C);
    b.S = c.take((size_t)d.Z * s->K * s->V); /* states of a forward without `saved`; E in the backward */
    b.dO = b.dq = b.dk = b.dv = b.dM = NULL;
    if (backward) {
        b.dO = c.take(rows * s->V);
        b.dq = c.take(rows * s->K);
        b.dk = c.take(rows * s->K);
        b.dv = c.take(rows * s->V);
        b.dM = c.take((size_t)d.Z * d.C * d.C);
    }
    return b;
}

// the buffers in `work`, with q, k and v copied into them in the chunk layout
static LinBufs chunk_inputs(const ScanShape *s, const ChunkDims &d, float *work, bool backward, const float *q,
                            const float *k, const float *v) {
    LinBufs b = carve_lin(s, work, backward);
    to_chunks(b.q, q, d, s->K);
    to_chunks(b.k, k, d, s->K);
    to_chunks(b.v, v, d, s->V);
    return b;
}

static size_t lin_chunk_workspace(const ScanShape *s) {
    ChunkDims d = chunk_dims(s);
    size_t rows = (size_t)d.Z * d.C;
    size_t floats = rows * (2 * (size_t)s->K + 2 * s->V) * 2 + 2 * (size_t)d.Z * d.C * d.C + (size_t)d.Z * s->K * s->V;
    return sizeof(float) * floats + 16 * 256;
}

// In place over [BH, nc, KV]: chunk c becomes init + (the sum of chunks before it); final gets
// the sum of all. One thread per (bh, element).
__global__ void exclusive_prefix_kernel(float *S, float *final_state, const float *init, int BH, int nc, int KV) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)BH * KV) return;
    size_t bh = i / KV, e = i % KV;
    float acc = init ? init[i] : 0.0f;
    for (int c = 0; c < nc; c++) {
        float *slot = S + (bh * nc + c) * KV + e, add = *slot;
        *slot = acc;
        acc += add;
    }
    if (final_state) final_state[i] = acc;
}

// In place over [BH, nc, KV]: chunk c becomes dfinal + (the sum of chunks after it); dinit gets
// the sum of all.
__global__ void exclusive_suffix_kernel(float *G, float *dinit, const float *dfinal, int BH, int nc, int KV) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)BH * KV) return;
    size_t bh = i / KV, e = i % KV;
    float acc = dfinal ? dfinal[i] : 0.0f;
    for (int c = nc - 1; c >= 0; c--) {
        float *slot = G + (bh * nc + c) * KV + e, add = *slot;
        *slot = acc;
        acc += add;
    }
    if (dinit) dinit[i] = acc;
}

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *initial_state, float *work) {
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C;
    LinBufs b = chunk_inputs(s, d, work, false, q, k, v);
    float *S = saved ? saved : b.S; /* [Z, K, V]: each chunk's start state */
    cuda_gemm_batched(true, false, K, V, C, 1.0f, b.k, K, (long long)C * K, b.v, V, (long long)C * V, 0.0f, S, V,
                      (long long)K * V, (int)d.Z);
    exclusive_prefix_kernel<<<grid_for((size_t)d.B * d.H * K * V, 256), 256>>>(S, final_state, initial_state, d.B * d.H,
                                                                              d.nc, K * V);
    CUDA_LAUNCHED();
    cuda_gemm_batched(false, true, C, C, K, 1.0f, b.q, K, (long long)C * K, b.k, K, (long long)C * K, 0.0f, b.M, C,
                      (long long)C * C, (int)d.Z);
    mask_upper(b.M, d, false);
    cuda_gemm_batched(false, false, C, V, K, s->scale, b.q, K, (long long)C * K, S, V, (long long)K * V, 0.0f, b.o, V,
                      (long long)C * V, (int)d.Z);
    cuda_gemm_batched(false, false, C, V, C, s->scale, b.M, C, (long long)C * C, b.v, V, (long long)C * V, 1.0f, b.o, V,
                      (long long)C * V, (int)d.Z);
    from_chunks(o, b.o, d, V);
}

// With E_c the gradient of chunk c's end state (dfinal + the later chunks' scale Q^T dO):
// dQ = scale dO S_c^T + dM K, dK = V E_c^T + dM^T Q, dV = K E_c + scale M^T dO, dM = scale tril(dO V^T).
static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,
                           const float *dfinal_state, const float *dout, const float *q, const float *k, const float *v,
                           const float *saved, float *work) {
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C;
    LinBufs b = chunk_inputs(s, d, work, true, q, k, v);
    to_chunks(b.dO, dout, d, V);
    const float *S = saved;
    float *E = b.S;
    cuda_gemm_batched(true, false, K, V, C, s->scale, b.q, K, (long long)C * K, b.dO, V, (long long)C * V, 0.0f, E, V,
                      (long long)K * V, (int)d.Z);
    exclusive_suffix_kernel<<<grid_for((size_t)d.B * d.H * K * V, 256), 256>>>(E, dinitial_state, dfinal_state,
                                                                               d.B * d.H, d.nc, K * V);
    CUDA_LAUNCHED();
    /* M and dM */
    cuda_gemm_batched(false, true, C, C, K, 1.0f, b.q, K, (long long)C * K, b.k, K, (long long)C * K, 0.0f, b.M, C,
                      (long long)C * C, (int)d.Z);
    mask_upper(b.M, d, false);
    cuda_gemm_batched(false, true, C, C, V, s->scale, b.dO, V, (long long)C * V, b.v, V, (long long)C * V, 0.0f, b.dM, C,
                      (long long)C * C, (int)d.Z);
    mask_upper(b.dM, d, false);
    /* dQ */
    cuda_gemm_batched(false, true, C, K, V, s->scale, b.dO, V, (long long)C * V, S, V, (long long)K * V, 0.0f, b.dq, K,
                      (long long)C * K, (int)d.Z);
    cuda_gemm_batched(false, false, C, K, C, 1.0f, b.dM, C, (long long)C * C, b.k, K, (long long)C * K, 1.0f, b.dq, K,
                      (long long)C * K, (int)d.Z);
    /* dK */
    cuda_gemm_batched(false, true, C, K, V, 1.0f, b.v, V, (long long)C * V, E, V, (long long)K * V, 0.0f, b.dk, K,
                      (long long)C * K, (int)d.Z);
    cuda_gemm_batched(true, false, C, K, C, 1.0f, b.dM, C, (long long)C * C, b.q, K, (long long)C * K, 1.0f, b.dk, K,
                      (long long)C * K, (int)d.Z);
    /* dV */
    cuda_gemm_batched(false, false, C, V, K, 1.0f, b.k, K, (long long)C * K, E, V, (long long)K * V, 0.0f, b.dv, V,
                      (long long)C * V, (int)d.Z);
    cuda_gemm_batched(true, false, C, V, C, s->scale, b.M, C, (long long)C * C, b.dO, V, (long long)C * V, 1.0f, b.dv, V,
                      (long long)C * V, (int)d.Z);
    from_chunks(dq, b.dq, d, K);
    from_chunks(dk, b.dk, d, K);
    from_chunks(dv, b.dv, d, V);
}

// ---- recurrent: one block per (b, h), thread j owns value channel j of the state ----

__device__ __forceinline__ size_t tok(int T, int H, int b, int t, int h) { return ((size_t)b * T + t) * H + h; }

__global__ void lin_recurrent_forward_kernel(ScanShape s, float *o, float *final_state, float *saved, const float *q,
                                             const float *k, const float *v, const float *h0, int steps_from_state) {
    extern __shared__ float sm[];
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x;
    float *S = sm, *qs = S + (size_t)K * V, *ks = qs + K;
    for (int e = threadIdx.x; e < K * V; e += blockDim.x) S[e] = h0 ? h0[(size_t)bh * K * V + e] : 0.0f;
    if (saved)
        for (int e = threadIdx.x; e < K * V; e += blockDim.x) saved[(size_t)bh * K * V + e] = S[e];
    for (int t = 0; t < s.T; t++) {
        __syncthreads();
        size_t r = steps_from_state ? (size_t)bh : tok(s.T, s.H, b, t, h);
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            qs[i] = q[r * K + i];
            ks[i] = k[r * K + i];
        }
        __syncthreads();
        if (j < V) o[r * V + j] = s.scale * write_then_read(S, K, V, j, ks, v[r * V + j], qs);
    }
    __syncthreads();
    if (final_state)
        for (int e = threadIdx.x; e < K * V; e += blockDim.x) final_state[(size_t)bh * K * V + e] = S[e];
}

// Forward order recomputes S_t for dq_i = scale sum_j S_ij do_j; reverse order accumulates
// dS += scale q do^T for dk_i = sum_j dS_ij v_j and dv_j = sum_i dS_ij k_i.
__global__ void lin_recurrent_backward_kernel(ScanShape s, float *dq, float *dk, float *dv, float *dh0,
                                              const float *dht, const float *dout, const float *q, const float *k,
                                              const float *v, const float *saved) {
    extern __shared__ float sm[];
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x;
    float *S = sm, *qs = S + (size_t)K * V, *ks = qs + K, *acc = ks + K;
    for (int e = threadIdx.x; e < K * V; e += blockDim.x) S[e] = saved[(size_t)bh * K * V + e];
    for (int t = 0; t < s.T; t++) {
        __syncthreads();
        size_t r = tok(s.T, s.H, b, t, h);
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            ks[i] = k[r * K + i];
            acc[i] = 0.0f;
        }
        __syncthreads();
        bool live = j < V; /* the block is whole warps; the extra lanes add zeros */
        float vj = live ? v[r * V + j] : 0.0f, dj = live ? dout[r * V + j] : 0.0f;
        for (int i = 0; i < K; i++) {
            float x = live ? S[i * V + j] + ks[i] * vj : 0.0f;
            if (live) S[i * V + j] = x;
            add_over_block(&acc[i], x * dj);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < K; i += blockDim.x) dq[r * K + i] = s.scale * acc[i];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < K * V; e += blockDim.x) S[e] = dht ? dht[(size_t)bh * K * V + e] : 0.0f; /* now dS */
    for (int t = s.T - 1; t >= 0; t--) {
        __syncthreads();
        size_t r = tok(s.T, s.H, b, t, h);
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            qs[i] = q[r * K + i];
            ks[i] = k[r * K + i];
            acc[i] = 0.0f;
        }
        __syncthreads();
        bool live = j < V;
        float dj = live ? dout[r * V + j] : 0.0f, vj = live ? v[r * V + j] : 0.0f, dvj = 0.0f;
        for (int i = 0; i < K; i++) {
            float x = live ? S[i * V + j] + s.scale * qs[i] * dj : 0.0f;
            if (live) S[i * V + j] = x;
            dvj += x * ks[i];
            add_over_block(&acc[i], x * vj);
        }
        if (live) dv[r * V + j] = dvj;
        __syncthreads();
        for (int i = threadIdx.x; i < K; i += blockDim.x) dk[r * K + i] = acc[i];
    }
    __syncthreads();
    if (dh0)
        for (int e = threadIdx.x; e < K * V; e += blockDim.x) dh0[(size_t)bh * K * V + e] = S[e];
}

static size_t recurrent_smem(const ScanShape *s) { return sizeof(float) * ((size_t)s->K * s->V + 3 * (size_t)s->K); }

static void check_recurrent(const ScanShape *s) { check_recurrent_fits(s, recurrent_smem(s), "linear attention"); }

// ---- entry points ----

extern "C" size_t cuda_linear_attn_saved(const ScanShape *s) {
    ChunkDims d = chunk_dims(s);
    return s->chunk ? (size_t)d.Z * s->K * s->V : (size_t)s->B * s->H * s->K * s->V;
}

extern "C" size_t cuda_linear_attn_workspace(const ScanShape *s) { return s->chunk ? lin_chunk_workspace(s) : 256; }

extern "C" void cuda_linear_attn_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                                         const float *k, const float *v, const float *initial_state, float *work) {
    if (s->chunk) {
        chunk_forward(s, o, final_state, saved, q, k, v, initial_state, work);
        return;
    }
    check_recurrent(s);
    size_t smem = recurrent_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(lin_recurrent_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    lin_recurrent_forward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(*s, o, final_state, saved, q, k, v,
                                                                           initial_state, 0);
    CUDA_LAUNCHED();
}

extern "C" void cuda_linear_attn_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,
                                          const float *dfinal_state, const float *dout, const float *q, const float *k,
                                          const float *v, const float *saved, float *work) {
    if (s->chunk) {
        chunk_backward(s, dq, dk, dv, dinitial_state, dfinal_state, dout, q, k, v, saved, work);
        return;
    }
    check_recurrent(s);
    size_t smem = recurrent_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(lin_recurrent_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    lin_recurrent_backward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(*s, dq, dk, dv, dinitial_state,
                                                                            dfinal_state, dout, q, k, v, saved);
    CUDA_LAUNCHED();
}

// decode: one step of every sequence; the state is read and written in place
extern "C" void cuda_linear_attn_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                                      const float *v) {
    launch_state_step<false>(s, state, o, q, k, v, NULL, NULL);
}
