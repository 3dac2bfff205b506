// Decode attention on the GPU: one new query per sequence against its T cached keys.
//
// Tensor-core mode (the default): flash-decoding. The cached keys are cut into splits, enough of
// them to fill the GPU; a block takes one split of one (sequence, key head) through tiles of 32
// cached rows, rounded to bf16 in shared memory. Each of 4 warps computes the scores of the
// group's query heads (up to 16: the rows of one mma tile) against the tile with an online
// softmax, and P V for its quarter of the value channels. A split writes its normalized output and
// log-sum-exp; a second kernel weighs the splits together. The cache is read once per step for
// all the heads of a group: MLA's latent cache serves every head, and its values are the first Dv
// channels of its keys, so the key tile is the value tile too.
//
// fp32 mode (ATTNLAB_CUDA_MATMUL=fp32) and shapes the kernel does not take (groups of more than
// 16 heads, keys wider than 576 or values wider than 512 channels): two matrix products per group
// of query heads, batched over the sequences, scores = q K^T over the cache and o = P V, with the
// softmax in between.
#include <math.h>

#include "attention_shape.cuh"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"
#include "mma.cuh"

namespace {

// DEC_WARPS warps compute (each a quarter of the value channels). Where a split is at most
// LOADING_TILES_MAX tiles, a block has DEC_WARPS more that only load, twice the loads in flight:
// a short split's loads were most of its time (on an H200, MLA's split at 1K went from 12.9 to
// 9.5 us; its step at 16K, 4 tiles a split, was 0.87 ms with them and 1.0 without, in two calls);
// with 8 tiles a split (64K and up) the extra warps halved the blocks an SM holds and made MLA's
// step at 128K 9% slower.
constexpr int DEC_WARPS = 4, KEYS = 32; // keys per tile
constexpr int LOADING_TILES_MAX = 4;
constexpr int MAX_GROUP = 16, MAX_DK = 576, MAX_DV = 512, MAX_SPLITS = 256;
// The fewest tiles a split takes rises from 1 to this with the context: while one tile a split
// fits the keys of every (sequence, key head) in one wave of blocks, a step is latency-bound and
// wants blocks (4 tiles a split ran 8 blocks at 1K, 39 us an MLA layer on an H200); past that, a
// split's fixed costs (its queries loaded, its partial output written and summed) want longer
// splits (at 16K, 2-tile splits made MLA's step 9% slower than 4-tile ones).
constexpr int SPLIT_TILES_FLOOR = 4;

struct DecodeArgs {
    AttnDims s;
    long kv_seq_stride;
    const float *q, *k, *v;
    const int *len;           // the keys of this step, in device memory
    float *part_o, *part_lse; // [splits][B * H][Dv], [splits][B * H]
    int dkp, ld_k, ld_v;      // key channels padded to 16; tile row strides (elements)
    int sms;                  // the GPU's SMs
    bool v_in_k, vec4_q, vec4_k, vec4_v;
};

// the fewest tiles a split takes for T keys of each of `groups` (sequence, key head) pairs on a
// GPU of `sms` SMs: one while the tiles fit one block an SM, up to SPLIT_TILES_FLOOR
__host__ __device__ inline int min_split_tiles(int T, int groups, int sms) {
    long tiles = ((long)T + KEYS - 1) / KEYS * groups, m = (tiles + sms - 1) / sms;
    return m < 1 ? 1 : m > SPLIT_TILES_FLOOR ? SPLIT_TILES_FLOOR : (int)m;
}

// Keys per split for T keys over `splits` blocks: a multiple of KEYS, no fewer than
// min_split_tiles tiles; the splits past T then have nothing to do. Computed on the device from T
// in device memory, so a step's launch is the same at every position.
__host__ __device__ inline int keys_per_split(int T, int splits, int groups, int sms) {
    int per = (T + splits - 1) / splits, least = KEYS * min_split_tiles(T, groups, sms);
    if (per < least) per = least;
    return (per + KEYS - 1) / KEYS * KEYS;
}

// rows [0, ROWS) of a fp32 matrix (row i at src + i * stride; n_rows of them, `width` floats each)
// into a bf16 tile of `cols` columns (a multiple of 4) at row stride ld, times mul; zero past
// n_rows and width. Each thread issues LOADS_IN_FLIGHT loads before it stores any: a tile is a
// few such rounds, each a memory latency (with four, a 32 x 416 tile of MLA's latent cache took
// seven rounds, most of a 15 us split at 1K on an H200).
constexpr int LOADS_IN_FLIGHT = 8;
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_rows_bf16(bf16 *tile, int ld, const float *src, long stride, int n_rows, int width,
                                               int cols, float mul, bool vec4) {
    const int groups = cols / 4, n = ROWS * groups;
    for (int i0 = threadIdx.x; i0 < n; i0 += LOADS_IN_FLIGHT * THREADS) {
        float4 x[LOADS_IN_FLIGHT];
#pragma unroll
        for (int u = 0; u < LOADS_IN_FLIGHT; u++) {
            int i = i0 + u * THREADS, r = i / groups, c = (i % groups) * 4;
            x[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < n && r < n_rows) {
                const float *p = src + (size_t)r * stride + c;
                if (vec4 && c + 3 < width) {
                    x[u] = __ldg(reinterpret_cast<const float4 *>(p));
                } else {
                    if (c < width) x[u].x = __ldg(p);
                    if (c + 1 < width) x[u].y = __ldg(p + 1);
                    if (c + 2 < width) x[u].z = __ldg(p + 2);
                    if (c + 3 < width) x[u].w = __ldg(p + 3);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < LOADS_IN_FLIGHT; u++) {
            int i = i0 + u * THREADS, r = i / groups, c = (i % groups) * 4;
            if (i < n)
                *reinterpret_cast<uint2 *>(tile + (size_t)r * ld + c) =
                    make_uint2(pack_bf16(x[u].x * mul, x[u].y * mul), pack_bf16(x[u].z * mul, x[u].w * mul));
        }
    }
}

// one block per (split, sequence * key head) of WARPS warps; DVW value channels per computing warp
// (a multiple of 16)
template <int DVW, int WARPS>
__global__ void __launch_bounds__(32 * WARPS) decode_split_kernel(DecodeArgs a) {
    pdl_begin(); /* launched plainly (launch_split_warps): only lets the combine be placed early */
    extern __shared__ __align__(16) unsigned char decode_smem[];
    const AttnDims &s = a.s;
    const int G = s.H / s.Hkv, split = blockIdx.x, b = blockIdx.y / s.Hkv, g = blockIdx.y % s.Hkv;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int T = *a.len, per = keys_per_split(T, gridDim.x, gridDim.y, a.sms), t0 = split * per, t1 = min(T, t0 + per);
    size_t row0 = (size_t)split * s.B * s.H + (size_t)b * s.H + (size_t)g * G; /* the group's first head */
    if (t0 >= T) { /* a split past this step's keys: weight 0 in the sum */
        for (int r = threadIdx.x; r < G; r += blockDim.x) a.part_lse[row0 + r] = -INFINITY;
        return;
    }
    bf16 *Qs = reinterpret_cast<bf16 *>(decode_smem), *Ks = Qs + MAX_GROUP * a.ld_k;
    bf16 *Vs = a.v_in_k ? Ks : Ks + KEYS * a.ld_k;
    /* the group's query heads, times scale log2 e: scores in base 2 */
    load_rows_bf16<MAX_GROUP, 32 * WARPS>(Qs, a.ld_k, a.q + (size_t)b * s.qs + (size_t)g * G * s.Dk, s.Dk, G, s.Dk, a.dkp,
                              s.scale * LOG2E, a.vec4_q);
    const float *kb = a.k + (size_t)b * a.kv_seq_stride + (size_t)g * s.Dk;
    const float *vb = a.v + (size_t)b * a.kv_seq_stride + (size_t)g * s.Dv;
    const int v0 = warp * DVW, dvp = DEC_WARPS * DVW;
    float acc[DVW / 8][4] = {};
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int t = lane & 3;
    for (int j0 = t0; j0 < t1; j0 += KEYS) {
        __syncthreads(); /* every warp is done with the previous tile */
        load_rows_bf16<KEYS, 32 * WARPS>(Ks, a.ld_k, kb + (size_t)j0 * s.ks, s.ks, t1 - j0, s.Dk, a.dkp, 1.0f, a.vec4_k);
        if (!a.v_in_k) load_rows_bf16<KEYS, 32 * WARPS>(Vs, a.ld_v, vb + (size_t)j0 * s.vs, s.vs, t1 - j0, s.Dv, dvp, 1.0f, a.vec4_v);
        __syncthreads();
        if (warp >= DEC_WARPS) continue;
        float c[KEYS / 8][4] = {};
        for (int kk = 0; kk < a.dkp / 16; kk++) scores_step<KEYS>(c, Qs, a.ld_k, 0, Ks, a.ld_k, kk * 16, lane);
        /* keys past the split score -inf; every tile has at least one key, so the maxima are finite */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < KEYS / 8; n++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                if (j0 + n * 8 + 2 * t + j >= t1) c[n][j] = c[n][2 + j] = -INFINITY;
                mx0 = fmaxf(mx0, c[n][j]);
                mx1 = fmaxf(mx1, c[n][2 + j]);
            }
        float n0 = fmaxf(m0, quad_max(mx0)), n1 = fmaxf(m1, quad_max(mx1));
        float a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1), s0 = 0.0f, s1 = 0.0f;
        m0 = n0, m1 = n1;
#pragma unroll
        for (int n = 0; n < KEYS / 8; n++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                c[n][j] = exp2f(c[n][j] - n0);
                c[n][2 + j] = exp2f(c[n][2 + j] - n1);
                s0 += c[n][j];
                s1 += c[n][2 + j];
            }
        l0 = l0 * a0 + s0; /* this lane's part of the row sums; the quad's parts are summed at the end */
        l1 = l1 * a1 + s1;
#pragma unroll
        for (int n = 0; n < DVW / 8; n++) {
            acc[n][0] *= a0, acc[n][1] *= a0;
            acc[n][2] *= a1, acc[n][3] *= a1;
        }
        accumulate_pv<KEYS, DVW>(acc, c, Vs + v0, a.v_in_k ? a.ld_k : a.ld_v, lane);
    }
    if (warp >= DEC_WARPS) return; /* a loading warp only */
    l0 = quad_sum(l0);
    l1 = quad_sum(l1);
    store_rows<DVW>(a.part_o + row0 * s.Dv + v0, s.Dv, acc, 0, G, s.Dv - v0, 1.0f / l0, 1.0f / l1, lane);
    if (warp == 0 && t == 0) {
        int r = lane >> 2;
        if (r < G) a.part_lse[row0 + r] = (m0 + log2f(l0)) * LN2;
        if (r + 8 < G) a.part_lse[row0 + r + 8] = (m1 + log2f(l1)) * LN2;
    }
}

// one block per (sequence, head): the splits' outputs weighted by exp(lse_split - lse). A thread
// per value channel, its splits' partial outputs loaded COMBINE_UNROLL at a time (a thread
// walking 32 splits one load after another took 9 us at 1K on an H200).
constexpr int COMBINE_UNROLL = 8;
__global__ void decode_combine_kernel(AttnDims s, float *o, const float *part_o, const float *part_lse, int splits) {
    pdl_begin();
    __shared__ float w[MAX_SPLITS];
    __shared__ float inv_total;
    const int bh = blockIdx.x, b = bh / s.H, h = bh % s.H;
    const size_t BH = (size_t)s.B * s.H;
    if (threadIdx.x < 32) { /* the weights, by one warp */
        float mx = -INFINITY;
        for (int i = threadIdx.x; i < splits; i += 32) mx = fmaxf(mx, part_lse[i * BH + bh]);
        mx = warp_max(mx);
        float total = 0.0f;
        for (int i = threadIdx.x; i < splits; i += 32) {
            w[i] = expf(part_lse[i * BH + bh] - mx);
            total += w[i];
        }
        total = warp_sum(total);
        if (threadIdx.x == 0) inv_total = 1.0f / total;
    }
    __syncthreads();
    float *out = o + (size_t)b * s.os + (size_t)h * s.Dv;
    for (int d = threadIdx.x; d < s.Dv; d += blockDim.x) {
        float x = 0.0f;
        for (int i0 = 0; i0 < splits; i0 += COMBINE_UNROLL) {
            float p[COMBINE_UNROLL];
#pragma unroll
            for (int u = 0; u < COMBINE_UNROLL; u++)
                p[u] = i0 + u < splits ? part_o[((i0 + u) * BH + bh) * s.Dv + d] : 0.0f;
#pragma unroll
            for (int u = 0; u < COMBINE_UNROLL; u++)
                if (i0 + u < splits && w[i0 + u] != 0.0f) x += w[i0 + u] * p[u]; /* idle splits hold stale rows */
        }
        out[d] = x * inv_total;
    }
}

// value channels per warp: the smallest instantiation that covers a quarter of Dv
int value_slice(int Dv) {
    const int widths[] = {16, 32, 64, 96, 128};
    for (int w : widths)
        if (DEC_WARPS * w >= Dv) return w;
    return 0;
}

int dk_padded(int Dk) { return (Dk + 15) / 16 * 16; }

bool v_in_k(const AttnDims &s, const float *k, const float *v) {
    return k == v && s.Hkv == 1 && s.ks == s.vs && DEC_WARPS * value_slice(s.Dv) <= dk_padded(s.Dk);
}

bool flash_decode_supports(const AttnDims &s) {
    return cuda_tensor_cores() && s.H % s.Hkv == 0 && s.H / s.Hkv <= MAX_GROUP && s.Dk <= MAX_DK && s.Dv <= MAX_DV &&
           value_slice(s.Dv) > 0;
}

// The splits of a cache of s.T rows: two blocks per SM where the context allows, none shorter
// than min_split_tiles. A step launches them all whatever its length (those past it return at
// once), so the workspace holds their rows.
int split_cap(const AttnDims &s) {
    long groups = (long)s.B * s.Hkv, want = (2L * cuda_sm_count() + groups - 1) / groups;
    long least = (long)KEYS * min_split_tiles(s.T, (int)groups, cuda_sm_count());
    long by_length = (s.T + least - 1) / least;
    long n = want < by_length ? want : by_length;
    return n > MAX_SPLITS ? MAX_SPLITS : n < 1 ? 1 : (int)n;
}

// the query tile and a key tile, and a value tile unless the key tile serves as one
size_t split_smem(const DecodeArgs &a) {
    return sizeof(bf16) * ((size_t)(MAX_GROUP + KEYS) * a.ld_k + (a.v_in_k ? 0 : (size_t)KEYS * a.ld_v));
}

// Launched plainly, not with PDL: its blocks would be placed early, while the step's kernels before
// it still hold the SMs, and sit there waiting. On an H200 that cost MLA 8% a token at 128K (2.48
// against 2.31 ms) and nothing measurable at 1K.
template <int DVW, int WARPS> void launch_split_warps(const DecodeArgs &a, int splits, size_t smem) {
    auto kernel = decode_split_kernel<DVW, WARPS>;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    kernel<<<dim3((unsigned)splits, (unsigned)(a.s.B * a.s.Hkv)), 32 * WARPS, smem>>>(a);
    CUDA_LAUNCHED();
}
// loading warps beside the computing ones while the cache's splits are a tile or two
template <int DVW> void launch_split(const DecodeArgs &a, int splits, size_t smem) {
    int per = keys_per_split(a.s.T, splits, a.s.B * a.s.Hkv, a.sms);
    if (per <= LOADING_TILES_MAX * KEYS) launch_split_warps<DVW, 2 * DEC_WARPS>(a, splits, smem);
    else launch_split_warps<DVW, DEC_WARPS>(a, splits, smem);
}

void flash_decode(const AttnDims &s, long kv_seq_stride, const int *len, float *o, const float *q, const float *k,
                  const float *v, float *work) {
    DecodeArgs a;
    a.s = s;
    a.kv_seq_stride = kv_seq_stride;
    a.q = q, a.k = k, a.v = v;
    a.len = len;
    a.sms = cuda_sm_count();
    int splits = split_cap(s);
    a.part_o = work;
    a.part_lse = work + (size_t)splits * s.B * s.H * s.Dv;
    a.dkp = dk_padded(s.Dk);
    a.ld_k = a.dkp + 8;
    a.ld_v = DEC_WARPS * value_slice(s.Dv) + 8;
    a.v_in_k = v_in_k(s, k, v);
    a.vec4_q = rows_are_vec4(q, s.qs, 4) && s.Dk % 4 == 0; /* heads follow each other at Dk */
    a.vec4_k = rows_are_vec4(k, s.ks, 4) && kv_seq_stride % 4 == 0 && s.Dk % 4 == 0;
    a.vec4_v = rows_are_vec4(v, s.vs, 4) && kv_seq_stride % 4 == 0 && s.Dv % 4 == 0;
    size_t smem = split_smem(a);
    switch (value_slice(s.Dv)) {
    case 16: launch_split<16>(a, splits, smem); break;
    case 32: launch_split<32>(a, splits, smem); break;
    case 64: launch_split<64>(a, splits, smem); break;
    case 96: launch_split<96>(a, splits, smem); break;
    default: launch_split<128>(a, splits, smem); break;
    }
    int threads = (s.Dv + 31) / 32 * 32;
    pdl_launch(decode_combine_kernel, s.B * s.H, threads < 128 ? 128 : threads, 0, s, o, a.part_o, a.part_lse, splits);
    CUDA_LAUNCHED();
}

// ---- fp32 mode: two matrix products per group ----

// one block per (b, h): the row of scores becomes its softmax, in place
__global__ void decode_softmax_kernel(AttnDims s, float *scores) {
    float *row = scores + (size_t)blockIdx.x * s.T;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < s.T; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < s.T; j += blockDim.x) {
        row[j] = __expf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / block_sum(sum);
    for (int j = threadIdx.x; j < s.T; j += blockDim.x) row[j] *= inv;
}

void decode_by_matmuls(const AttnDims &s, long kv_seq_stride, float *o, const float *q, const float *k, const float *v,
                       float *work) {
    int group = s.H / s.Hkv;
    long long HT = (long long)s.H * s.T;
    for (int g = 0; g < s.Hkv; g++) { /* scores[b, g's heads, :] = scale q K_g^T */
        float *scores = work + (size_t)g * group * s.T;
        cuda_gemm_batched(false, true, group, s.T, s.Dk, s.scale, q + (size_t)g * group * s.Dk, s.Dk, s.qs,
                          k + (size_t)g * s.Dk, (int)s.ks, kv_seq_stride, 0.0f, scores, s.T, HT, s.B);
    }
    decode_softmax_kernel<<<s.B * s.H, 256>>>(s, work);
    CUDA_LAUNCHED();
    for (int g = 0; g < s.Hkv; g++) /* o[b, g's heads] = P V_g */
        cuda_gemm_batched(false, false, group, s.Dv, s.T, 1.0f, work + (size_t)g * group * s.T, s.T, HT,
                          v + (size_t)g * s.Dv, (int)s.vs, kv_seq_stride, 0.0f, o + (size_t)g * group * s.Dv, s.Dv, s.os,
                          s.B);
}

} // namespace

// the splits flash-decoding runs for `len` keys of a cache of s->T rows, 0 where the matrix
// products run (tests)
extern "C" int cuda_attention_decode_splits(const AttnShape *as, int len) {
    AttnDims s = attn_dims(as);
    if (!flash_decode_supports(s)) return 0;
    int per = keys_per_split(len, split_cap(s), s.B * s.Hkv, cuda_sm_count());
    return (len + per - 1) / per;
}

extern "C" size_t cuda_attention_decode_workspace(const AttnShape *as) {
    AttnDims s = attn_dims(as);
    if (flash_decode_supports(s)) return sizeof(float) * (size_t)split_cap(s) * s.B * s.H * (s.Dv + 1);
    return sizeof(float) * (size_t)s.B * s.H * s.T;
}

// The matrix products take the length as a launch size, so a step that uses them cannot be
// recorded.
extern "C" void cuda_attention_decode(const AttnShape *as, long kv_seq_stride, int len, const int *len_at, float *o,
                                      const float *q, const float *k, const float *v, float *work) {
    attn_check_plain(as, "decode attention");
    AttnDims s = attn_dims(as);
    if (len < 1 || len > s.T) die("internal: decode attention over %d keys of a cache of %d", len, s.T);
    if (flash_decode_supports(s)) {
        flash_decode(s, kv_seq_stride, len_at, o, q, k, v, work);
        return;
    }
    if (cuda_capture_refuses()) return;
    s.T = len;
    decode_by_matmuls(s, kv_seq_stride, o, q, k, v, work);
}
