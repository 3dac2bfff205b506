// The gated delta rule (gdn, kda) on the GPU.
//
// Chunkwise, restructured for a GPU: for every chunk at once (spec notation, X = L^-1 with
// L = I + diag(beta) A'),
//   A', M (pairwise decayed products, one kernel, by sub-chunks), X (a triangular inverse per chunk),
//   W = Xb Kb, U~ = Xb V with Xb = X diag(beta)
// then the only sequential part, over chunks (batched over batch and heads):
//   U_c = U~_c - W_c S_c,  S_{c+1} = diag(exp(b_last)) S_c + Kc_c^T U_c
// and again for every chunk at once: O = scale (Qb S_c + M U). The backward mirrors it: a
// reverse pass over chunks for the state gradients, everything else in parallel. The per-chunk
// products run as kernels that load a chunk's tiles once and run every product reading them
// (delta_products.cu), or, where those do not run (fp32 mode, shapes they do not take), as
// strided-batched cuBLAS products over all chunks.
//
// Recurrent (the reference form, and decode): one block per (batch, head), the K x V state in
// shared memory, one thread per value channel.
#include <math.h>

#include <algorithm>

#include "chunk_state.cuh"
#include "chunks.cuh"
#include "cuda_ops.cuh"
#include "decode_step.cuh"
#include "delta_products.cuh"
#include "pairs_mma.cuh"
#include "recurrent.cuh"

// ---- chunk buffers ----

// The buffers, F(name, floats) in the order they are carved, for Z chunks of C rows (rows = Z C).
// In `work`: the chunk copies of the inputs and what the gates make of them (gates_kernel reads q,
// k and g where the caller keeps them), then the forward scratch (o is dU in the backward), then
// for a backward its scratch. The copies of q, k, v and dO (and dv, dbeta) are made only for the
// kernels that read the chunk layout (the fp32 pair kernels, cuBLAS's products); the tensor-core
// ones read and write the caller's rows. Their space is carved either way.
#define DELTA_WORK(F)                                                                                                 \
    F(q, rows * K) F(k, rows * K) F(v, rows * V) F(beta, rows) F(bk, rows * K)                                        \
    F(qb, rows * K) F(kb, rows * K) F(kc, rows * K) F(blast, Z * K) F(o, rows * V) F(Xb, Z * C * C)
#define DELTA_BACKWARD_WORK(F)                                                                                        \
    F(dO, rows * V) F(P2, Z * K * V) F(dSend, Z * K * V) F(dM, Z * C * C) F(dQb, rows * K) F(dKc, rows * K)           \
    F(dW, rows * K) F(dX, Z * C * C) F(dL, Z * C * C) F(tmp, Z * C * C) F(dKb, rows * K) F(dbw, rows)                 \
    F(dq, rows * K) F(dk, rows * K) F(dv, rows * V) F(dgk, rows * K) F(dbeta, rows) F(dblast, Z * K)
// kept from the forward for the backward (they live in `saved`)
#define DELTA_SAVED(F) F(S, Z * K * V) F(A, Z * C * C) F(M, Z * C * C) F(X, Z * C * C) F(W, Z * C * K) F(U, Z * C * V)

CHUNK_BUFFERS(DeltaBufs, DELTA_WORK, DELTA_BACKWARD_WORK, DELTA_SAVED)

// ---- kernels of the chunkwise form ----

// Per (chunk, channel), reading q, k and the log decays g where the caller keeps them ([B, T, H,
// K], g [B, T, H, gw]; rows past T read as zero): the chunk copies qz, kz of q and k (for the fp32
// pair kernels; null when the tensor-core ones read q and k in place), b = the
// cumulative log decay within the chunk (per channel; the head's scalar in channel 0 alone, which
// is all its readers read), and Qb = Q e^b, Kb = K e^b, Kc = K e^(b_last - b); blast = b_last.
// With a scalar gate each thread sums its rows' decays again in the second pass (the same sums in
// the same order) where a channel gate's read them back: the head's bk then takes one float a row
// written and none read back, where it took K of each.
// (Templated on the gate's kind: the scalar's extra sums cost the channel gate's kernel registers.)
constexpr int GATE_ROWS = 8;
template <bool CHANNEL>
__global__ void gates_kernel(float *qz, float *kz, float *bk, float *qb, float *kb, float *kc, float *blast,
                             const float *q, const float *k, const float *g, ChunkDims cd, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)cd.Z * K) return;
    size_t z = i / K, bh = z / cd.nc;
    int d = (int)(i % K), gw = CHANNEL ? K : 1, gd = CHANNEL ? d : 0, C = cd.C, t0 = (int)(z % cd.nc) * C;
    int h = (int)(bh % cd.H), b = (int)(bh / cd.H);
    size_t src0 = ((size_t)b * cd.T + t0) * cd.H + h; /* the source row of the chunk's first token */
    int n = min(C, cd.T - t0);                        /* its tokens before T */
    /* GATE_ROWS rows' loads issued before any is used: a thread walks its channel down the chunk,
     * and one load at a time left it waiting on each (2.3 TB/s on an H200) */
    float acc = 0.0f;
    for (int r0 = 0; r0 < C; r0 += GATE_ROWS) {
        float gv[GATE_ROWS];
#pragma unroll
        for (int u = 0; u < GATE_ROWS; u++) gv[u] = r0 + u < n ? g[(src0 + (size_t)(r0 + u) * cd.H) * gw + gd] : 0.0f;
#pragma unroll
        for (int u = 0; u < GATE_ROWS && r0 + u < C; u++) {
            if (r0 + u < n) acc += gv[u];
            if (CHANNEL || d == 0) bk[(z * C + r0 + u) * K + d] = acc;
        }
    }
    blast[z * K + d] = acc;
    float run = 0.0f; /* a scalar gate's sum so far */
    for (int r0 = 0; r0 < C; r0 += GATE_ROWS) {
        float qv[GATE_ROWS], kv[GATE_ROWS], bv[GATE_ROWS];
#pragma unroll
        for (int u = 0; u < GATE_ROWS; u++) {
            const int r = r0 + u;
            const size_t src = (src0 + (size_t)r * cd.H) * K + d;
            qv[u] = r < n && (qz || qb) ? q[src] : 0.0f, kv[u] = r < n ? k[src] : 0.0f;
            if (CHANNEL) {
                bv[u] = r < C ? bk[(z * C + r) * K + d] : 0.0f;
            } else {
                if (r < n) run += g[src0 + (size_t)r * cd.H];
                bv[u] = r < C ? run : 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < GATE_ROWS && r0 + u < C; u++) {
            const size_t e = (z * C + r0 + u) * K + d;
            const float x = expf(bv[u]);
            if (qz) {
                qz[e] = qv[u];
                kz[e] = kv[u];
            }
            if (qb) { /* null where the forward's products make them (GatedRows) */
                qb[e] = qv[u] * x;
                kb[e] = kv[u] * x;
            }
            kc[e] = kv[u] * expf(acc - bv[u]);
        }
    }
}

// chunk z's C x K rows of q, k and bk into shared tiles at row stride K + 1 (a scalar gate's
// channel 0 on every channel)
__device__ __forceinline__ void load_chunk_rows(float *Qs, float *Ks, float *Bs, const float *q, const float *k,
                                                const float *bk, size_t z, int C, int K, int channel) {
    const int p = K + 1;
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
        int r = e / K, d = e % K;
        Qs[r * p + d] = q[z * C * K + e];
        Ks[r * p + d] = k[z * C * K + e];
        Bs[r * p + d] = bk[z * C * K + r * K + (channel ? d : 0)];
    }
}

// A'[r,j] = sum_d k_rd k_jd exp(b_rd - b_jd) (j < r), M[r,j] = sum_d q_rd k_jd exp(b_rd - b_jd)
// (j <= r): one block per chunk, its rows in shared memory, a thread per pair with an exp per
// channel. (The backward's sub-chunks, below, tried here too, were slower in the forward on an H200:
// 5.2 against 3.8 ms a hybrid step, their extra tiles halving the blocks an SM holds.)
__global__ void pairs_kernel(float *A, float *M, const float *q, const float *k, const float *bk, int C, int K,
                             int channel) {
    extern __shared__ float sm[];
    const int p = K + 1;
    float *Qs = sm, *Ks = Qs + C * p, *Bs = Ks + C * p;
    size_t z = blockIdx.x;
    load_chunk_rows(Qs, Ks, Bs, q, k, bk, z, C, K, channel);
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int r = e / C, j = e % C;
        float a = 0.0f, m = 0.0f;
        if (j <= r) {
            for (int d = 0; d < K; d++) {
                float w = Ks[j * p + d] * __expf(Bs[r * p + d] - Bs[j * p + d]);
                a += Ks[r * p + d] * w;
                m += Qs[r * p + d] * w;
            }
        }
        A[z * C * C + e] = j < r ? a : 0.0f;
        M[z * C * C + e] = m;
    }
}

// beta is folded into the C x C inverse (W = Xb Kb, U~ = Xb V with Xb = X diag(beta)) rather than
// into the C x K and C x V rows it multiplies. The backward: with G = dW Kb^T + dU V^T (in dX),
// dX = G diag(beta) in place, Xb again, and the W and U~ part of dbeta, dbw[z, r] = sum_i X_ir
// G_ir (a thread per chunk column: the rows of one step are consecutive)
__global__ void beta_columns_kernel(float *dX, float *Xb, float *dbw, const float *X, const float *beta, long Z, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)Z * C) return;
    size_t z = i / C;
    int r = (int)(i % C);
    float acc = 0.0f, b = beta[i];
    for (int a = 0; a < C; a++) {
        size_t e = (z * C + a) * C + r;
        float g = dX[e], x = X[e];
        acc += x * g;
        dX[e] = b * g;
        Xb[e] = x * b;
    }
    dbw[i] = acc;
}

// dbeta[z, r] = dbw[z, r] + sum_{j<r} dL_rj A'_rj; dA'_rj = beta_r dL_rj
__global__ void beta_grad_kernel(float *dbeta, float *dA, const float *dbw, const float *dL, const float *A,
                                 const float *beta, long Z, int C) {
    WARP_ROW(i, Z * C);
    int r = (int)(i % C);
    float acc = 0.0f;
    const float *dl = dL + i * C, *a = A + i * C;
    float *da = dA + i * C;
    for (int j = lane; j < C; j += 32) {
        if (j < r) {
            acc += dl[j] * a[j];
            da[j] = beta[i] * dl[j];
        } else {
            da[j] = 0.0f;
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) dbeta[i] = dbw[i] + acc;
}

// The backward's decayed pair products go through sub-chunks of PAIR_SUB rows, as on the CPU
// (core/cpu/decayed_products.c): for rows r of the sub-chunk starting at rho and rows j < rho,
//   exp(b_r - b_j) = exp(b_r - b_rho) exp(b_rho - b_j),
// both factors <= 1 (b only decreases), so the pairs of different sub-chunks take an exp per row
// and channel instead of one per pair and channel; only pairs inside a sub-chunk take the
// difference directly. (Through the chunk start instead, a factor could overflow.)
// rows j < rho of the last sub-chunk: the factor tiles of rows before a sub-chunk
__host__ __device__ constexpr int rows_before_last_sub(int C) { return (C - 1) / PAIR_SUB * PAIR_SUB; }

// The backward of pairs_kernel: from dA' (strict) and dM (with the diagonal), adds to dq, dk and
// the per-channel db. One block per chunk, a sub-chunk of rows r at a time (as the forward): its
// rows as the pairs' r, then every row up to its last as their j. With e = exp(b_r - b_j),
//   dq_r += sum_j dM_rj e k_j,   dk_r += sum_j dA_rj e k_j,   dk_j += sum_r e (dA_rj k_r + dM_rj q_r),
// and db takes q_r dq_r + k_r dk_r over the r terms and -k_j dk_j over the j terms (each pair's
// term, with + for b_r and - for b_j). dA' and dM are staged by column (PAIR_SUB rows of a column side
// by side), so a thread reads four rows' values in one load.
constexpr int R4 = 4; // rows r a thread takes at once as the pairs' r

__global__ void pairs_backward_kernel(float *dq, float *dk, float *dbk, const float *dA, const float *dM,
                                      const float *q, const float *k, const float *bk, int C, int K, int channel) {
    extern __shared__ __align__(16) float sm[];
    const int p = K + 1;
    float *dAt = sm, *dMt = dAt + C * PAIR_SUB; /* [j][i]: the sub-chunk's rows i of column j */
    float *Qs = dMt + C * PAIR_SUB, *Ks = Qs + C * p, *Bs = Ks + C * p;
    float *E = Bs + C * p, *F = E + PAIR_SUB * p; /* exp(b_r - b_rho) of the sub-chunk's rows; exp(b_rho - b_j) before it */
    size_t z = blockIdx.x;
    load_chunk_rows(Qs, Ks, Bs, q, k, bk, z, C, K, channel);
    for (int rho = 0; rho < C; rho += PAIR_SUB) {
        int nr = min(PAIR_SUB, C - rho);
        const float *bref = Bs + rho * p;
        __syncthreads(); /* the rows are loaded; the previous sub-chunk is done with the tiles */
        for (int e = threadIdx.x; e < (nr + rho) * K; e += blockDim.x) {
            int i = e / K, d = e % K;
            if (i < nr) E[i * p + d] = __expf(Bs[(rho + i) * p + d] - bref[d]);
            else F[(i - nr) * p + d] = __expf(bref[d] - Bs[(i - nr) * p + d]);
        }
        for (int e = threadIdx.x; e < PAIR_SUB * C; e += blockDim.x) { /* rows past the chunk's end are zero */
            int i = e / C, j = e % C;
            bool in = i < nr;
            dAt[j * PAIR_SUB + i] = in ? dA[(z * C + rho + i) * C + j] : 0.0f;
            dMt[j * PAIR_SUB + i] = in ? dM[(z * C + rho + i) * C + j] : 0.0f;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < (PAIR_SUB / R4) * K; e += blockDim.x) { /* the sub-chunk's rows as r, R4 at a time */
            int i0 = e / K * R4, d = e % K;
            if (i0 >= nr) continue;
            float gq[R4] = {}, gk[R4] = {};
            for (int j = 0; j < rho; j++) {
                float kf = Ks[j * p + d] * F[j * p + d];
                float4 m = *reinterpret_cast<const float4 *>(dMt + j * PAIR_SUB + i0);
                float4 a = *reinterpret_cast<const float4 *>(dAt + j * PAIR_SUB + i0);
                gq[0] += m.x * kf, gq[1] += m.y * kf, gq[2] += m.z * kf, gq[3] += m.w * kf;
                gk[0] += a.x * kf, gk[1] += a.y * kf, gk[2] += a.z * kf, gk[3] += a.w * kf;
            }
#pragma unroll
            for (int u = 0; u < R4; u++) {
                int i = i0 + u, r = rho + i;
                if (i >= nr) break;
                float er = E[i * p + d], br = Bs[r * p + d], q_ = gq[u] * er, k_ = gk[u] * er;
                for (int j = rho; j <= r; j++) { /* the same sub-chunk: the difference per channel */
                    float kj = Ks[j * p + d] * __expf(br - Bs[j * p + d]);
                    q_ += dMt[j * PAIR_SUB + i] * kj;
                    k_ += dAt[j * PAIR_SUB + i] * kj;
                }
                size_t o = (z * C + r) * K + d;
                dq[o] += q_;
                dk[o] += k_;
                dbk[o] += q_ * Qs[r * p + d] + k_ * Ks[r * p + d];
            }
        }
        __syncthreads(); /* the sub-chunk's rows have their r terms before they take their j terms */
        for (int e = threadIdx.x; e < (rho + nr) * K; e += blockDim.x) { /* rows up to its last as j */
            int j = e / K, d = e % K;
            float g = 0.0f;
            if (j < rho) { /* an earlier sub-chunk: factored */
                for (int i = 0; i < nr; i++) {
                    int r = rho + i;
                    g += E[i * p + d] * (dAt[j * PAIR_SUB + i] * Ks[r * p + d] + dMt[j * PAIR_SUB + i] * Qs[r * p + d]);
                }
                g *= F[j * p + d];
            } else { /* the same sub-chunk: the difference per channel */
                float bj = Bs[j * p + d];
                for (int i = j - rho; i < nr; i++) {
                    int r = rho + i;
                    g += __expf(Bs[r * p + d] - bj) * (dAt[j * PAIR_SUB + i] * Ks[r * p + d] + dMt[j * PAIR_SUB + i] * Qs[r * p + d]);
                }
            }
            size_t o = (z * C + j) * K + d;
            dk[o] += g;
            dbk[o] -= g * Ks[j * p + d];
        }
    }
}

// Per (chunk, channel): dq and dk, the pairs' parts (in chunks) plus the terms of Qb, Kb and Kc,
// written where the caller keeps them ([B, T, H, K]; rows past T dropped); the per-row db into dg
// (reverse cumulative sum, with b_last's own gradient counted on every row, past T too): for a
// channel gate (kda) where the caller keeps dg, for a scalar one (gdn) in place in the chunks' dgk,
// whose channels the caller then sums.
template <bool CHANNEL>
__global__ void finish_grads_kernel(float *dq, float *dk, float *dg, const float *dq_part, const float *dk_part,
                                    float *dgk, const float *dQb, const float *dkb_total, const float *dKc,
                                    const float *qb, const float *kb, const float *kc, const float *bk,
                                    const float *dblast, ChunkDims cd, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)cd.Z * K) return;
    size_t z = i / K, bh = z / cd.nc;
    int d = (int)(i % K), C = cd.C, t0 = (int)(z % cd.nc) * C, h = (int)(bh % cd.H), b = (int)(bh / cd.H);
    const int gd = CHANNEL ? d : 0;                   /* bk's channel (gates_kernel) */
    size_t out0 = ((size_t)b * cd.T + t0) * cd.H + h; /* the caller's row of the chunk's first token */
    int n = min(C, cd.T - t0);                        /* its tokens before T */
    float last = dblast[i], blast = bk[(z * C + C - 1) * K + gd];
    for (int r = 0; r < C; r++) {
        size_t e = (z * C + r) * K + d;
        const float br = bk[(z * C + r) * K + gd];
        float eb = expf(br), ec = expf(blast - br), w = dKc[e] * kc[e];
        if (r < n) {
            size_t o = (out0 + (size_t)r * cd.H) * K + d;
            dq[o] = dq_part[e] + dQb[e] * eb;
            dk[o] = dk_part[e] + (dkb_total[e] * eb + dKc[e] * ec);
        }
        dgk[e] = dgk[e] + dQb[e] * qb[e] + dkb_total[e] * kb[e] - w;
        last += w;
    }
    float run = last;
    for (int r = C - 1; r >= 0; r--) {
        size_t e = (z * C + r) * K + d;
        run += dgk[e];
        if (!CHANNEL) dgk[e] = run;
        else if (r < n) dg[(out0 + (size_t)r * cd.H) * K + d] = run;
    }
}

// gdn: the head's scalar gate collects its channels
__global__ void sum_channels_kernel(float *dg, const float *dgk, size_t rows, int K) {
    WARP_ROW(i, rows);
    float acc = 0.0f;
    for (int d = lane; d < K; d += 32) acc += dgk[i * K + d];
    acc = warp_sum(acc);
    if (lane == 0) dg[i] = acc;
}

static size_t pairs_smem(int C, int K) { return sizeof(float) * 3 * (size_t)C * (K + 1); }
static size_t pairs_backward_smem(int C, int K) {
    return sizeof(float) * (2 * (size_t)C * PAIR_SUB + (size_t)(K + 1) * (3 * C + PAIR_SUB + rows_before_last_sub(C)));
}

// The chunk copies and the gates; v's copy only for products that read it from the chunk layout
// (cuBLAS's: delta_products.cu's kernels read v where the caller keeps it), Qb and Kb only where
// the products do not make them from q and k (qkb).
static void prepare(const ScanShape *s, const ChunkDims &d, DeltaBufs &b, const float *q, const float *k, const float *v,
                    const float *g, const float *beta, bool v_chunks, bool qkb = true) {
    const int K = s->K, V = s->V;
    const bool qk_chunks = !pairs_mma_takes(q, k, d.C, K);
    if (v_chunks) to_chunks(b.v, v, d, V);
    to_chunks(b.beta, beta, d, 1);
    auto gates = s->channel_gate ? gates_kernel<true> : gates_kernel<false>;
    gates<<<grid_for((size_t)d.Z * K, 128), 128>>>(qk_chunks ? b.q : nullptr, qk_chunks ? b.k : nullptr, b.bk,
                                                  qkb ? b.qb : nullptr, qkb ? b.kb : nullptr, b.kc, b.blast, q, k, g,
                                                  d, K);
    CUDA_LAUNCHED();
}

// The shape's chunked form fits, and the chunk buffers start 16-byte aligned (their pieces are
// carved at 256 bytes): the tensor-core kernels copy their tiles 16 bytes at a time.
static void check_chunk_shape(const ScanShape *s, const float *work, const float *saved) {
    check_chunk_fits(s, std::max(pairs_smem(s->chunk, s->K), pairs_backward_smem(s->chunk, s->K)), "delta rule");
    if (!aligned16(work) || !aligned16(saved)) die("GPU delta rule: work or saved buffer not 16-byte aligned");
}

// the tests' switch: -1 keeps the gates' Qb and Kb for a scalar gate's forward too, 0 the shape's choice
static int gated_rows_force;
extern "C" void cuda_delta_gated_rows_force(int which) { gated_rows_force = which; }

static void chunk_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                          const float *k, const float *v, const float *g, const float *beta,
                          const float *initial_state, float *work) {
    check_chunk_shape(s, work, saved);
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C, BH = d.B * d.H, nc = d.nc;
    DeltaBufs b;
    size_t used = carve_work(s, work, &b, false);
    if (saved) carve_saved(s, saved, &b);
    else carve_saved(s, (float *)((char *)work + used), &b); /* a forward without a backward */
    const bool fused_wu = delta_products_run(DELTA_WU, C, K, V, {v}),
               fused_output = delta_products_run(DELTA_OUTPUT, C, K, V, {o});
    /* a head's scalar gate: Qb and Kb made by the products that read them, from q and k, rather
     * than written by the gates and read back (2 of GDN's forward's 7 K-wide writes). On an H200 at
     * 4 x 4096 x 16 x 128 the gates' pass takes half the time and W and U~'s a fifth more (ncu);
     * GDN's forward took 1.30 ms with this and 1.33 without it (fwd+bwd 4.54 and 4.58; two rounds
     * each in one call, 2026-12-02); at heads of 64 level (0.41 ms) */
    const bool gated_rows =
        !s->channel_gate && fused_wu && fused_output && all_aligned16({q, k}) && gated_rows_force >= 0;
    prepare(s, d, b, q, k, v, g, beta, !fused_wu, !gated_rows);
    if (!pairs_mma_forward(b.A, b.M, q, k, b.bk, d, K, !s->channel_gate)) {
        size_t smem = pairs_smem(C, K);
        CUDA_CHECK(cudaFuncSetAttribute(pairs_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        pairs_kernel<<<(unsigned)d.Z, 256, smem>>>(b.A, b.M, b.q, b.k, b.bk, C, K, s->channel_gate);
        CUDA_LAUNCHED();
    }
    unit_lower_inverse(b.X, b.Xb, b.A, b.beta, 1.0f, d.Z, C);
    const long long CC = (long long)C * C, CK = (long long)C * K, CV = (long long)C * V, KV = (long long)K * V;
    if (fused_wu) {
        delta_products_wu(b.W, b.U, b.Xb, gated_rows ? GatedRows{nullptr, k, b.bk} : GatedRows{b.kb, nullptr, nullptr},
                          v, d, K, V);
    } else {
        cuda_gemm_batched(false, false, C, K, C, 1.0f, b.Xb, C, CC, b.kb, K, CK, 0.0f, b.W, K, CK, (int)d.Z);
        cuda_gemm_batched(false, false, C, V, C, 1.0f, b.Xb, C, CC, b.v, V, CV, 0.0f, b.U, V, CV, (int)d.Z);
    }
    /* the state recurrence over chunks, one kernel */
    ChunkState cs = {b.W, b.kc, b.blast, BH, nc, C, K, V};
    chunk_state_forward(cs, b.S, b.U, final_state, initial_state, nullptr);
    /* O = scale (Qb S + M U), every chunk at once */
    if (fused_output) {
        delta_products_output(o, gated_rows ? GatedRows{nullptr, q, b.bk} : GatedRows{b.qb, nullptr, nullptr}, b.S,
                              b.M, b.U, s->scale, d, K, V);
        return;
    }
    cuda_gemm_batched(false, false, C, V, K, s->scale, b.qb, K, CK, b.S, V, KV, 0.0f, b.o, V, CV, (int)d.Z);
    cuda_gemm_batched(false, false, C, V, C, s->scale, b.M, C, CC, b.U, V, CV, 1.0f, b.o, V, CV, (int)d.Z);
    from_chunks(o, b.o, d, V);
}

// The backward through W = Xb Kb, U~ = Xb V and X = L^-1 as strided-batched products (where
// delta_products.cu's fused kernel does not run): into b.dKb, b.dv, b.dbeta and dA'.
static void beta_grads(const ScanShape *s, const ChunkDims &d, DeltaBufs &b, float *dA) {
    const int K = s->K, V = s->V, C = d.C, Z = (int)d.Z;
    const long long CC = (long long)C * C, CK = (long long)C * K, CV = (long long)C * V;
    const size_t rows = (size_t)d.Z * C;
    const float *dU = b.o;
    /* Xb = X diag(beta): G = dW Kb^T + dU V^T, dX = G diag(beta), dKb = Xb^T dW, dV = Xb^T dU, and
       dbeta takes sum_i X_ir G_ir */
    cuda_gemm_batched(false, true, C, C, K, 1.0f, b.dW, K, CK, b.kb, K, CK, 0.0f, b.dX, C, CC, Z);
    cuda_gemm_batched(false, true, C, C, V, 1.0f, dU, V, CV, b.v, V, CV, 1.0f, b.dX, C, CC, Z);
    beta_columns_kernel<<<grid_for(rows, 128), 128>>>(b.dX, b.Xb, b.dbw, b.X, b.beta, d.Z, C);
    CUDA_LAUNCHED();
    cuda_gemm_batched(true, false, C, K, C, 1.0f, b.Xb, C, CC, b.dW, K, CK, 0.0f, b.dKb, K, CK, Z);
    cuda_gemm_batched(true, false, C, V, C, 1.0f, b.Xb, C, CC, dU, V, CV, 0.0f, b.dv, V, CV, Z);
    /* X = L^-1: dL = -X^T dX X^T */
    cuda_gemm_batched(false, true, C, C, C, 1.0f, b.dX, C, CC, b.X, C, CC, 0.0f, b.tmp, C, CC, Z);
    cuda_gemm_batched(true, false, C, C, C, -1.0f, b.X, C, CC, b.tmp, C, CC, 0.0f, b.dL, C, CC, Z);
    beta_grad_kernel<<<grid_for(rows * 32, 256), 256>>>(b.dbeta, dA, b.dbw, b.dL, b.A, b.beta, d.Z, C);
    CUDA_LAUNCHED();
}

// See the notes above the kernels for the algebra; dU lives in the o slot.
static void chunk_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                           float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                           const float *k, const float *v, const float *g, const float *beta, const float *saved,
                           float *work) {
    check_chunk_shape(s, work, saved);
    ChunkDims d = chunk_dims(s);
    const int K = s->K, V = s->V, C = d.C, BH = d.B * d.H, nc = d.nc, gw = s->channel_gate ? K : 1;
    DeltaBufs b;
    carve_work(s, work, &b, true);
    carve_saved(s, (float *)saved, &b);
    const bool fused_dout = delta_products_run(DELTA_DOUT, C, K, V, {dout}),
               fused_state = delta_products_run(DELTA_STATE_GRADS, C, K, V, {dout}),
               fused_beta = delta_products_run(DELTA_BETA_GRADS, C, K, V, {v, dv});
    prepare(s, d, b, q, k, v, g, beta, !fused_beta);
    if (!fused_dout || !fused_state) to_chunks(b.dO, dout, d, V);
    const long long CC = (long long)C * C, CK = (long long)C * K, CV = (long long)C * V, KV = (long long)K * V;
    const int Z = (int)d.Z;
    float *dU = b.o, *dA = b.tmp;
    if (fused_dout) {
        delta_products_dout(b.P2, dU, b.qb, b.M, dout, s->scale, d, K, V);
    } else {
        cuda_gemm_batched(true, false, K, V, C, s->scale, b.qb, K, CK, b.dO, V, CV, 0.0f, b.P2, V, KV, Z);
        cuda_gemm_batched(true, false, C, V, C, s->scale, b.M, C, CC, b.dO, V, CV, 0.0f, dU, V, CV, Z);
    }
    /* the state gradients over chunks, last to first, one kernel */
    ChunkState cs = {b.W, b.kc, b.blast, BH, nc, C, K, V};
    chunk_state_backward(cs, b.dSend, dU, dinitial_state, dfinal_state, b.P2);
    dblast_state_kernel<<<grid_for((size_t)d.Z * K * 32, 256), 256>>>(b.dblast, b.dSend, b.S, b.blast, d.Z, K, V);
    CUDA_LAUNCHED();
    /* every chunk at once */
    if (fused_state) {
        delta_products_state_grads(b.dKc, b.dQb, b.dM, b.dW, b.U, b.dSend, dout, b.S, dU, s->scale, d, K, V);
    } else {
        cuda_gemm_batched(false, true, C, K, V, 1.0f, b.U, V, CV, b.dSend, V, KV, 0.0f, b.dKc, K, CK, Z);
        cuda_gemm_batched(false, true, C, K, V, s->scale, b.dO, V, CV, b.S, V, KV, 0.0f, b.dQb, K, CK, Z);
        cuda_gemm_batched(false, true, C, C, V, s->scale, b.dO, V, CV, b.U, V, CV, 0.0f, b.dM, C, CC, Z);
        mask_upper(b.dM, d, false);
        cuda_gemm_batched(false, true, C, K, V, -1.0f, dU, V, CV, b.S, V, KV, 0.0f, b.dW, K, CK, Z);
    }
    if (fused_beta) delta_products_beta_grads(b.dKb, dv, dbeta, dA, b.dW, b.kb, dU, v, b.X, b.A, b.beta, d, K, V);
    else beta_grads(s, d, b, dA);
    size_t rows = (size_t)d.Z * C;
    CUDA_CHECK(cudaMemsetAsync(b.dq, 0, sizeof(float) * rows * K));
    CUDA_CHECK(cudaMemsetAsync(b.dk, 0, sizeof(float) * rows * K));
    CUDA_CHECK(cudaMemsetAsync(b.dgk, 0, sizeof(float) * rows * K));
    if (!pairs_mma_backward(b.dq, b.dk, b.dgk, dA, b.dM, b.A, b.M, q, k, b.bk, d, K, !s->channel_gate)) {
        size_t psm = pairs_backward_smem(C, K);
        CUDA_CHECK(cudaFuncSetAttribute(pairs_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)psm));
        pairs_backward_kernel<<<(unsigned)d.Z, 256, psm>>>(b.dq, b.dk, b.dgk, dA, b.dM, b.q, b.k, b.bk, C, K,
                                                           s->channel_gate);
        CUDA_LAUNCHED();
    }
    auto finish = s->channel_gate ? finish_grads_kernel<true> : finish_grads_kernel<false>;
    finish<<<grid_for((size_t)d.Z * K, 128), 128>>>(dq, dk, dg, b.dq, b.dk, b.dgk, b.dQb, b.dKb, b.dKc, b.qb, b.kb,
                                                   b.kc, b.bk, b.dblast, d, K);
    CUDA_LAUNCHED();
    if (!fused_beta) {
        from_chunks(dv, b.dv, d, V);
        from_chunks(dbeta, b.dbeta, d, 1);
    }
    if (!s->channel_gate) {
        float *dgs = b.tmp; /* free again: the pairs' dA' is done with */
        sum_channels_kernel<<<grid_for(rows * 32, 256), 256>>>(dgs, b.dgk, rows, K);
        CUDA_LAUNCHED();
        from_chunks(dg, dgs, d, gw);
    }
}

// ---- recurrent form: one block per (batch, head); thread j owns value channel j ----

struct RecArgs {
    ScanShape s;
    const float *q, *k, *v, *g, *beta;
};

__device__ __forceinline__ size_t rtok(const ScanShape &s, int b, int t, int h) { return ((size_t)b * s.T + t) * s.H + h; }

// loads token r's q, k and decays exp(g) into shared memory
__device__ __forceinline__ void load_token(const RecArgs &a, size_t r, float *qs, float *ks, float *dec) {
    const int K = a.s.K, gw = a.s.channel_gate ? K : 1;
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        qs[i] = a.q[r * K + i];
        ks[i] = a.k[r * K + i];
        dec[i] = expf(a.g[r * gw + (a.s.channel_gate ? i : 0)]);
    }
}

__global__ void rec_forward_kernel(RecArgs a, float *o, float *final_state, float *saved, const float *h0) {
    extern __shared__ float sm[];
    const ScanShape s = a.s;
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x;
    const size_t KV = (size_t)K * V;
    float *S = sm, *qs = sm + KV, *ks = qs + K, *dec = ks + K;
    for (size_t e = threadIdx.x; e < KV; e += blockDim.x) S[e] = h0 ? h0[bh * KV + e] : 0.0f;
    for (int t = 0; t < s.T; t++) {
        size_t r = rtok(s, b, t, h);
        __syncthreads();
        load_token(a, r, qs, ks, dec);
        __syncthreads();
        if (j >= V) continue;
        if (saved)
            for (int i = 0; i < K; i++) saved[(((size_t)bh * s.T + t) * K + i) * V + j] = S[i * V + j];
        float p = 0.0f;
        for (int i = 0; i < K; i++) {
            float x = S[i * V + j] * dec[i];
            S[i * V + j] = x;
            p += x * ks[i];
        }
        float u = a.beta[r] * (a.v[r * V + j] - p);
        o[r * V + j] = s.scale * write_then_read(S, K, V, j, ks, u, qs);
    }
    __syncthreads();
    if (final_state)
        for (size_t e = threadIdx.x; e < KV; e += blockDim.x) final_state[bh * KV + e] = S[e];
}

// reverse time with dS = d(loss)/dS_t (spec notation): the sums over value channels for dq, dk,
// dg and dbeta go through shared accumulators
__global__ void rec_backward_kernel(RecArgs a, float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dh0,
                                    const float *dht, const float *dout, const float *saved) {
    extern __shared__ float sm[];
    const ScanShape s = a.s;
    const int K = s.K, V = s.V, bh = blockIdx.x, b = bh / s.H, h = bh % s.H, j = threadIdx.x, gw = s.channel_gate ? K : 1;
    const size_t KV = (size_t)K * V;
    const bool live = j < V; /* the block is a whole number of warps; the extra lanes add zeros */
    float *dS = sm, *qs = dS + KV, *ks = qs + K, *dec = ks + K, *aq = dec + K, *ak = aq + K, *ag = ak + K, *ab = ag + K;
    for (size_t e = threadIdx.x; e < KV; e += blockDim.x) dS[e] = dht ? dht[bh * KV + e] : 0.0f;
    for (int t = s.T - 1; t >= 0; t--) {
        size_t r = rtok(s, b, t, h);
        __syncthreads();
        load_token(a, r, qs, ks, dec);
        for (int i = threadIdx.x; i < K; i += blockDim.x) aq[i] = ak[i] = ag[i] = 0.0f;
        if (threadIdx.x == 0) ab[0] = 0.0f;
        __syncthreads();
        const float *Sprev = saved + ((size_t)bh * s.T + t) * KV;
        float beta = a.beta[r], vj = live ? a.v[r * V + j] : 0.0f, dj = live ? dout[r * V + j] : 0.0f, p = 0.0f;
        if (live)
            for (int i = 0; i < K; i++) p += Sprev[i * V + j] * dec[i] * ks[i];
        float u = beta * (vj - p), du = 0.0f;
        for (int i = 0; i < K; i++) {
            float sp = live ? Sprev[i * V + j] * dec[i] : 0.0f;
            add_over_block(&aq[i], s.scale * (sp + ks[i] * u) * dj);
            float x = live ? dS[i * V + j] + s.scale * qs[i] * dj : 0.0f;
            if (live) dS[i * V + j] = x;
            du += x * ks[i];
        }
        float dp = -beta * du, gate = 0.0f;
        for (int i = 0; i < K; i++) {
            float sp = live ? Sprev[i * V + j] * dec[i] : 0.0f, xo = live ? dS[i * V + j] : 0.0f, x = xo + ks[i] * dp;
            add_over_block(&ak[i], xo * u + sp * dp); /* dk_i: the write (xo u) and the read (sp dp) */
            if (s.channel_gate) add_over_block(&ag[i], x * sp);
            else gate += x * sp;
            if (live) dS[i * V + j] = x * dec[i];
        }
        if (!s.channel_gate) add_over_block(&ag[0], gate);
        add_over_block(&ab[0], du * (vj - p));
        if (live) dv[r * V + j] = beta * du;
        __syncthreads();
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            dq[r * K + i] = aq[i];
            dk[r * K + i] = ak[i];
            if (i < gw) dg[r * gw + i] = ag[i];
        }
        if (threadIdx.x == 0) dbeta[r] = ab[0];
    }
    __syncthreads();
    if (dh0)
        for (size_t e = threadIdx.x; e < KV; e += blockDim.x) dh0[bh * KV + e] = dS[e];
}

static size_t rec_smem(const ScanShape *s) { return sizeof(float) * ((size_t)s->K * s->V + 7 * (size_t)s->K + 32); }

static void check_rec(const ScanShape *s) { check_recurrent_fits(s, rec_smem(s), "delta rule"); }

// ---- entry points ----

extern "C" size_t cuda_delta_rule_saved(const ScanShape *s) { return core_saved_floats(s); }

extern "C" size_t cuda_delta_rule_workspace(const ScanShape *s) { return core_workspace(s); }

extern "C" void cuda_delta_rule_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                                        const float *k, const float *v, const float *g, const float *beta,
                                        const float *initial_state, float *work) {
    if (s->chunk) {
        chunk_forward(s, o, final_state, saved, q, k, v, g, beta, initial_state, work);
        return;
    }
    check_rec(s);
    RecArgs a = {*s, q, k, v, g, beta};
    size_t smem = rec_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(rec_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    rec_forward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(a, o, final_state, saved, initial_state);
    CUDA_LAUNCHED();
}

extern "C" void cuda_delta_rule_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                                         float *dinitial_state, const float *dfinal_state, const float *dout,
                                         const float *q, const float *k, const float *v, const float *g,
                                         const float *beta, const float *saved, float *work) {
    if (s->chunk) {
        chunk_backward(s, dq, dk, dv, dg, dbeta, dinitial_state, dfinal_state, dout, q, k, v, g, beta, saved, work);
        return;
    }
    check_rec(s);
    RecArgs a = {*s, q, k, v, g, beta};
    size_t smem = rec_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(rec_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    rec_backward_kernel<<<s->B * s->H, value_threads(s->V), smem>>>(a, dq, dk, dv, dg, dbeta, dinitial_state,
                                                                  dfinal_state, dout, saved);
    CUDA_LAUNCHED();
}

// decode: one token of every sequence; the state is read and written in place (global memory)
extern "C" void cuda_delta_rule_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                                     const float *v, const float *g, const float *beta) {
    launch_state_step<true>(s, state, o, q, k, v, g, beta);
}
