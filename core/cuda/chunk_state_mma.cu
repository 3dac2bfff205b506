// The chunk-to-chunk state recurrence (chunk_state.cu) on tensor cores: TF32 mma.sync with fp32
// accumulation, for the tensor-core mode at the shapes whose tiles it fills (key dimension 32, 64
// or 128, chunks a multiple of 16 up to 128 rows, value dimension a multiple of 32).
//
// A block takes one (batch, head) and a slice of VS value columns and walks the chunks, as the
// fp32 kernels do, but its K x VS state stays in the 8 warps' accumulator registers (a 16-row
// tile and a column group each) and every product of a chunk is a tensor-core product over tiles
// in shared memory, the next chunk's tiles copied with cp.async while this one's products run:
//   Y_z += sign1 A1_z X             (forward: U = U~ - W S;   backward: dU += Kc G)
//   X = e^{b_last} X (+ P_z) + sign2 A2_z^T Y_z   (S = e^b S (+P) + Kc^T U;  G = e^b G + P2 - W^T dU)
// with X saved (S_c, or dS_end) at every chunk. The products round their operands to TF32 (10
// mantissa bits), the precision of cuBLAS's batched products beside them in this mode on Hopper
// (TF32 kernels; elsewhere cuBLAS may take bf16, coarser); the state and every sum stay fp32.
// Operands in shared memory are fp32 rows padded so that a fragment's 32 loads fall in 32 banks
// (mma_tf32.cuh).
#include "chunk_state.cuh"
#include "cuda_common.cuh"
#include "mma.cuh"
#include "mma_tf32.cuh"

namespace {

constexpr int WARPS = 8, THREADS = 32 * WARPS;

template <int K, int VS> struct Tiles {
    static constexpr int LD1 = K + 4, LD2 = K + 8, LDY = VS + 8, LDX = VS + 8;
    __host__ __device__ static size_t stage_floats(int C) { return (size_t)C * (LD1 + LD2 + LDY); }
    static size_t smem_bytes(int C) { return sizeof(float) * (2 * stage_floats(C) + (size_t)K * LDX); }
};

// The pass in either direction (see the top of the file). first: the state the walk starts from
// (init or dfinal; NULL: zeros); last: where its end goes (final_state or dinit; may be NULL).
template <int K, int VS, bool BACKWARD>
__global__ void __launch_bounds__(THREADS) state_mma_kernel(ChunkState a, float *save, float *Y, float *last,
                                                            const float *first, const float *P) {
    using T = Tiles<K, VS>;
    constexpr int MT = K / 16, NG = WARPS / MT, XN = VS / 8 / NG, YN = VS / 16;
    static_assert(MT * NG == WARPS && XN >= 1 && XN * NG * 8 == VS, "a warp takes one 16-row tile of the state");
    extern __shared__ __align__(16) float sm[];
    const int C = a.C, V = a.V, nc = a.nc, v0 = blockIdx.y * VS, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4;
    const size_t bh = blockIdx.x, KV = (size_t)K * V, stage = T::stage_floats(C);
    const float *A1 = BACKWARD ? a.Kc : a.W, *A2 = BACKWARD ? a.W : a.Kc;
    const unsigned sign1 = BACKWARD ? 0u : 0x80000000u, sign2 = BACKWARD ? 0x80000000u : 0u;
    float *Xs = sm + 2 * stage;
    // this warp's tile of the state: rows xr..xr+15, columns xc..xc+8 XN-1 of the slice
    const int xr = (warp % MT) * 16, xc = (warp / MT) * XN * 8;
    float x[XN][4] = {};
    if (first) load_acc<XN>(x, first + bh * KV + v0, V, xr, xc, lane);
    auto issue = [&](int c, int s) { // chunk c's tiles into stage s
        size_t z = bh * nc + c;
        float *st = sm + s * stage;
        copy_rows_async<THREADS>(st, T::LD1, A1 + z * C * K, K, C, K);
        copy_rows_async<THREADS>(st + C * T::LD1, T::LD2, A2 + z * C * K, K, C, K);
        copy_rows_async<THREADS>(st + C * (T::LD1 + T::LD2), T::LDY, Y + z * C * V + v0, V, C, VS);
        cp_async_commit();
    };
    const int step = BACKWARD ? -1 : 1;
    int c = BACKWARD ? nc - 1 : 0;
    issue(c, 0);
    for (int i = 0; i < nc; i++, c += step) {
        const int s = i & 1;
        const size_t z = bh * nc + c;
        float *A1s = sm + s * stage, *A2s = A1s + C * T::LD1, *Ys = A2s + C * T::LD2;
        // the chunk's decay and P, loaded now and used after the first product
        float dec[2] = {__expf(a.blast[z * K + xr + g]), __expf(a.blast[z * K + xr + g + 8])};
        float p[XN][4] = {};
        if (P) load_acc<XN>(p, P + z * KV + v0, V, xr, xc, lane);
        store_acc<XN>(Xs, T::LDX, x, xr, xc, lane);
        cp_async_wait<0>();
        __syncthreads(); /* X is in Xs, chunk c's tiles have landed, the other stage is free */
        if (i + 1 < nc) issue(c + step, s ^ 1);
        store_tile_rows<THREADS>(save + z * KV + v0, V, Xs, T::LDX, K, VS);
        // Y_z += sign1 A1_z X: 16-row tiles by halves of the slice
        for (int item = warp; item < C / 16 * 2; item += WARPS) {
            const int r0 = item / 2 * 16, n0 = item % 2 * (VS / 2);
            float y[YN][4];
            load_acc<YN>(y, Ys, T::LDY, r0, n0, lane);
            accumulate<YN, false>(y, A1s, T::LD1, r0, Xs, T::LDX, n0, K, lane, sign1);
            store_acc<YN>(Ys, T::LDY, y, r0, n0, lane);
        }
        __syncthreads(); /* Y_z is whole */
        store_tile_rows<THREADS>(Y + z * C * V + v0, V, Ys, T::LDY, C, VS);
        // X = e^{b_last} X (+ P_z) + sign2 A2_z^T Y_z
#pragma unroll
        for (int n = 0; n < XN; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) x[n][e] = x[n][e] * dec[e / 2] + p[n][e];
        accumulate<XN, true>(x, A2s, T::LD2, xr, Ys, T::LDY, xc, C, lane, sign2);
    }
    if (last) store_acc<XN>(last + bh * KV + v0, V, x, xr, xc, lane);
}

size_t smem_for(int K, int vs, int C) {
    if (K == 32) return vs == 64 ? Tiles<32, 64>::smem_bytes(C) : Tiles<32, 32>::smem_bytes(C);
    if (K == 64) return vs == 64 ? Tiles<64, 64>::smem_bytes(C) : Tiles<64, 32>::smem_bytes(C);
    return vs == 64 ? Tiles<128, 64>::smem_bytes(C) : Tiles<128, 32>::smem_bytes(C);
}

// The slice width, 64 or 32 columns, or 0 where this form cannot run. A block's time is its walk
// over the chunks, each step bound by the bytes it moves (the chunk's two C x K tiles and its C x
// VS slice of Y), so the width is the one with the fewer waves of blocks times bytes a step: on
// an H200, 32 columns for 96 heads of 64 (192 blocks, two an SM), 64 for 64 heads of 128 (128
// blocks of 206 KiB, one wave) where 32 would take two.
int forced_width; // the parity tests' choice (cuda_chunk_state_force_columns), 0: none

int slice_width(const ChunkState &a) {
    if (!cuda_tensor_cores() || (a.K != 32 && a.K != 64 && a.K != 128) || a.C % 16 || a.C > 128 || a.V % 32) return 0;
    int best = 0;
    double best_cost = 0;
    for (int vs : {64, 32}) {
        long per_sm = cuda_blocks_per_sm(smem_for(a.K, vs, a.C));
        if (!per_sm || a.V % vs) continue;
        if (vs == forced_width) return vs;
        long blocks = (long)a.BH * (a.V / vs);
        long slots = per_sm * cuda_sm_count(), waves = (blocks + slots - 1) / slots;
        double cost = (double)waves * (2.0 * a.C * a.K + (double)a.C * vs);
        if (!best || cost < best_cost) best = vs, best_cost = cost;
    }
    return best;
}

template <int K, int VS, bool BACKWARD>
void launch(const ChunkState &a, float *save, float *Y, float *last, const float *first, const float *P) {
    size_t smem = Tiles<K, VS>::smem_bytes(a.C);
    auto kernel = state_mma_kernel<K, VS, BACKWARD>;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    kernel<<<dim3((unsigned)a.BH, (unsigned)(a.V / VS)), THREADS, smem>>>(a, save, Y, last, first, P);
    CUDA_LAUNCHED();
}

template <bool BACKWARD>
bool run(const ChunkState &a, float *save, float *Y, float *last, const float *first, const float *P) {
    int vs = all_aligned16({a.W, a.Kc, save, Y, last, first, P}) ? slice_width(a) : 0;
    if (!vs) return false;
#define STATE_MMA_CASE(KK, VV)                                                                                        \
    if (a.K == KK && vs == VV) launch<KK, VV, BACKWARD>(a, save, Y, last, first, P);
    STATE_MMA_CASE(32, 32) STATE_MMA_CASE(32, 64) STATE_MMA_CASE(64, 32) STATE_MMA_CASE(64, 64)
    STATE_MMA_CASE(128, 32) STATE_MMA_CASE(128, 64)
#undef STATE_MMA_CASE
    return true;
}

} // namespace

bool chunk_state_mma_forward(const ChunkState &a, float *S_all, float *U, float *final_state, const float *init,
                             const float *P) {
    return run<false>(a, S_all, U, final_state, init, P);
}

bool chunk_state_mma_backward(const ChunkState &a, float *dSend, float *dU, float *dinit, const float *dfinal,
                              const float *P2) {
    return run<true>(a, dSend, dU, dinit, dfinal, P2);
}

int chunk_state_mma_columns(const ChunkState &a) { return slice_width(a); }

extern "C" void cuda_chunk_state_force_columns(int columns) { forced_width = columns; }
