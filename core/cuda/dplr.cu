// The diagonal-plus-low-rank rule (dplr, fla's generalized delta rule) on the GPU, the CPU's
// algorithm (core/cpu/dplr.c) restructured as the delta rule's is (delta_rule.cu). Per head,
// w_t = S_{t-1}^T a_t, S_t = diag(exp(gk_t)) S_{t-1} + b_t w_t^T + k_t v_t^T, o_t = scale S_t^T q_t.
//
// Chunkwise, for every chunk at once (c_r the cumulative log decay in the chunk; Qg = Q e^c,
// Ag = A e^{c_{r-1}}, Kc = K e^{c_last - c}, Bc = B e^{c_last - c}):
//   P_ak, P_ab (j < r, decay e^{c_{r-1} - c_j}), P_qk, P_qb (j <= r, e^{c_r - c_j})   (one kernel)
//   T = (I - P_ab)^-1;  Wneg = -T Ag;  Wv = T (P_ak V);  P = Kc^T V            (batched matmuls)
// then the only sequential part, over chunks (chunk_state.cu, batched over batch and heads):
//   W_c = Wv_c - Wneg_c S_c,  S_{c+1} = e^{c_last} S_c + P_c + Bc_c^T W_c
// and again for every chunk at once: O = scale (Qg S_c + P_qk V + P_qb W). The backward mirrors
// it: a reverse pass over chunks for the state gradients (dW gains Bc G; G = e^{c_last} G +
// scale Qg^T dO + Ag^T T^T dW), everything else in parallel.
//
// Recurrent (the reference form, and decode): one block per (batch, head), the K x V state in
// shared memory, one thread per value channel.
//
// Not yet run on a GPU: written and compiled without one (tests/cuda/test_parity.c checks it
// against the CPU where a GPU is present).
#include <math.h>

#include "chunk_state.cuh"
#include "chunks.cuh"
#include "cuda_ops.cuh"
#include "recurrent.cuh"

// ---- chunk buffers ----

// The buffers, F(name, floats) in the order they are carved, for Z chunks of C rows (rows = Z C).
// In `work`: the chunk copies of the inputs and what the gates make of them, the forward's
// scratch (o is dW in the backward), then for a backward its scratch.
#define DPLR_WORK(F)                                                                                                  \
    F(q, rows * K) F(k, rows * K) F(v, rows * V) F(a, rows * K) F(b, rows * K) F(g, rows * K) F(c, rows * K)         \
    F(qg, rows * K) F(ag, rows * K) F(kc, rows * K) F(bc, rows * K) F(blast, Z * K) F(o, rows * V) F(R, rows * V)    \
    F(P, Z * K * V)
#define DPLR_BACKWARD_WORK(F)                                                                                         \
    F(dO, rows * V) F(P2, Z * K * V) F(dSend, Z * K * V) F(dR, rows * V) F(dQg, rows * K) F(dAg, rows * K)             \
    F(dKc, rows * K) F(dBc, rows * K) F(dPak, Z * C * C) F(dPab, Z * C * C) F(dPqk, Z * C * C) F(dPqb, Z * C * C)    \
    F(dq, rows * K) F(dk, rows * K) F(da, rows * K) F(db, rows * K) F(dc, rows * K) F(dcp, rows * K) F(dv, rows * V)  \
    F(dgk, rows * K) F(dblast, Z * K)
// kept from the forward for the backward (they live in `saved`)
#define DPLR_SAVED(F)                                                                                                 \
    F(S, Z * K * V) F(Pak, Z * C * C) F(Pab, Z * C * C) F(Pqk, Z * C * C) F(Pqb, Z * C * C) F(T, Z * C * C)           \
    F(Wneg, Z * C * K) F(W, Z * C * V)

CHUNK_BUFFERS(DplrBufs, DPLR_WORK, DPLR_BACKWARD_WORK, DPLR_SAVED)

// ---- kernels of the chunkwise form ----

// Per (chunk, channel): c = the cumulative log decay within the chunk, Qg = Q e^c, Ag = A e^{c_{r-1}}
// (1 on the first row), Kc = K e^{c_last - c}, Bc = B e^{c_last - c}; blast = c_last.
__global__ void dplr_gates_kernel(float *c, float *qg, float *ag, float *kc, float *bc, float *blast, const float *q,
                                  const float *a, const float *k, const float *b, const float *g, long Z, int C, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)Z * K) return;
    size_t z = i / K;
    int d = (int)(i % K);
    float acc = 0.0f, before = 1.0f; /* exp(c_{r-1}) */
    for (int r = 0; r < C; r++) {
        size_t e = (z * C + r) * K + d;
        acc += g[e];
        c[e] = acc;
        float x = expf(acc);
        qg[e] = q[e] * x;
        ag[e] = a[e] * before;
        before = x;
    }
    blast[i] = acc;
    for (int r = 0; r < C; r++) {
        size_t e = (z * C + r) * K + d;
        float x = expf(acc - c[e]);
        kc[e] = k[e] * x;
        bc[e] = b[e] * x;
    }
}

// chunk z's C x K rows of q, k, a, b and c into shared tiles at row stride K + 1
struct PairTiles {
    float *Q, *Kt, *A, *Bt, *Cc;
};

__device__ __forceinline__ PairTiles load_pair_tiles(float *sm, const float *q, const float *k, const float *a,
                                                     const float *b, const float *c, size_t z, int C, int K) {
    const int p = K + 1;
    PairTiles t = {sm, sm + C * p, sm + 2 * C * p, sm + 3 * C * p, sm + 4 * C * p};
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
        int r = e / K, d = e % K;
        size_t src = z * C * K + e;
        t.Q[r * p + d] = q[src];
        t.Kt[r * p + d] = k[src];
        t.A[r * p + d] = a[src];
        t.Bt[r * p + d] = b[src];
        t.Cc[r * p + d] = c[src];
    }
    return t;
}

// P_ak, P_ab (j < r) with e^{c_{r-1} - c_j}, P_qk, P_qb (j <= r) with e^{c_r - c_j}; zero elsewhere.
// One block per chunk, its rows in shared memory.
__global__ void dplr_pairs_kernel(float *Pak, float *Pab, float *Pqk, float *Pqb, const float *q, const float *k,
                                  const float *a, const float *b, const float *c, int C, int K) {
    extern __shared__ float sm[];
    const int p = K + 1;
    size_t z = blockIdx.x;
    PairTiles t = load_pair_tiles(sm, q, k, a, b, c, z, C, K);
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int r = e / C, j = e % C;
        float ak = 0.0f, ab = 0.0f, qk = 0.0f, qb = 0.0f;
        if (j <= r) {
            for (int d = 0; d < K; d++) {
                float cj = t.Cc[j * p + d], kj = t.Kt[j * p + d], bj = t.Bt[j * p + d];
                float w = __expf(t.Cc[r * p + d] - cj) * t.Q[r * p + d];
                qk += w * kj;
                qb += w * bj;
                if (j < r) {
                    float u = __expf(t.Cc[(r - 1) * p + d] - cj) * t.A[r * p + d];
                    ak += u * kj;
                    ab += u * bj;
                }
            }
        }
        size_t o = z * C * C + e;
        Pak[o] = ak;
        Pab[o] = ab;
        Pqk[o] = qk;
        Pqb[o] = qb;
    }
}

// The backward of dplr_pairs_kernel: from dP_ak, dP_ab (strict) and dP_qk, dP_qb (with the diagonal)
// to the direct dq, dk, da, db, dc (the gradient of c_row) and dcp (of c_{row-1}, through a row's
// own strict products). One block per chunk; a thread per (row, channel), first as a pair's r,
// then as its j. The dP are read from global memory: every thread of a row reads the same ones.
__global__ void dplr_pairs_backward_kernel(float *dq, float *dk, float *da, float *db, float *dc, float *dcp,
                                           const float *dPak, const float *dPab, const float *dPqk, const float *dPqb,
                                           const float *q, const float *k, const float *a, const float *b,
                                           const float *c, int C, int K) {
    extern __shared__ float sm[];
    const int p = K + 1;
    size_t z = blockIdx.x;
    PairTiles t = load_pair_tiles(sm, q, k, a, b, c, z, C, K);
    __syncthreads();
    const float *Dak = dPak + z * C * C, *Dab = dPab + z * C * C, *Dqk = dPqk + z * C * C, *Dqb = dPqb + z * C * C;
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
        int row = e / K, d = e % K;
        float cr = t.Cc[row * p + d], qr = t.Q[row * p + d], kr = t.Kt[row * p + d], ar = t.A[row * p + d];
        float br = t.Bt[row * p + d], cprev = row > 0 ? t.Cc[(row - 1) * p + d] : 0.0f;
        float gq = 0.0f, gk = 0.0f, ga = 0.0f, gb = 0.0f, gc = 0.0f, gcp = 0.0f;
        for (int j = 0; j <= row; j++) { /* row as r */
            float cj = t.Cc[j * p + d], kj = t.Kt[j * p + d], bj = t.Bt[j * p + d];
            float ex = __expf(cr - cj), sq = (Dqk[row * C + j] * kj + Dqb[row * C + j] * bj) * ex;
            gq += sq;
            gc += sq * qr;
            if (j < row) {
                float sa = (Dak[row * C + j] * kj + Dab[row * C + j] * bj) * __expf(cprev - cj);
                ga += sa;
                gcp += sa * ar;
            }
        }
        for (int r = row; r < C; r++) { /* row as j */
            float x = __expf(t.Cc[r * p + d] - cr) * t.Q[r * p + d];
            float uk = Dqk[r * C + row] * x, ub = Dqb[r * C + row] * x;
            if (r > row) {
                float y = __expf(t.Cc[(r - 1) * p + d] - cr) * t.A[r * p + d];
                uk += Dak[r * C + row] * y;
                ub += Dab[r * C + row] * y;
            }
            gk += uk;
            gb += ub;
            gc -= kr * uk + br * ub;
        }
        size_t o = z * C * K + e;
        dq[o] = gq;
        dk[o] = gk;
        da[o] = ga;
        db[o] = gb;
        dc[o] = gc;
        dcp[o] = gcp;
    }
}

// Per (chunk, channel): adds the decayed rows' terms to the direct gradients and turns the
// per-row dc into dgk (reverse cumulative sum; c_last's own gradient counted on the last row, and
// dcp of row r + 1, with the Ag term of that row, on row r).
__global__ void dplr_finish_kernel(float *dq, float *dk, float *da, float *db, float *dgk, const float *dc,
                                   const float *dcp, const float *dQg, const float *dAg, const float *dKc,
                                   const float *dBc, const float *qg, const float *ag, const float *kc, const float *bc,
                                   const float *c, const float *dblast, long Z, int C, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)Z * K) return;
    size_t z = i / K;
    int d = (int)(i % K);
    size_t base = z * C * K + d;
    float clast = c[base + (size_t)(C - 1) * K], last = dblast[i], before = 1.0f;
    for (int r = 0; r < C; r++) {
        size_t e = base + (size_t)r * K;
        float x = expf(c[e]), ec = expf(clast - c[e]), tail = dKc[e] * kc[e] + dBc[e] * bc[e];
        dq[e] += dQg[e] * x;
        da[e] += dAg[e] * before;
        dk[e] += dKc[e] * ec;
        db[e] += dBc[e] * ec;
        float own = dc[e] + dQg[e] * qg[e] - tail;
        if (r + 1 < C) own += dcp[e + K] + dAg[e + K] * ag[e + K];
        dgk[e] = own;
        last += tail;
        before = x;
    }
    float run = last;
    for (int r = C - 1; r >= 0; r--) {
        size_t e = base + (size_t)r * K;
        run += dgk[e];
        dgk[e] = run;
    }
}

static size_t pair_smem(int C, int K) { return sizeof(float) * 5 * (size_t)C * (K + 1); }

static void check_chunk_shape(const ScanShape *s) { check_chunk_fits(s, pair_smem(s->chunk, s->K), "dplr rule"); }

static void prepare(const ScanShape *s, const ChunkDims &d, DplrBufs &b, const float *q, const float *k, const float *v,
                    const float *a, const float *bw, const float *g) {
    const int K = s->K, V = s->V;
    to_chunks(b.q, q, d, K);
    to_chunks(b.k, k, d, K);
    to_chunks(b.v, v, d, V);
    to_chunks(b.a, a, d, K);
    to_chunks(b.b, bw, d, K);
    to_chunks(b.g, g, d, K);
    dplr_gates_kernel<<<grid_for((size_t)d.Z * K, 128), 128>>>(b.c, b.qg, b.ag, b.kc, b.bc, b.blast, b.q, b.a, b.k,
                                                              b.b, b.g, d.Z, d.C, K);
    CUDA_LAUNCHED();
}

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *a, const float *bw, const float *g,
                          const float *initial_state, float *work) {
    check_chunk_shape(s);
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C, Z = (int)d.Z;
    DplrBufs b;
    size_t used = carve_work(s, work, &b, false);
    if (saved) carve_saved(s, saved, &b);
    else carve_saved(s, (float *)((char *)work + used), &b); /* a forward without a backward */
    prepare(s, d, b, q, k, v, a, bw, g);
    size_t psm = pair_smem(C, K);
    CUDA_CHECK(cudaFuncSetAttribute(dplr_pairs_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)psm));
    dplr_pairs_kernel<<<(unsigned)d.Z, 256, psm>>>(b.Pak, b.Pab, b.Pqk, b.Pqb, b.q, b.k, b.a, b.b, b.c, C, K);
    CUDA_LAUNCHED();
    unit_lower_inverse(b.T, nullptr, b.Pab, nullptr, -1.0f, d.Z, C);
    const long long CC = (long long)C * C, CK = (long long)C * K, CV = (long long)C * V, KV = (long long)K * V;
    /* Wneg = -T Ag;  W = T (P_ak V) before the state's part;  P = Kc^T V */
    cuda_gemm_batched(false, false, C, K, C, -1.0f, b.T, C, CC, b.ag, K, CK, 0.0f, b.Wneg, K, CK, Z);
    cuda_gemm_batched(false, false, C, V, C, 1.0f, b.Pak, C, CC, b.v, V, CV, 0.0f, b.R, V, CV, Z);
    cuda_gemm_batched(false, false, C, V, C, 1.0f, b.T, C, CC, b.R, V, CV, 0.0f, b.W, V, CV, Z);
    cuda_gemm_batched(true, false, K, V, C, 1.0f, b.kc, K, CK, b.v, V, CV, 0.0f, b.P, V, KV, Z);
    /* the state recurrence over chunks, one kernel: W += -Wneg S, S = e^{c_last} S + P + Bc^T W */
    ChunkState cs = {b.Wneg, b.bc, b.blast, d.B * d.H, d.nc, C, K, V};
    chunk_state_forward(cs, b.S, b.W, final_state, initial_state, b.P);
    /* O = scale (Qg S + P_qk V + P_qb W), every chunk at once */
    cuda_gemm_batched(false, false, C, V, K, s->scale, b.qg, K, CK, b.S, V, KV, 0.0f, b.o, V, CV, Z);
    cuda_gemm_batched(false, false, C, V, C, s->scale, b.Pqk, C, CC, b.v, V, CV, 1.0f, b.o, V, CV, Z);
    cuda_gemm_batched(false, false, C, V, C, s->scale, b.Pqb, C, CC, b.W, V, CV, 1.0f, b.o, V, CV, Z);
    from_chunks(o, b.o, d, V);
}

// The notes above the kernels give the algebra; dW (the gradient of the reads) lives in the o slot.
static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                           float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                           const float *k, const float *v, const float *a, const float *bw, const float *g,
                           const float *saved, float *work) {
    check_chunk_shape(s);
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C, Z = (int)d.Z;
    DplrBufs b;
    carve_work(s, work, &b, true);
    carve_saved(s, (float *)saved, &b);
    prepare(s, d, b, q, k, v, a, bw, g);
    to_chunks(b.dO, dout, d, V);
    const long long CC = (long long)C * C, CK = (long long)C * K, CV = (long long)C * V, KV = (long long)K * V;
    float *dW = b.o;
    cuda_gemm_batched(true, false, K, V, C, s->scale, b.qg, K, CK, b.dO, V, CV, 0.0f, b.P2, V, KV, Z);
    cuda_gemm_batched(true, false, C, V, C, s->scale, b.Pqb, C, CC, b.dO, V, CV, 0.0f, dW, V, CV, Z);
    /* the state gradients over chunks, last to first: dW += Bc G; G = e^{c_last} G + P2 - Wneg^T dW */
    ChunkState cs = {b.Wneg, b.bc, b.blast, d.B * d.H, d.nc, C, K, V};
    chunk_state_backward(cs, b.dSend, dW, dinitial_state, dfinal_state, b.P2);
    /* every chunk at once, G = dSend */
    cuda_gemm_batched(true, false, C, V, C, 1.0f, b.T, C, CC, dW, V, CV, 0.0f, b.dR, V, CV, Z);
    cuda_gemm_batched(true, false, C, V, C, s->scale, b.Pqk, C, CC, b.dO, V, CV, 0.0f, b.dv, V, CV, Z);
    cuda_gemm_batched(false, false, C, V, K, 1.0f, b.kc, K, CK, b.dSend, V, KV, 1.0f, b.dv, V, CV, Z);
    cuda_gemm_batched(true, false, C, V, C, 1.0f, b.Pak, C, CC, b.dR, V, CV, 1.0f, b.dv, V, CV, Z);
    cuda_gemm_batched(false, true, C, K, V, 1.0f, b.v, V, CV, b.dSend, V, KV, 0.0f, b.dKc, K, CK, Z);
    cuda_gemm_batched(false, true, C, K, V, 1.0f, b.W, V, CV, b.dSend, V, KV, 0.0f, b.dBc, K, CK, Z);
    dblast_state_kernel<<<grid_for((size_t)d.Z * K * 32, 256), 256>>>(b.dblast, b.dSend, b.S, b.blast, d.Z, K, V);
    CUDA_LAUNCHED();
    cuda_gemm_batched(false, true, C, K, V, s->scale, b.dO, V, CV, b.S, V, KV, 0.0f, b.dQg, K, CK, Z);
    cuda_gemm_batched(false, true, C, K, V, 1.0f, b.dR, V, CV, b.S, V, KV, 0.0f, b.dAg, K, CK, Z);
    cuda_gemm_batched(false, true, C, C, V, s->scale, b.dO, V, CV, b.v, V, CV, 0.0f, b.dPqk, C, CC, Z);
    cuda_gemm_batched(false, true, C, C, V, s->scale, b.dO, V, CV, b.W, V, CV, 0.0f, b.dPqb, C, CC, Z);
    cuda_gemm_batched(false, true, C, C, V, 1.0f, b.dR, V, CV, b.v, V, CV, 0.0f, b.dPak, C, CC, Z);
    cuda_gemm_batched(false, true, C, C, V, 1.0f, b.dR, V, CV, b.W, V, CV, 0.0f, b.dPab, C, CC, Z);
    mask_upper(b.dPqk, d, false);
    mask_upper(b.dPqb, d, false);
    mask_upper(b.dPak, d, true);
    mask_upper(b.dPab, d, true);
    size_t psm = pair_smem(C, K);
    CUDA_CHECK(cudaFuncSetAttribute(dplr_pairs_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)psm));
    dplr_pairs_backward_kernel<<<(unsigned)d.Z, 256, psm>>>(b.dq, b.dk, b.da, b.db, b.dc, b.dcp, b.dPak, b.dPab, b.dPqk,
                                                           b.dPqb, b.q, b.k, b.a, b.b, b.c, C, K);
    CUDA_LAUNCHED();
    dplr_finish_kernel<<<grid_for((size_t)d.Z * K, 128), 128>>>(b.dq, b.dk, b.da, b.db, b.dgk, b.dc, b.dcp, b.dQg, b.dAg,
                                                               b.dKc, b.dBc, b.qg, b.ag, b.kc, b.bc, b.c, b.dblast,
                                                               d.Z, C, K);
    CUDA_LAUNCHED();
    from_chunks(dq, b.dq, d, K);
    from_chunks(dk, b.dk, d, K);
    from_chunks(dv, b.dv, d, V);
    from_chunks(da, b.da, d, K);
    from_chunks(db, b.db, d, K);
    from_chunks(dgk, b.dgk, d, K);
}

// ---- recurrent form: one block per (batch, head); thread j owns value column j ----

struct DplrRecArgs {
    ScanShape s;
    const float *q, *k, *v, *a, *b, *gk;
};

__device__ __forceinline__ size_t dplr_tok(const ScanShape &s, int b, int t, int h) {
    return ((size_t)b * s.T + t) * s.H + h;
}

// token r's q, k, a, b and decays exp(gk) into shared memory
__device__ __forceinline__ void dplr_load_token(const DplrRecArgs &x, size_t r, float *qs, float *ks, float *as,
                                                float *bs, float *dec) {
    const int K = x.s.K;
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        qs[i] = x.q[r * K + i];
        ks[i] = x.k[r * K + i];
        as[i] = x.a[r * K + i];
        bs[i] = x.b[r * K + i];
        dec[i] = expf(x.gk[r * K + i]);
    }
}

// step: one token of every sequence, the state read and written in place in final_state (global)
__global__ void dplr_rec_forward_kernel(DplrRecArgs x, float *o, float *final_state, float *saved, const float *h0,
                                        int step) {
    extern __shared__ float sm[];
    const ScanShape s = x.s;
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x;
    const size_t KV = (size_t)K * V;
    float *S = step ? final_state + bh * KV : sm, *qs = sm + (step ? 0 : KV), *ks = qs + K, *as = ks + K, *bs = as + K;
    float *dec = bs + K;
    if (!step)
        for (size_t e = threadIdx.x; e < KV; e += blockDim.x) S[e] = h0 ? h0[bh * KV + e] : 0.0f;
    for (int t = 0; t < s.T; t++) {
        size_t r = step ? (size_t)bh : dplr_tok(s, b, t, h);
        __syncthreads();
        dplr_load_token(x, r, qs, ks, as, bs, dec);
        __syncthreads();
        if (j >= V) continue;
        if (saved)
            for (int i = 0; i < K; i++) saved[(((size_t)bh * s.T + t) * K + i) * V + j] = S[i * V + j];
        float w = 0.0f, acc = 0.0f, vj = x.v[r * V + j];
        for (int i = 0; i < K; i++) w += S[i * V + j] * as[i];
        for (int i = 0; i < K; i++) {
            float y = dec[i] * S[i * V + j] + bs[i] * w + ks[i] * vj;
            S[i * V + j] = y;
            acc += y * qs[i];
        }
        o[r * V + j] = s.scale * acc;
    }
    __syncthreads();
    if (!step && final_state)
        for (size_t e = threadIdx.x; e < KV; e += blockDim.x) final_state[bh * KV + e] = S[e];
}

// Reverse time with dS = d(loss)/dS_t and P = S_{t-1} (saved), as dplr_recurrent.c: the sums over
// value columns for dq, dk, da, db and dgk go through shared accumulators.
__global__ void dplr_rec_backward_kernel(DplrRecArgs x, float *dq, float *dk, float *dv, float *da, float *db,
                                         float *dgk, float *dh0, const float *dht, const float *dout,
                                         const float *saved) {
    extern __shared__ float sm[];
    const ScanShape s = x.s;
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x;
    const size_t KV = (size_t)K * V;
    const bool live = j < V; /* the block is a whole number of warps; the extra lanes add zeros */
    float *dS = sm, *qs = dS + KV, *ks = qs + K, *as = ks + K, *bs = as + K, *dec = bs + K;
    float *aq = dec + K, *ak = aq + K, *aa = ak + K, *ab = aa + K, *ag = ab + K;
    for (size_t e = threadIdx.x; e < KV; e += blockDim.x) dS[e] = dht ? dht[bh * KV + e] : 0.0f;
    for (int t = s.T - 1; t >= 0; t--) {
        size_t r = dplr_tok(s, b, t, h);
        __syncthreads();
        dplr_load_token(x, r, qs, ks, as, bs, dec);
        for (int i = threadIdx.x; i < K; i += blockDim.x) aq[i] = ak[i] = aa[i] = ab[i] = ag[i] = 0.0f;
        __syncthreads();
        const float *P = saved + ((size_t)bh * s.T + t) * KV;
        float vj = live ? x.v[r * V + j] : 0.0f, dj = live ? dout[r * V + j] : 0.0f, w = 0.0f;
        if (live)
            for (int i = 0; i < K; i++) w += P[i * V + j] * as[i];
        float dvj = 0.0f, dw = 0.0f;
        for (int i = 0; i < K; i++) {
            float p = live ? P[i * V + j] : 0.0f, st = dec[i] * p + bs[i] * w + ks[i] * vj;
            float y = live ? dS[i * V + j] + s.scale * qs[i] * dj : 0.0f;
            if (live) dS[i * V + j] = y;
            add_over_block(&aq[i], s.scale * st * dj);
            add_over_block(&ak[i], y * vj);
            add_over_block(&ab[i], y * w);
            add_over_block(&ag[i], dec[i] * y * p);
            dvj += y * ks[i];
            dw += y * bs[i];
        }
        for (int i = 0; i < K; i++) {
            float p = live ? P[i * V + j] : 0.0f;
            add_over_block(&aa[i], p * dw);
            if (live) dS[i * V + j] = dec[i] * dS[i * V + j] + as[i] * dw;
        }
        if (live) dv[r * V + j] = dvj;
        __syncthreads();
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            dq[r * K + i] = aq[i];
            dk[r * K + i] = ak[i];
            da[r * K + i] = aa[i];
            db[r * K + i] = ab[i];
            dgk[r * K + i] = ag[i];
        }
    }
    __syncthreads();
    if (dh0)
        for (size_t e = threadIdx.x; e < KV; e += blockDim.x) dh0[bh * KV + e] = dS[e];
}

static size_t rec_smem(const ScanShape *s) { return sizeof(float) * ((size_t)s->K * s->V + 10 * (size_t)s->K + 32); }

static void check_rec(const ScanShape *s) { check_recurrent_fits(s, rec_smem(s), "dplr rule"); }

// ---- entry points ----

extern "C" size_t cuda_dplr_saved(const ScanShape *s) { return core_saved_floats(s); }

extern "C" size_t cuda_dplr_workspace(const ScanShape *s) { return core_workspace(s); }

extern "C" void cuda_dplr_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                                  const float *k, const float *v, const float *a, const float *b, const float *gk,
                                  const float *initial_state, float *work) {
    if (s->chunk) {
        chunk_forward(s, o, final_state, saved, q, k, v, a, b, gk, initial_state, work);
        return;
    }
    check_rec(s);
    DplrRecArgs x = {*s, q, k, v, a, b, gk};
    size_t smem = rec_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(dplr_rec_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dplr_rec_forward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(x, o, final_state, saved, initial_state, 0);
    CUDA_LAUNCHED();
}

extern "C" void cuda_dplr_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db,
                                   float *dgk, float *dinitial_state, const float *dfinal_state, const float *dout,
                                   const float *q, const float *k, const float *v, const float *a, const float *b,
                                   const float *gk, const float *saved, float *work) {
    if (s->chunk) {
        chunk_backward(s, dq, dk, dv, da, db, dgk, dinitial_state, dfinal_state, dout, q, k, v, a, b, gk, saved, work);
        return;
    }
    check_rec(s);
    DplrRecArgs x = {*s, q, k, v, a, b, gk};
    size_t smem = rec_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(dplr_rec_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dplr_rec_backward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(x, dq, dk, dv, da, db, dgk, dinitial_state,
                                                                       dfinal_state, dout, saved);
    CUDA_LAUNCHED();
}

extern "C" void cuda_dplr_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                               const float *v, const float *a, const float *b, const float *gk) {
    check_rec(s);
    ScanShape one = *s;
    one.T = 1;
    DplrRecArgs x = {one, q, k, v, a, b, gk};
    size_t smem = sizeof(float) * 5 * (size_t)s->K;
    dplr_rec_forward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(x, o, state, NULL, NULL, 1);
    CUDA_LAUNCHED();
}
