// Causal softmax attention on the GPU. By default the tensor-core kernels of attention_mma.cu
// run; this file holds the fp32 kernels on the CUDA cores, used with ATTNLAB_CUDA_MATMUL=fp32
// (the reference-grade mode) and for heads wider than 128. The decode over a KV cache is in
// attention_decode.cu.
//
// fp32 kernels, flash-style: a block takes BR query rows (one thread each) through tiles of BC
// keys held in shared memory, with an online softmax, so no T x T matrix exists; the
// log-sum-exp of each row is kept for the backward, which recomputes the scores in two passes
// (dQ by query rows; dK and dV by key rows, summing the heads of a group, so no atomics).
#include <math.h>

#include "attention_shape.cuh"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"

enum { BR = 64, BC = 32, MAX_D = 256 };

// shared-memory row stride: +1 float keeps the threads of a warp, each on its own row, in
// different banks
static int padded(int d) { return d + 1; }

typedef AttnDims Shape;
static Shape shape_of(const AttnShape *s) { return attn_dims(s); }

__device__ __forceinline__ const float *row_of(const float *base, const Shape &s, int b, int t, long stride, int head,
                                               int width) {
    return base + ((size_t)b * s.T + t) * stride + (size_t)head * width;
}

// Rows t0 .. t0 + ROWS - 1 of head `head` of sequence b (width floats each, at row stride
// `stride`) into a shared tile at row stride width + 1, zero past T, times s.scale when SCALED
// (queries).
template <int ROWS, bool SCALED>
__device__ __forceinline__ void load_rows(float *tile, const float *base, const Shape &s, int b, int t0, long stride,
                                          int head, int width) {
    const int p = width + 1;
    for (int i = threadIdx.x; i < ROWS * width; i += blockDim.x) {
        int j = i / width, d = i % width;
        float x = 0.0f;
        if (t0 + j < s.T) {
            x = row_of(base, s, b, t0 + j, stride, head, width)[d];
            if (SCALED) x *= s.scale;
        }
        tile[j * p + d] = x;
    }
}

// The block's key tiles become keys c0 .. c0 + BC - 1 of key head g of sequence b: a barrier
// first (every thread is done with the previous tiles) and one after (the tiles are whole).
__device__ __forceinline__ void next_kv_tile(float *Ks, float *Vs, const Shape &s, const float *k, const float *v, int b,
                                             int g, int c0) {
    __syncthreads();
    load_rows<BC, false>(Ks, k, s, b, c0, s.ks, g, s.Dk);
    load_rows<BC, false>(Vs, v, s, b, c0, s.vs, g, s.Dv);
    __syncthreads();
}

__global__ void attention_forward_kernel(Shape s, float *o, float *lse, const float *q, const float *k, const float *v) {
    extern __shared__ float smem[];
    const int pk = s.Dk + 1, pv = s.Dv + 1;
    float *Qs = smem, *Os = Qs + BR * pk, *Ks = Os + BR * pv, *Vs = Ks + BC * pk;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h / (s.H / s.Hkv);
    int r0 = blockIdx.x * BR, r = r0 + threadIdx.x;
    bool live = r < s.T;
    load_rows<BR, true>(Qs, q, s, b, r0, s.qs, h, s.Dk);
    for (int i = threadIdx.x; i < BR * s.Dv; i += blockDim.x) Os[(i / s.Dv) * pv + i % s.Dv] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int last_key = min(r0 + BR, s.T); /* keys this block's rows can see */
    for (int c0 = 0; c0 < last_key; c0 += BC) {
        next_kv_tile(Ks, Vs, s, k, v, b, g, c0);
        if (!live) continue;
        float sc[BC], tile_max = -INFINITY;
        for (int j = 0; j < BC; j++) {
            float acc = -INFINITY;
            if (c0 + j <= r) {
                acc = 0.0f;
                for (int d = 0; d < s.Dk; d++) acc += Qs[threadIdx.x * pk + d] * Ks[j * pk + d];
            }
            sc[j] = acc;
            tile_max = fmaxf(tile_max, acc);
        }
        if (tile_max == -INFINITY) continue;
        float m_new = fmaxf(m, tile_max), corr = __expf(m - m_new), psum = 0.0f;
        for (int j = 0; j < BC; j++) {
            sc[j] = __expf(sc[j] - m_new);
            psum += sc[j];
        }
        float *orow = Os + threadIdx.x * pv;
        for (int d = 0; d < s.Dv; d++) {
            float acc = orow[d] * corr;
            for (int j = 0; j < BC; j++) acc += sc[j] * Vs[j * pv + d];
            orow[d] = acc;
        }
        l = l * corr + psum;
        m = m_new;
    }
    if (!live) return;
    float inv = 1.0f / l;
    float *out = o + ((size_t)b * s.T + r) * s.os + (size_t)h * s.Dv;
    for (int d = 0; d < s.Dv; d++) out[d] = Os[threadIdx.x * pv + d] * inv;
    lse[((size_t)b * s.H + h) * s.T + r] = m + logf(l);
}

static size_t forward_smem(const Shape &s) {
    return sizeof(float) * ((size_t)BR * padded(s.Dk) + (size_t)BR * padded(s.Dv) + (size_t)BC * padded(s.Dk) +
                            (size_t)BC * padded(s.Dv));
}

static void check_dims(const Shape &s) {
    if (s.Dk > MAX_D || s.Dv > MAX_D) die("GPU attention: head dimensions %d and %d exceed %d", s.Dk, s.Dv, MAX_D);
}

// the tensor-core kernels keep their packed q, k and v in `saved` (the fp32 kernels read q, k and
// v themselves, or their gathered copies)
static bool use_mma(const Shape &s) { return cuda_tensor_cores() && flash_mma_supports(s); }
static size_t packed_bytes(const Shape &s) { return use_mma(s) ? flash_mma_workspace(s) : 0; }

// the workspace: the tensor-core kernels' (packed_bytes), D, then for the fp32 kernels and a
// layout other than heads side by side the gathered keys and values and their gradients
// (attention_layout.h: the fp32 kernels read only the plain layout)
static size_t rowdot_floats(const Shape &s) { return (size_t)s.B * s.H * s.T; }
static float *gathered_in(const AttnShape *as, float *work) {
    Shape s = shape_of(as);
    return (float *)((char *)work + packed_bytes(s)) + rowdot_floats(s);
}

extern "C" size_t cuda_attention_workspace(const AttnShape *as) {
    Shape s = shape_of(as);
    return packed_bytes(s) + sizeof(float) * (rowdot_floats(s) + (use_mma(s) ? 0 : 2 * attn_gathered_floats(as)));
}

extern "C" bool cuda_attention_rotates(const AttnShape *as) {
    Shape s = shape_of(as);
    return use_mma(s) && flash_mma_rotates(s);
}

// RoPE in the op only where cuda_attention_rotates said so (the fp32 kernels read q and k as given)
static void check_rotation(const AttnShape *as) {
    if (as->rope_cos && !cuda_attention_rotates(as)) die("internal: GPU attention asked to rotate a shape it cannot");
}

extern "C" size_t cuda_attention_saved(const AttnShape *as) {
    Shape s = shape_of(as);
    return use_mma(s) ? flash_mma_saved(s) : 0;
}

static void forward_fp32(const Shape &s, float *o, float *lse, const float *q, const float *k, const float *v) {
    check_dims(s);
    size_t smem = forward_smem(s);
    CUDA_CHECK(cudaFuncSetAttribute(attention_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((s.T + BR - 1) / BR, s.B * s.H);
    attention_forward_kernel<<<grid, BR, smem>>>(s, o, lse, q, k, v);
    CUDA_LAUNCHED();
}

extern "C" void cuda_attention_forward(const AttnShape *as, float *o, float *lse, void *saved, const float *q,
                                       const float *k, const float *k_shared, const float *v, float *work) {
    attn_check_layout(as, k_shared, k_shared);
    check_rotation(as);
    Shape s = shape_of(as);
    if (use_mma(s)) {
        flash_mma_forward(s, o, lse, q, k, k_shared, v, saved);
    } else if (attn_layout_plain(as)) {
        forward_fp32(s, o, lse, q, k, v);
    } else {
        AttnShape g = attn_gathered_shape(as);
        float *kg, *vg;
        attn_gathered_buffers(as, gathered_in(as, work), &kg, &vg, NULL, NULL);
        attn_gather(cuda_copy_heads, as, kg, vg, k, k_shared, v);
        forward_fp32(shape_of(&g), o, lse, q, kg, vg);
    }
}

// ---- backward ----

// D[b,h,t] = dO . O of each row, a warp per row
__global__ void attention_rowdot_kernel(Shape s, float *D, const float *dout, const float *o) {
    WARP_ROW(i, (size_t)s.B * s.H * s.T);
    int t = (int)(i % s.T), h = (int)((i / s.T) % s.H), b = (int)(i / ((size_t)s.T * s.H));
    const float *orow = o + ((size_t)b * s.T + t) * s.os + (size_t)h * s.Dv;
    const float *drow = dout + ((size_t)b * s.T + t) * s.os + (size_t)h * s.Dv;
    float acc = 0.0f;
    for (int d = lane; d < s.Dv; d += 32) acc += orow[d] * drow[d];
    acc = warp_sum(acc);
    if (lane == 0) D[i] = acc;
}

// dQ_r = scale sum_j P_rj (dP_rj - D_r) K_j, dP_rj = dO_r . V_j; one query row per thread
__global__ void attention_dq_kernel(Shape s, float *dq, const float *dout, const float *q, const float *k,
                                    const float *v, const float *lse, const float *D) {
    extern __shared__ float smem[];
    const int pk = s.Dk + 1, pv = s.Dv + 1;
    float *Qs = smem, *dOs = Qs + BR * pk, *dQs = dOs + BR * pv, *Ks = dQs + BR * pk, *Vs = Ks + BC * pk;
    int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h / (s.H / s.Hkv);
    int r0 = blockIdx.x * BR, r = r0 + threadIdx.x;
    bool live = r < s.T;
    for (int i = threadIdx.x; i < BR * s.Dk; i += blockDim.x) {
        int rr = i / s.Dk, d = i % s.Dk;
        Qs[rr * pk + d] = r0 + rr < s.T ? row_of(q, s, b, r0 + rr, s.qs, h, s.Dk)[d] * s.scale : 0.0f;
        dQs[rr * pk + d] = 0.0f;
    }
    load_rows<BR, false>(dOs, dout, s, b, r0, s.os, h, s.Dv);
    float L = live ? lse[((size_t)b * s.H + h) * s.T + r] : 0.0f, Dr = live ? D[((size_t)b * s.H + h) * s.T + r] : 0.0f;
    int last_key = min(r0 + BR, s.T);
    for (int c0 = 0; c0 < last_key; c0 += BC) {
        next_kv_tile(Ks, Vs, s, k, v, b, g, c0);
        if (!live) continue;
        for (int j = 0; j < BC && c0 + j <= r; j++) {
            float sc = 0.0f, dp = 0.0f;
            for (int d = 0; d < s.Dk; d++) sc += Qs[threadIdx.x * pk + d] * Ks[j * pk + d];
            for (int d = 0; d < s.Dv; d++) dp += dOs[threadIdx.x * pv + d] * Vs[j * pv + d];
            float ds = __expf(sc - L) * (dp - Dr) * s.scale;
            for (int d = 0; d < s.Dk; d++) dQs[threadIdx.x * pk + d] += ds * Ks[j * pk + d];
        }
    }
    if (!live) return;
    float *out = dq + ((size_t)b * s.T + r) * s.qs + (size_t)h * s.Dk;
    for (int d = 0; d < s.Dk; d++) out[d] = dQs[threadIdx.x * pk + d];
}

// dV_j = sum_h sum_r P_rj dO_r; dK_j = sum_h sum_r dS_rj Q_r (scale folded); one key row per thread
__global__ void attention_dkv_kernel(Shape s, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                     const float *v, const float *lse, const float *D) {
    extern __shared__ float smem[];
    const int pk = s.Dk + 1, pv = s.Dv + 1;
    float *Ks = smem, *Vs = Ks + BR * pk, *dKs = Vs + BR * pv, *dVs = dKs + BR * pk, *Qs = dVs + BR * pv,
          *dOs = Qs + BC * pk, *Ls = dOs + BC * pv, *Ds = Ls + BC;
    int bg = blockIdx.y, b = bg / s.Hkv, g = bg % s.Hkv, group = s.H / s.Hkv;
    int c0 = blockIdx.x * BR, c = c0 + threadIdx.x;
    bool live = c < s.T;
    for (int i = threadIdx.x; i < BR * s.Dk; i += blockDim.x) {
        int j = i / s.Dk, d = i % s.Dk;
        Ks[j * pk + d] = c0 + j < s.T ? row_of(k, s, b, c0 + j, s.ks, g, s.Dk)[d] : 0.0f;
        dKs[j * pk + d] = 0.0f;
    }
    for (int i = threadIdx.x; i < BR * s.Dv; i += blockDim.x) {
        int j = i / s.Dv, d = i % s.Dv;
        Vs[j * pv + d] = c0 + j < s.T ? row_of(v, s, b, c0 + j, s.vs, g, s.Dv)[d] : 0.0f;
        dVs[j * pv + d] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int r0 = c0 - c0 % BC; r0 < s.T; r0 += BC) { /* query rows at or after this block's first key */
            __syncthreads();
            load_rows<BC, true>(Qs, q, s, b, r0, s.qs, h, s.Dk);
            load_rows<BC, false>(dOs, dout, s, b, r0, s.os, h, s.Dv);
            for (int rr = threadIdx.x; rr < BC; rr += blockDim.x) {
                bool in = r0 + rr < s.T;
                Ls[rr] = in ? lse[((size_t)b * s.H + h) * s.T + r0 + rr] : 0.0f;
                Ds[rr] = in ? D[((size_t)b * s.H + h) * s.T + r0 + rr] : 0.0f;
            }
            __syncthreads();
            if (!live) continue;
            for (int rr = 0; rr < BC; rr++) {
                int r = r0 + rr;
                if (r < c || r >= s.T) continue;
                float sc = 0.0f, dp = 0.0f;
                for (int d = 0; d < s.Dk; d++) sc += Qs[rr * pk + d] * Ks[threadIdx.x * pk + d];
                for (int d = 0; d < s.Dv; d++) dp += dOs[rr * pv + d] * Vs[threadIdx.x * pv + d];
                float p = __expf(sc - Ls[rr]), ds = p * (dp - Ds[rr]);
                for (int d = 0; d < s.Dv; d++) dVs[threadIdx.x * pv + d] += p * dOs[rr * pv + d];
                for (int d = 0; d < s.Dk; d++) dKs[threadIdx.x * pk + d] += ds * Qs[rr * pk + d]; /* Q has the scale */
            }
        }
    }
    if (!live) return;
    float *dkr = dk + ((size_t)b * s.T + c) * s.ks + (size_t)g * s.Dk, *dvr = dv + ((size_t)b * s.T + c) * s.vs + (size_t)g * s.Dv;
    for (int d = 0; d < s.Dk; d++) dkr[d] = dKs[threadIdx.x * pk + d];
    for (int d = 0; d < s.Dv; d++) dvr[d] = dVs[threadIdx.x * pv + d];
}

static void backward_fp32(const Shape &s, float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *lse, const float *D) {
    check_dims(s);
    size_t smem_q = sizeof(float) * ((size_t)BR * (2 * padded(s.Dk) + padded(s.Dv)) + (size_t)BC * (padded(s.Dk) + padded(s.Dv)));
    CUDA_CHECK(cudaFuncSetAttribute(attention_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    attention_dq_kernel<<<dim3((s.T + BR - 1) / BR, s.B * s.H), BR, smem_q>>>(s, dq, dout, q, k, v, lse, D);
    CUDA_LAUNCHED();
    size_t smem_kv = sizeof(float) * ((size_t)BR * 2 * (padded(s.Dk) + padded(s.Dv)) +
                                      (size_t)BC * (padded(s.Dk) + padded(s.Dv) + 2));
    CUDA_CHECK(cudaFuncSetAttribute(attention_dkv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    attention_dkv_kernel<<<dim3((s.T + BR - 1) / BR, s.B * s.Hkv), BR, smem_kv>>>(s, dk, dv, dout, q, k, v, lse, D);
    CUDA_LAUNCHED();
}

extern "C" void cuda_attention_backward(const AttnShape *as, float *dq, float *dk, float *dk_shared, float *dv,
                                        const float *dout, const float *q, const float *k, const float *k_shared,
                                        const float *v, const float *o, const float *lse, const void *saved,
                                        float *work) {
    attn_check_layout(as, k_shared, dk_shared);
    check_rotation(as);
    Shape s = shape_of(as);
    float *D = (float *)((char *)work + packed_bytes(s));
    if (!use_mma(s) || !flash_mma_rowdot_in_pack(s)) {
        attention_rowdot_kernel<<<grid_for(rowdot_floats(s) * 32, 256), 256>>>(s, D, dout, o);
        CUDA_LAUNCHED();
    }
    if (use_mma(s)) {
        flash_mma_backward(s, dq, dk, dk_shared, dv, dout, o, lse, D, saved, work);
    } else if (attn_layout_plain(as)) {
        backward_fp32(s, dq, dk, dv, dout, q, k, v, lse, D);
    } else {
        AttnShape g = attn_gathered_shape(as);
        float *kg, *vg, *dkg, *dvg;
        attn_gathered_buffers(as, gathered_in(as, work), &kg, &vg, &dkg, &dvg);
        attn_gather(cuda_copy_heads, as, kg, vg, k, k_shared, v);
        backward_fp32(shape_of(&g), dq, dkg, dvg, dout, q, kg, vg, lse, D);
        attn_scatter_grads(cuda_copy_heads, as, dk, dk_shared, dv, dkg, dvg);
    }
}
