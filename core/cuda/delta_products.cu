// The chunkwise delta rule's per-chunk matrix products, fused (see delta_rule.cu for the algebra,
// spec notation: Xb = X diag(beta), X = (I + diag(beta) A')^-1):
//   forward   W = Xb Kb, U~ = Xb V;   o = scale (Qb S + M U)
//   backward  P2 = scale Qb^T dO, dU = scale M^T dO;
//             dKc = U dSend^T, dQb = scale dO S^T, dM = scale dO U^T (lower), dW = -dU S^T;
//             G = dW Kb^T + dU V^T, dbw_r = sum_i X_ir G_ir, dX = G diag(beta),
//             dKb = Xb^T dW, dv = Xb^T dU, dL = -X^T (dX X^T),
//             dA'_rj = beta_r dL_rj (j < r), dbeta_r = dbw_r + sum_{j<r} dL_rj A'_rj.
// One block per chunk loads the tiles a group of products shares into shared memory once and
// runs them on tensor cores (TF32 operands, fp32 sums: mma_tf32.cuh), writing each result where
// it is next read (where a group's whole tiles would hold one block an SM, as beta's at heads of
// 128, its operands stream through a piece of columns at a time instead, two of them loaded
// twice). They replace strided-batched cuBLAS products over all chunks which, at 64 x 64
// tiles, were bound by memory: each read its operands from global memory and wrote its result
// back (7.4 ms of the 3:1 KDA/MLA hybrid's training step on an H200, profile c6751e0), and o, dv
// and dbeta then took another pass from the chunk layout to the caller's.
#include <limits.h>

#include "chunk_rows.cuh"
#include "cuda_common.cuh"
#include "delta_products.cuh"
#include "mma_tf32.cuh"

namespace {

constexpr int THREADS = 256;

// a shared tile's row stride by how its fragments read it (mma_tf32.cuh): along its rows (as A,
// or as B transposed) or down its columns (as A transposed, or as B)
__host__ __device__ constexpr int along_rows(int cols) { return cols + 4; }
__host__ __device__ constexpr int down_columns(int cols) { return cols + 8; }

// one product of shared tiles: op(a) (rows x kdim) times op(b) (kdim x cols)
struct Term {
    const float *a;
    int lda;
    const float *b;
    int ldb;
    int kdim;
};

// Every 16 x 8 NB block of the M x N sum op(A1) op(B1) [+ op(A2) op(B2)], the block's warps in
// turn; done(c, row0, col0) takes a warp's accumulators
template <int NB, bool A_T, bool B_T, typename Done>
__device__ __forceinline__ void products_nb(int M, int N, const Term &t1, const Term &t2, Done done) {
    const int lane = threadIdx.x % 32, col_blocks = N / (8 * NB);
    for (int task = threadIdx.x / 32; task < M / 16 * col_blocks; task += THREADS / 32) {
        const int row0 = task / col_blocks * 16, col0 = task % col_blocks * 8 * NB;
        float c[NB][4] = {};
        accumulate<NB, A_T, B_T>(c, t1.a, t1.lda, row0, t1.b, t1.ldb, col0, t1.kdim, lane, 0u);
        if (t2.a) accumulate<NB, A_T, B_T>(c, t2.a, t2.lda, row0, t2.b, t2.ldb, col0, t2.kdim, lane, 0u);
        done(c, row0, col0);
    }
}

// the same, a warp taking 32 columns where N allows, else 16 (N is a multiple of 16): N split in
// column_blocks(N) blocks, a row's outputs in as many warps
__host__ __device__ constexpr int warp_columns(int N) { return N % 32 == 0 ? 32 : 16; }
__host__ __device__ constexpr int column_blocks(int N) { return N / warp_columns(N); }
template <bool A_T, bool B_T, typename Done>
__device__ __forceinline__ void products(int M, int N, const Term &t1, const Term &t2, Done done) {
    if (warp_columns(N) == 32) products_nb<4, A_T, B_T>(M, N, t1, t2, done);
    else products_nb<2, A_T, B_T>(M, N, t1, t2, done);
}
template <bool A_T, bool B_T, typename Done>
__device__ __forceinline__ void products(int M, int N, const Term &t, Done done) {
    products<A_T, B_T>(M, N, t, Term{}, done);
}

// element e of a warp's accumulator block n: its row and column offsets from (row0, col0)
__device__ __forceinline__ int acc_row(int e) { return threadIdx.x % 32 / 4 + 8 * (e / 2); }
__device__ __forceinline__ int acc_col(int n, int e) { return 8 * n + 2 * (threadIdx.x % 4) + e % 2; }

// a warp's accumulators times alpha into rows of dst at stride ld, two floats a store; rows from
// `rows` on are left alone (past the sequence's end); `lower` writes zeros above the diagonal
template <int NB>
__device__ __forceinline__ void store_warp_tile(float *dst, size_t ld, const float (&c)[NB][4], int row0, int col0,
                                                float alpha, int rows = INT_MAX, bool lower = false) {
#pragma unroll
    for (int n = 0; n < NB; n++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = row0 + acc_row(2 * h), col = col0 + acc_col(n, 2 * h);
            if (r >= rows) continue;
            float x = alpha * c[n][2 * h], y = alpha * c[n][2 * h + 1];
            if (lower) x = col > r ? 0.0f : x, y = col + 1 > r ? 0.0f : y;
            *reinterpret_cast<float2 *>(dst + r * ld + col) = make_float2(x, y);
        }
}

// rows x cols floats of chunk z's matrix in a [Z, rows, cols] buffer into a shared tile (cp.async;
// committed by the caller)
__device__ __forceinline__ void load_tile(float *tile, int ld, const float *src, size_t z, int rows, int cols) {
    copy_rows_async<THREADS>(tile, ld, src + z * rows * cols, cols, rows, cols);
}

// chunk z's rows of a caller's [B, T, H, X] tensor into a shared tile, zeros past T
__device__ __forceinline__ void load_caller_tile(float *tile, int ld, const float *src, const ChunkDims &d, size_t z,
                                                 int X) {
    copy_caller_rows_async<THREADS>(tile, ld, src, d, z, X);
}

__device__ __forceinline__ void loaded() {
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
}

// chunk z's Qb or Kb (GatedRows) into a shared tile: the chunk layout's rows, or the caller's rows
// and, into factors (C floats), their e^b_r for scale_gated_rows once the copies are in. (Tried on
// an H200 at 4 x 4096 x 16 x 128: scaling as plain loads land instead of after the cp.async
// copies, GDN's forward 1.30 -> 1.44 ms, the loads stalling each block; the pass with a division
// by K per element, 1.38 to 1.41.)
__device__ __forceinline__ void load_gated_tile(float *tile, int ld, float *factors, const GatedRows &g,
                                                const ChunkDims &d, size_t z, int K) {
    if (!g.caller) {
        load_tile(tile, ld, g.chunked, z, d.C, K);
        return;
    }
    load_caller_tile(tile, ld, g.caller, d, z, K);
    for (int r = threadIdx.x; r < d.C; r += THREADS) factors[r] = expf(g.bk[(z * d.C + r) * K]);
}
// the caller's rows of a gated tile times their factors (after loaded(); rows past T stay zeros)
__device__ __forceinline__ void scale_gated_rows(float *tile, int ld, const float *factors, const GatedRows &g, int C,
                                                 int K) {
    if (!g.caller) return;
    for (int r = threadIdx.x / 32; r < C; r += THREADS / 32) { /* a warp a row: no division by K */
        const float f = factors[r];
        for (int c = threadIdx.x % 32; c < K; c += 32) tile[r * ld + c] *= f;
    }
    __syncthreads();
}

// Pieces 0 .. n - 1 through two shared buffers: load(i) issues piece i's copies into buffer i % 2
// and commits them, use(i) runs once they are in, while piece i + 1 loads; the barrier after use(i)
// keeps buffer i % 2 until every warp is done with it. Copies issued before the call join piece 0's
// group.
template <typename Load, typename Use> __device__ __forceinline__ void stream_pieces(int n, Load load, Use use) {
    load(0);
    for (int i = 0; i < n; i++) {
        if (i + 1 < n) {
            load(i + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        use(i);
        __syncthreads();
    }
}

// ---- the shared-memory plans: each kernel's tiles, carved in order ----

// three tiles of C rows, at row strides l0, l1 and l2
struct ThreeTiles {
    int l0, l1, l2;
    __host__ __device__ size_t floats_of(int C) const { return (size_t)C * (l0 + l1 + l2); }
};

// the tiles of a ThreeTiles plan, loaded: chunk z's matrices of a and b ([Z, C, cols] buffers) and
// its rows of the caller's tensor x ([B, T, H, x_cols])
struct PlanTiles {
    float *t0, *t1, *t2;
};
__device__ __forceinline__ PlanTiles load_plan_tiles(float *sm, const ThreeTiles &p, const float *a, int a_cols,
                                                     const float *b, int b_cols, const float *x, int x_cols,
                                                     const ChunkDims &d, size_t z) {
    const int C = d.C;
    PlanTiles t{sm, sm + C * p.l0, sm + C * (p.l0 + p.l1)};
    load_tile(t.t0, p.l0, a, z, C, a_cols);
    load_tile(t.t1, p.l1, b, z, C, b_cols);
    load_caller_tile(t.t2, p.l2, x, d, z, x_cols);
    loaded();
    return t;
}

// Xb, Kb, V, and Kb's row factors (GatedRows)
struct WuPlan : ThreeTiles {
    __host__ __device__ WuPlan(int C, int K, int V) : ThreeTiles{along_rows(C), down_columns(K), down_columns(V)} {}
    __host__ __device__ static size_t floats(int C, int K, int V) { return WuPlan(C, K, V).floats_of(C) + C; }
};

__global__ void __launch_bounds__(THREADS)
    wu_kernel(float *W, float *U, const float *Xb, GatedRows kb, const float *v, ChunkDims d, int K, int V) {
    extern __shared__ __align__(16) float sm[];
    const int C = d.C;
    const WuPlan p(C, K, V);
    const size_t z = blockIdx.x;
    float *Xs = sm, *Ks = Xs + C * p.l0, *Vs = Ks + C * p.l1, *factors = Vs + C * p.l2;
    load_tile(Xs, p.l0, Xb, z, C, C);
    load_gated_tile(Ks, p.l1, factors, kb, d, z, K);
    load_caller_tile(Vs, p.l2, v, d, z, V);
    loaded();
    scale_gated_rows(Ks, p.l1, factors, kb, C, K);
    float *Wz = W + z * C * K, *Uz = U + z * C * V;
    products<false, false>(C, K, Term{Xs, p.l0, Ks, p.l1, C},
                           [&](auto &c, int r0, int c0) { store_warp_tile(Wz, K, c, r0, c0, 1.0f); });
    products<false, false>(C, V, Term{Xs, p.l0, Vs, p.l2, C},
                           [&](auto &c, int r0, int c0) { store_warp_tile(Uz, V, c, r0, c0, 1.0f); });
}

// Qb, M, one or two stages of a piece of S's columns and the same piece of U's, and Qb's row
// factors (GatedRows): o's columns a piece at a time. The whole value width is one piece where two
// blocks fit an SM; at heads of 128 (152 KiB whole) the pieces are 32 columns, streamed through
// two stages (110 KiB, two blocks), the next piece loading while one multiplies, Qb and M loaded
// once: KDA's forward at 4 x 4096 x 16 x 128 on an H200 1.69 -> 1.67 ms against cuBLAS's two
// batched products and the pass to the caller's rows (pieces of 64 in neighbouring blocks, each
// loading Qb and M and none overlapping, 1.66). Every output's sums run in the same order either way.
struct OutputPlan {
    int lq, lm, ls, lu;
    size_t stage; /* a piece of S and of U */
    __host__ __device__ OutputPlan(int C, int K, int piece)
        : lq(along_rows(K)), lm(along_rows(C)), ls(down_columns(piece)), lu(down_columns(piece)),
          stage((size_t)K * ls + (size_t)C * lu) {}
    __host__ __device__ static size_t floats(int C, int K, int V, int piece) {
        OutputPlan p(C, K, piece);
        return (size_t)C * (p.lq + p.lm) + (piece < V ? 2 : 1) * p.stage + C;
    }
};

__global__ void __launch_bounds__(THREADS) output_kernel(float *o, GatedRows qb, const float *S, const float *M,
                                                         const float *U, float scale, ChunkDims d, int K, int V,
                                                         int piece) {
    extern __shared__ __align__(16) float sm[];
    const int C = d.C;
    const OutputPlan p(C, K, piece);
    float *Qs = sm, *Ms = Qs + C * p.lq, *stages = Ms + C * p.lm;
    float *factors = stages + (piece < V ? 2 : 1) * p.stage;
    const size_t z = blockIdx.x;
    load_gated_tile(Qs, p.lq, factors, qb, d, z, K); /* with the first piece's group */
    load_tile(Ms, p.lm, M, z, C, C);
    auto load = [&](int i) {
        float *Ss = stages + (i % 2) * p.stage, *Us = Ss + K * p.ls;
        copy_rows_async<THREADS>(Ss, p.ls, S + z * K * V + i * piece, V, K, piece);
        copy_rows_async<THREADS>(Us, p.lu, U + z * C * V + i * piece, V, C, piece);
        cp_async_commit();
    };
    const CallerRows out = caller_rows(d, z, V);
    stream_pieces(V / piece, load, [&](int i) {
        if (i == 0) scale_gated_rows(Qs, p.lq, factors, qb, C, K);
        const float *Ss = stages + (i % 2) * p.stage, *Us = Ss + K * p.ls;
        const Term qs{Qs, p.lq, Ss, p.ls, K}, mu{Ms, p.lm, Us, p.lu, C};
        auto done = [&](auto &c, int r0, int c0) {
            store_warp_tile(o + out.offset + i * piece, out.ld, c, r0, c0, scale, out.n);
        };
        /* 16-column warp tiles where 32 would leave warps idle (a piece of 32) */
        if (C / 16 * column_blocks(piece) < THREADS / 32) products_nb<2, false, false>(C, piece, qs, mu, done);
        else products<false, false>(C, piece, qs, mu, done);
    });
}

// Qb, M, dO
struct DoutPlan : ThreeTiles {
    __host__ __device__ DoutPlan(int C, int K, int V) : ThreeTiles{down_columns(K), down_columns(C), down_columns(V)} {}
    __host__ __device__ static size_t floats(int C, int K, int V) { return DoutPlan(C, K, V).floats_of(C); }
};

__global__ void __launch_bounds__(THREADS) dout_kernel(float *P2, float *dU, const float *qb, const float *M,
                                                       const float *dout, float scale, ChunkDims d, int K, int V) {
    extern __shared__ __align__(16) float sm[];
    const int C = d.C;
    const DoutPlan p(C, K, V);
    const size_t z = blockIdx.x;
    const PlanTiles t = load_plan_tiles(sm, p, qb, K, M, C, dout, V, d, z);
    const float *Qs = t.t0, *Ms = t.t1, *Os = t.t2;
    float *P2z = P2 + z * K * V, *dUz = dU + z * C * V;
    products<true, false>(K, V, Term{Qs, p.l0, Os, p.l2, C},
                          [&](auto &c, int r0, int c0) { store_warp_tile(P2z, V, c, r0, c0, scale); });
    products<true, false>(C, V, Term{Ms, p.l1, Os, p.l2, C},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dUz, V, c, r0, c0, scale); });
}

// Every tile here is read along its rows. dSend is needed by dKc alone and S by the products after
// it, so S takes dSend's place: one K x V tile fewer, three blocks an SM at heads of 64 instead of
// two.
struct StatePlan {
    int l;
    __host__ __device__ StatePlan(int, int, int V) : l(along_rows(V)) {}
    __host__ __device__ static size_t floats(int C, int K, int V) { return (size_t)(3 * C + K) * along_rows(V); }
};

__global__ void __launch_bounds__(THREADS)
    state_grads_kernel(float *dKc, float *dQb, float *dM, float *dW, const float *U, const float *dSend,
                       const float *dout, const float *S, const float *dU, float scale, ChunkDims d, int K, int V) {
    extern __shared__ __align__(16) float sm[];
    const int C = d.C, l = StatePlan(C, K, V).l;
    float *Us = sm, *Os = Us + C * l, *dUs = Os + C * l, *Ss = dUs + C * l; /* Ss holds dSend first */
    const size_t z = blockIdx.x;
    load_tile(Us, l, U, z, C, V);
    load_caller_tile(Os, l, dout, d, z, V);
    load_tile(dUs, l, dU, z, C, V);
    load_tile(Ss, l, dSend, z, K, V);
    loaded();
    float *dKcz = dKc + z * C * K, *dQbz = dQb + z * C * K, *dMz = dM + z * C * C, *dWz = dW + z * C * K;
    products<false, true>(C, K, Term{Us, l, Ss, l, V},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dKcz, K, c, r0, c0, 1.0f); });
    __syncthreads(); /* dSend is read: S in its place, loading while dM's products run */
    load_tile(Ss, l, S, z, K, V);
    cp_async_commit();
    products<false, true>(C, C, Term{Os, l, Us, l, V},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dMz, C, c, r0, c0, scale, INT_MAX, true); });
    loaded();
    products<false, true>(C, K, Term{Os, l, Ss, l, V},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dQbz, K, c, r0, c0, scale); });
    products<false, true>(C, K, Term{dUs, l, Ss, l, V},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dWz, K, c, r0, c0, -1.0f); });
}

// ---- the backward through Xb and X (beta_grads_kernel, and beta_grads_streamed_kernel where its
// tiles do not fit two blocks an SM): the phases after G = dW Kb^T + dU V^T, shared ----

// dbeta's part from W and U~ (sum_i X_ir G_ir, four parts a column, before G is scaled), then
// dX = G diag(beta) in G's place and Xb = X diag(beta)
__device__ __forceinline__ void beta_columns(float *Gs, int lg, float *Xbs, int lxb, const float *Xs, int lx,
                                             const float *bs, float *dbw_parts, int C) {
    for (int e = threadIdx.x; e < 4 * C; e += THREADS) {
        const int r = e % C, part = e / C;
        float acc = 0.0f;
        for (int i = part; i < C; i += 4) acc += Xs[i * lx + r] * Gs[i * lg + r];
        dbw_parts[part * C + r] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += THREADS) {
        const int i = e / C, r = e % C;
        Gs[i * lg + r] *= bs[r];
        Xbs[i * lxb + r] = Xs[i * lx + r] * bs[r];
    }
    __syncthreads();
}

// T = dX X^T into Ts, dL = -X^T T: dA'_rj = beta_r dL_rj (zeros on and above the diagonal) and
// dbeta_r = dbw_r + sum_{j<r} dL_rj A'_rj, into the caller's [B, T, H]. Each row's sum of dL A'
// goes through a part per warp of its columns, added in order (so every run gives the same sum:
// atomic adds would vary the order).
__device__ __forceinline__ void beta_rows(float *Ts, int lt, const float *Gs, int lg, const float *Xs, int lx,
                                          const float *bs, const float *dbw_parts, float *dla, float *dbeta, float *dA,
                                          const float *A, const ChunkDims &d, size_t z) {
    const int C = d.C;
    products<false, true>(C, C, Term{Gs, lg, Xs, lx, C},
                          [&](auto &c, int r0, int c0) { store_warp_tile(Ts, lt, c, r0, c0, 1.0f); });
    __syncthreads(); /* dX X^T is made */
    const float *Az = A + z * C * C;
    float *dAz = dA + z * C * C;
    products<true, false>(C, C, Term{Xs, lx, Ts, lt, C}, [&](auto &c, int r0, int c0) {
        constexpr int NB = sizeof(c) / sizeof(c[0]);
        float row_sum[2] = {}; /* this lane's part of sum_j dL_rj A'_rj for its rows r0 + g and r0 + g + 8 */
#pragma unroll
        for (int n = 0; n < NB; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = r0 + acc_row(e), j = c0 + acc_col(n, e);
                const float dl = -c[n][e];
                const bool below = j < r;
                dAz[r * C + j] = below ? bs[r] * dl : 0.0f;
                row_sum[e / 2] += below ? dl * Az[r * C + j] : 0.0f;
            }
#pragma unroll
        for (int h = 0; h < 2; h++) { /* over the four lanes of a row, into this warp's part */
            float x = row_sum[h];
            x += __shfl_xor_sync(0xffffffffu, x, 1);
            x += __shfl_xor_sync(0xffffffffu, x, 2);
            if (threadIdx.x % 4 == 0) dla[c0 / (8 * NB) * C + r0 + acc_row(2 * h)] = x;
        }
    });
    __syncthreads();
    const CallerRows out = caller_rows(d, z, 1);
    for (int r = threadIdx.x; r < out.n; r += THREADS) {
        float la = 0.0f;
        for (int w = 0; w < column_blocks(C); w++) la += dla[w * C + r];
        dbeta[out.offset + r * out.ld] =
            dbw_parts[r] + dbw_parts[C + r] + dbw_parts[2 * C + r] + dbw_parts[3 * C + r] + la;
    }
}

// the floats of beta, dbw's four parts and dL A''s row sums (a part per warp of the columns)
__host__ __device__ inline size_t beta_vectors(int C) { return (5 + (size_t)column_blocks(C)) * C; }

// dW, Kb, dU and V, then X and G; Xb takes Kb's place and dX X^T V's once G is made. dW and dU
// are read along their rows (for G) and down their columns (for dKb and dv), X the other way round
// (dX X^T, then X^T (dX X^T)): one copy of each, so one of the two reads has two-way bank
// conflicts.
struct BetaPlan {
    int lw, lk, lu, lv, lx, lg, lxb, lt;
    size_t kb_room, v_room;
    __host__ __device__ BetaPlan(int C, int K, int V)
        : lw(along_rows(K)), lk(along_rows(K)), lu(along_rows(V)), lv(along_rows(V)), lx(down_columns(C)),
          lg(along_rows(C)), lxb(down_columns(C)), lt(down_columns(C)) {
        kb_room = (size_t)C * (lk > lxb ? lk : lxb);
        v_room = (size_t)C * (lv > lt ? lv : lt);
    }
    __host__ __device__ static size_t floats(int C, int K, int V) {
        BetaPlan p(C, K, V);
        return (size_t)C * (p.lw + p.lu + p.lx + p.lg) + p.kb_room + p.v_room + beta_vectors(C);
    }
};

__global__ void __launch_bounds__(THREADS)
    beta_grads_kernel(float *dKb, float *dv, float *dbeta, float *dA, const float *dW, const float *kb, const float *dU,
                      const float *v, const float *X, const float *A, const float *beta, ChunkDims d, int K, int V) {
    extern __shared__ __align__(16) float sm[];
    const int C = d.C;
    const BetaPlan p(C, K, V);
    float *dWs = sm, *Ks = dWs + C * p.lw, *dUs = Ks + p.kb_room, *Vs = dUs + C * p.lu, *Xs = Vs + p.v_room;
    float *Gs = Xs + C * p.lx, *bs = Gs + C * p.lg, *dbw_parts = bs + C, *dla = dbw_parts + 4 * C;
    float *Xbs = Ks, *Ts = Vs;
    const size_t z = blockIdx.x;
    load_tile(dWs, p.lw, dW, z, C, K);
    load_tile(Ks, p.lk, kb, z, C, K);
    load_tile(dUs, p.lu, dU, z, C, V);
    load_caller_tile(Vs, p.lv, v, d, z, V);
    load_tile(Xs, p.lx, X, z, C, C);
    for (int r = threadIdx.x; r < C; r += THREADS) bs[r] = beta[z * C + r];
    loaded();
    products<false, true>(C, C, Term{dWs, p.lw, Ks, p.lk, K}, Term{dUs, p.lu, Vs, p.lv, V},
                          [&](auto &c, int r0, int c0) { store_warp_tile(Gs, p.lg, c, r0, c0, 1.0f); });
    __syncthreads();
    beta_columns(Gs, p.lg, Xbs, p.lxb, Xs, p.lx, bs, dbw_parts, C);
    const CallerRows dv_rows = caller_rows(d, z, V);
    products<true, false>(C, K, Term{Xbs, p.lxb, dWs, p.lw, C},
                          [&](auto &c, int r0, int c0) { store_warp_tile(dKb + z * C * K, K, c, r0, c0, 1.0f); });
    products<true, false>(C, V, Term{Xbs, p.lxb, dUs, p.lu, C}, [&](auto &c, int r0, int c0) {
        store_warp_tile(dv + dv_rows.offset, dv_rows.ld, c, r0, c0, 1.0f, dv_rows.n);
    });
    beta_rows(Ts, p.lt, Gs, p.lg, Xs, p.lx, bs, dbw_parts, dla, dbeta, dA, A, d, z);
}

// The same products with dW, Kb, dU and V streamed through shared memory a piece of PIECE
// columns at a time, for chunks of 64 and keys and values of multiples of 64 whose whole tiles
// would hold one block an SM (heads of 128: 169 KiB; this plan 105 KiB, two blocks). G's sums over
// the pieces stay in registers (8 warps, a 16 x 32 block each), and dKb and dv are made a piece at
// a time from dW and dU loaded again (each next piece loading while one multiplies): dW and dU are
// read twice from global memory, against cuBLAS's products, which read every operand once a
// product and make dv and V's chunk copies through extra passes.
constexpr int PIECE = 64, STREAMED_C = 64;
// G's 64 x 64 sums held by the block's 8 warps, a 16 x 32 block each; T (C x C) in a piece's room
static_assert(THREADS == 256 && STREAMED_C == 64 && PIECE == STREAMED_C, "the streamed plan's warp tiles");
struct StreamedBetaPlan {
    int lr, lc, lx, lg, lxb, lt; /* pieces read along rows (G's) and down columns (dKb's and dv's) */
    size_t stage;                /* two of G's pieces of two tiles; later Xb and two pieces, then T in one's place */
    __host__ __device__ StreamedBetaPlan(int C)
        : lr(along_rows(PIECE)), lc(down_columns(PIECE)), lx(down_columns(C)), lg(along_rows(C)), lxb(down_columns(C)),
          lt(down_columns(C)) {
        size_t g_pieces = 4 * (size_t)C * lr, d_pieces = (size_t)C * lxb + 2 * (size_t)C * lc;
        stage = g_pieces > d_pieces ? g_pieces : d_pieces;
    }
    __host__ __device__ static size_t floats(int C) {
        StreamedBetaPlan p(C);
        return p.stage + (size_t)C * (p.lx + p.lg) + beta_vectors(C);
    }
};

__global__ void __launch_bounds__(THREADS, 2)
    beta_grads_streamed_kernel(float *dKb, float *dv, float *dbeta, float *dA, const float *dW, const float *kb,
                               const float *dU, const float *v, const float *X, const float *A, const float *beta,
                               ChunkDims d, int K, int V) {
    extern __shared__ __align__(16) float sm[];
    const int C = STREAMED_C, nk = K / PIECE, pieces = (K + V) / PIECE;
    const StreamedBetaPlan p(C);
    float *stage = sm, *Xs = stage + p.stage, *Gs = Xs + C * p.lx, *bs = Gs + C * p.lg, *dbw_parts = bs + C;
    float *dla = dbw_parts + 4 * C;
    const size_t z = blockIdx.x;
    // G's piece i: columns of dW and Kb (i < nk), else of dU and V, into buffer i % 2 (one group)
    auto g_piece = [&](int i) {
        float *a = stage + (i % 2) * 2 * C * p.lr, *b = a + C * p.lr;
        const int c0 = (i < nk ? i : i - nk) * PIECE;
        if (i < nk) {
            copy_rows_async<THREADS>(a, p.lr, dW + z * C * K + c0, K, C, PIECE);
            copy_rows_async<THREADS>(b, p.lr, kb + z * C * K + c0, K, C, PIECE);
        } else {
            copy_rows_async<THREADS>(a, p.lr, dU + z * C * V + c0, V, C, PIECE);
            copy_caller_columns_async<THREADS>(b, p.lr, v, d, z, V, c0, PIECE);
        }
        cp_async_commit();
    };
    load_tile(Xs, p.lx, X, z, C, C); /* with the first piece's group */
    for (int r = threadIdx.x; r < C; r += THREADS) bs[r] = beta[z * C + r];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp / 2 * 16, col0 = warp % 2 * 32;
    float g[4][4] = {};
    stream_pieces(pieces, g_piece, [&](int i) {
        const float *a = stage + (i % 2) * 2 * C * p.lr;
        accumulate<4, false, true>(g, a, p.lr, row0, a + C * p.lr, p.lr, col0, PIECE, lane, 0u);
    });
    store_acc<4>(Gs, p.lg, g, row0, col0, lane);
    __syncthreads();
    float *Xbs = stage, *d_pieces = stage + C * p.lxb;
    beta_columns(Gs, p.lg, Xbs, p.lxb, Xs, p.lx, bs, dbw_parts, C);
    // dKb's and dv's piece i: columns of dW (i < nk), else of dU, into buffer i % 2
    auto d_piece = [&](int i) {
        float *buf = d_pieces + (i % 2) * C * p.lc;
        if (i < nk) copy_rows_async<THREADS>(buf, p.lc, dW + z * C * K + i * PIECE, K, C, PIECE);
        else copy_rows_async<THREADS>(buf, p.lc, dU + z * C * V + (i - nk) * PIECE, V, C, PIECE);
        cp_async_commit();
    };
    const CallerRows dv_rows = caller_rows(d, z, V);
    stream_pieces(pieces, d_piece, [&](int i) {
        const Term t{Xbs, p.lxb, d_pieces + (i % 2) * C * p.lc, p.lc, C};
        if (i < nk)
            products<true, false>(C, PIECE, t, [&](auto &c, int r0, int c0) {
                store_warp_tile(dKb + z * C * K + i * PIECE, K, c, r0, c0, 1.0f);
            });
        else
            products<true, false>(C, PIECE, t, [&](auto &c, int r0, int c0) {
                store_warp_tile(dv + dv_rows.offset + (i - nk) * PIECE, dv_rows.ld, c, r0, c0, 1.0f, dv_rows.n);
            });
    });
    beta_rows(d_pieces, p.lt, Gs, p.lg, Xs, p.lx, bs, dbw_parts, dla, dbeta, dA, A, d, z);
}

template <typename Plan> size_t smem_bytes(int C, int K, int V) { return sizeof(float) * Plan::floats(C, K, V); }

} // namespace

static bool two_blocks_fit(size_t floats) { return cuda_blocks_per_sm(sizeof(float) * floats) >= 2; }

// the tests' switch: 1 the streamed kernel wherever its shape suits, -1 the whole tiles wherever
// they fit an SM, 0 the plans' choice
static int beta_force;

// the tests' switch for the output: pieces of 32 columns wherever the values split so (1), or as
// output_piece chooses (0)
static int output_force;

// The columns of the output's pieces: the widest (V, or a multiple of 16 that divides it) whose
// tiles fit two blocks an SM; 0 where none do (cuBLAS's products then).
static int output_piece(int C, int K, int V) {
    if (output_force > 0 && V % 32 == 0 && V > 32 && two_blocks_fit(OutputPlan::floats(C, K, V, 32))) return 32;
    for (int pieces = 1; V / pieces >= 16; pieces *= 2)
        if (V % (16 * pieces) == 0 && two_blocks_fit(OutputPlan::floats(C, K, V, V / pieces))) return V / pieces;
    return 0;
}

enum BetaKernel { BETA_CUBLAS, BETA_WHOLE, BETA_STREAMED };

// Which kernel takes beta's products: the whole tiles where two blocks fit an SM, else the pieces
// streamed (beta_grads_streamed_kernel) where the shape suits them, else cuBLAS's products.
static BetaKernel beta_kernel(int C, int K, int V) {
    const size_t whole = BetaPlan::floats(C, K, V);
    const bool streams =
        C == STREAMED_C && K % PIECE == 0 && V % PIECE == 0 && two_blocks_fit(StreamedBetaPlan::floats(C));
    if (beta_force > 0 && streams) return BETA_STREAMED;
    if (beta_force < 0 && cuda_blocks_per_sm(sizeof(float) * whole) >= 1) return BETA_WHOLE;
    return two_blocks_fit(whole) ? BETA_WHOLE : streams ? BETA_STREAMED : BETA_CUBLAS;
}

// Tensor-core mode, whole 16 x 16 blocks, and two blocks of the group's kernel on an SM at once:
// each block loads its tiles, then runs its products, then stores, so with one block an SM
// idles through every load. (A first trial ran all five groups fused at every shape: at heads of
// 128, where the output, state and beta kernels' tiles take over half an SM's shared memory, KDA's
// fwd+bwd at 4 x 4096 x 16 x 128 took 7.06 ms against cuBLAS's 6.86 on an H200, where at heads of
// 64 it gained, 2.04 -> 1.85 ms at 8 x 2048 x 8 x 64.) Beta's group streams its pieces where its
// whole tiles do not fit two blocks (beta_kernel).
bool delta_products_run(DeltaProducts which, int C, int K, int V, std::initializer_list<const void *> caller) {
    if (!cuda_tensor_cores() || C % 16 || K % 16 || V % 16 || C <= 0 || K <= 0 || V <= 0 || !all_aligned16(caller))
        return false;
    if (which == DELTA_BETA_GRADS) return beta_kernel(C, K, V) != BETA_CUBLAS;
    if (which == DELTA_OUTPUT) return output_piece(C, K, V) > 0;
    return two_blocks_fit(which == DELTA_WU     ? WuPlan::floats(C, K, V)
                          : which == DELTA_DOUT ? DoutPlan::floats(C, K, V)
                                                : StatePlan::floats(C, K, V));
}

void delta_products_wu(float *W, float *U, const float *Xb, const GatedRows &kb, const float *v, const ChunkDims &d,
                       int K, int V) {
    size_t smem = smem_bytes<WuPlan>(d.C, K, V);
    cuda_allow_smem(wu_kernel, smem);
    wu_kernel<<<(unsigned)d.Z, THREADS, smem>>>(W, U, Xb, kb, v, d, K, V);
    CUDA_LAUNCHED();
}

void delta_products_output(float *o, const GatedRows &qb, const float *S, const float *M, const float *U, float scale,
                           const ChunkDims &d, int K, int V) {
    const int piece = output_piece(d.C, K, V);
    if (!piece) die("delta_products_output: no output plan fits chunks of %d, keys of %d, values of %d", d.C, K, V);
    size_t smem = sizeof(float) * OutputPlan::floats(d.C, K, V, piece);
    cuda_allow_smem(output_kernel, smem);
    output_kernel<<<(unsigned)d.Z, THREADS, smem>>>(o, qb, S, M, U, scale, d, K, V, piece);
    CUDA_LAUNCHED();
}

void delta_products_dout(float *P2, float *dU, const float *qb, const float *M, const float *dout, float scale,
                         const ChunkDims &d, int K, int V) {
    size_t smem = smem_bytes<DoutPlan>(d.C, K, V);
    cuda_allow_smem(dout_kernel, smem);
    dout_kernel<<<(unsigned)d.Z, THREADS, smem>>>(P2, dU, qb, M, dout, scale, d, K, V);
    CUDA_LAUNCHED();
}

void delta_products_state_grads(float *dKc, float *dQb, float *dM, float *dW, const float *U, const float *dSend,
                                const float *dout, const float *S, const float *dU, float scale, const ChunkDims &d,
                                int K, int V) {
    size_t smem = smem_bytes<StatePlan>(d.C, K, V);
    cuda_allow_smem(state_grads_kernel, smem);
    state_grads_kernel<<<(unsigned)d.Z, THREADS, smem>>>(dKc, dQb, dM, dW, U, dSend, dout, S, dU, scale, d, K, V);
    CUDA_LAUNCHED();
}

void delta_products_beta_grads(float *dKb, float *dv, float *dbeta, float *dA, const float *dW, const float *kb,
                               const float *dU, const float *v, const float *X, const float *A, const float *beta,
                               const ChunkDims &d, int K, int V) {
    if (beta_kernel(d.C, K, V) == BETA_STREAMED) {
        size_t smem = sizeof(float) * StreamedBetaPlan::floats(d.C);
        cuda_allow_smem(beta_grads_streamed_kernel, smem);
        beta_grads_streamed_kernel<<<(unsigned)d.Z, THREADS, smem>>>(dKb, dv, dbeta, dA, dW, kb, dU, v, X, A, beta, d,
                                                                     K, V);
    } else {
        size_t smem = smem_bytes<BetaPlan>(d.C, K, V);
        cuda_allow_smem(beta_grads_kernel, smem);
        beta_grads_kernel<<<(unsigned)d.Z, THREADS, smem>>>(dKb, dv, dbeta, dA, dW, kb, dU, v, X, A, beta, d, K, V);
    }
    CUDA_LAUNCHED();
}

// for the tests: beta's products on the streamed kernel wherever its shape suits (1), on the whole
// tiles wherever they fit an SM (-1), or as the plans choose (0)
extern "C" void cuda_delta_beta_force(int which) { beta_force = which; }

// for the tests: the output in pieces of 32 value columns wherever they fit (1), or as
// output_piece chooses (0)
extern "C" void cuda_delta_output_force(int which) { output_force = which; }
// for the tests: the output's piece of columns at a shape (0: cuBLAS's products)
extern "C" int cuda_delta_output_piece(int C, int K, int V) { return output_piece(C, K, V); }

// the groups whose fused kernels run at a shape, bit DeltaProducts a group (for the tests)
extern "C" int cuda_delta_products_fused(int C, int K, int V) {
    int groups = 0;
    for (int g = 0; g < DELTA_PRODUCT_GROUPS; g++) groups |= delta_products_run((DeltaProducts)g, C, K, V) << g;
    return groups;
}
