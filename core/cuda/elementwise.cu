// The GPU's small kernels: embedding, RMSNorm, SwiGLU, RoPE, activations and gates, feature
// maps, bias, strided row copies, the linear-attention normalizer, L2 norm and the log-space
// decay gate (the short convolution is conv1d.cu). Sums across rows (parameter gradients) use atomic adds:
// fast, and the order of their additions is the only thing that varies between runs.
#include <math.h>

#include "cuda_common.cuh"
#include "cuda_ops.cuh"
#include "rope_pair.cuh"

static unsigned row_threads(int C) { return C >= 256 ? 256 : C >= 128 ? 128 : C >= 64 ? 64 : 32; }

// V consecutive floats a thread: V = 4 makes one 16-byte load or store of each operand, where
// vec4_fits says the buffers allow it (the float-a-thread gate, bias and decay kernels moved about
// 2.2 TB/s on an H200, ncu at b63737c); else V = 1.
template <int V> struct Floats {
    float v[V];
};
template <int V> __device__ __forceinline__ Floats<V> load_floats(const float *p) {
    Floats<V> f;
    if constexpr (V == 4) {
        float4 t = *reinterpret_cast<const float4 *>(p);
        f.v[0] = t.x, f.v[1] = t.y, f.v[2] = t.z, f.v[3] = t.w;
    } else {
        for (int k = 0; k < V; k++) f.v[k] = p[k];
    }
    return f;
}
template <int V> __device__ __forceinline__ void store_floats(float *p, const Floats<V> &f) {
    if constexpr (V == 4) *reinterpret_cast<float4 *>(p) = make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
    else
        for (int k = 0; k < V; k++) p[k] = f.v[k];
}
// n floats in groups of 4 at every pointer given, each 16-byte aligned (a null one is no constraint)
static bool vec4_fits(size_t n, const void *a, const void *b = nullptr, const void *c = nullptr,
                      const void *d = nullptr, const void *e = nullptr) {
    return n % 4 == 0 && ((size_t)a | (size_t)b | (size_t)c | (size_t)d | (size_t)e) % 16 == 0;
}

// ---- embedding ----

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *wte, int N, int C) {
    pdl_begin();
    EACH(i, (size_t)N * C) out[i] = wte[(size_t)tokens[i / C] * C + i % C];
}
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *tokens, int N, int C) {
    EACH(i, (size_t)N * C) atomicAdd(&dwte[(size_t)tokens[i / C] * C + i % C], dout[i]);
}
extern "C" void cuda_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    pdl_launch(embedding_forward_kernel, grid_for((size_t)N * C, 256), 256, 0, out, tokens, wte, N, C);
    CUDA_LAUNCHED();
}
extern "C" void cuda_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    embedding_backward_kernel<<<grid_for((size_t)N * C, 256), 256>>>(dwte, dout, tokens, N, C);
    CUDA_LAUNCHED();
}

// ---- RMSNorm: one block per row ----

// out16 (NULL: none) receives out rounded to bf16 as well: the copy hold_operand keeps for the products
__global__ void rmsnorm_forward_kernel(float *out, __nv_bfloat16 *out16, float *rstd, const float *x, const float *w,
                                       int C, float eps) {
    const float *xr = x + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
    ss = block_sum(ss);
    float r = rsqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    float *o = out + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        o[c] = xr[c] * r * w[c];
        if (out16) out16[(size_t)blockIdx.x * C + c] = __float2bfloat16_rn(o[c]);
    }
}
__global__ void rmsnorm_backward_kernel(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                        const float *rstd, int C) {
    size_t row = blockIdx.x;
    const float *xr = x + row * C, *dy = dout + row * C;
    float r = rstd[row], dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += w[c] * dy[c] * xr[c];
    dot = block_sum(dot);
    float k = r * r * r * dot / C;
    float *dxr = dx + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dxr[c] += r * w[c] * dy[c] - k * xr[c];
}
// dw[c] += sum over rows of dy x rstd
__global__ void rmsnorm_dw_kernel(float *dw, const float *dout, const float *x, const float *rstd, int N, int C) {
    int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C) COL_SUM_ROWS(r, N) acc += dout[(size_t)r * C + c] * x[(size_t)r * C + c] * rstd[r];
    acc = col_sum_reduce(acc);
    if (threadIdx.y == 0 && c < C) atomicAdd(&dw[c], acc);
}

// A warp per row, four channels a lane per step, the row held in registers between its sum and
// its use: one pass over memory with 16-byte accesses and no barrier per row (the backward's two
// barriers are per block, around the block's sum of dw; below). The block-per-row
// kernels above (kept for rows not a multiple of 4 floats, or wider than 32 x 4 x NV4_MAX) spend
// their time in two barriers a row: ncu (H200, fa71a06) had the forward at about 1.8 TB/s, 55 us
// for 16,384 rows of 768. The arithmetic is theirs, in the same order per element; the sums of
// squares and of products are summed in another order.
enum { NORM_ROWS_PER_BLOCK = 8, NV4_MAX = 16 };
template <int NV4>
__global__ void rmsnorm_forward_rows_kernel(float *out, __nv_bfloat16 *out16, float *rstd, const float *x,
                                            const float *w, int N, int C, float eps) {
    pdl_begin();
    int row = blockIdx.x * NORM_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31, C4 = C / 4;
    if (row >= N) return;
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)row * C), *w4 = reinterpret_cast<const float4 *>(w);
    /* the weights are loaded with the row, not after its sum: a decode step's one row is then one
     * memory latency instead of two (3.7 us a norm on an H200, 37 norms an MLA step) */
    float4 v[NV4], g[NV4];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NV4; k++) {
        int c = lane + 32 * k;
        v[k] = g[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (c < C4) v[k] = xr[c], g[k] = __ldg(w4 + c);
        ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    }
    float r = rsqrtf(warp_sum(ss) / C + eps);
    if (lane == 0) rstd[row] = r;
    float4 *o = reinterpret_cast<float4 *>(out + (size_t)row * C);
    uint2 *o16 = out16 ? reinterpret_cast<uint2 *>(out16 + (size_t)row * C) : NULL;
#pragma unroll
    for (int k = 0; k < NV4; k++) {
        int c = lane + 32 * k;
        if (c >= C4) break;
        float4 y = make_float4(v[k].x * r * g[k].x, v[k].y * r * g[k].y, v[k].z * r * g[k].z, v[k].w * r * g[k].w);
        o[c] = y;
        if (o16) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(y.x, y.y), hi = __floats2bfloat162_rn(y.z, y.w);
            o16[c] = make_uint2(*reinterpret_cast<unsigned *>(&lo), *reinterpret_cast<unsigned *>(&hi));
        }
    }
}
// The backward takes rows_per_warp rows a warp and adds the block's rows' share of dw (dout x
// rstd, the dw kernel's terms) from the registers that hold them: one atomic a channel into shared
// memory for each warp, then one a channel into dw for the block, instead of the dw kernel's
// second pass over dout and x (37 launches, 1.1 ms of the 3:1 KDA/MLA step at b63737c). Enough
// rows a warp that the blocks number about NORM_BACKWARD_BLOCKS_PER_SM a multiprocessor: fewer
// blocks, fewer atomics queued on each channel of dw (a delta layer's output norm has 64).
enum { NORM_BACKWARD_BLOCKS_PER_SM = 4 };
template <int NV4>
__global__ void rmsnorm_backward_rows_kernel(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                             const float *rstd, int N, int C, int rows_per_warp) {
    __shared__ float dw_block[4][32 * NV4]; /* channel 4 c + j at [j][c]: a warp's lanes on neighbouring banks */
    pdl_begin();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, C4 = C / 4;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dw_block[c % 4][c / 4] = 0.0f;
    __syncthreads();
    const float4 *w4 = reinterpret_cast<const float4 *>(w);
    float4 dw_part[NV4];
#pragma unroll
    for (int k = 0; k < NV4; k++) dw_part[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int j = 0; j < rows_per_warp; j++) {
        int row = (blockIdx.x * rows_per_warp + j) * NORM_ROWS_PER_BLOCK + warp;
        if (row >= N) break;
        const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)row * C),
                     *dy = reinterpret_cast<const float4 *>(dout + (size_t)row * C);
        float4 xv[NV4], dv[NV4];
        float dot = 0.0f;
#pragma unroll
        for (int k = 0; k < NV4; k++) {
            int c = lane + 32 * k;
            float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f), g = z;
            xv[k] = dv[k] = z;
            if (c < C4) xv[k] = xr[c], dv[k] = dy[c], g = w4[c];
            dot += g.x * dv[k].x * xv[k].x + g.y * dv[k].y * xv[k].y + g.z * dv[k].z * xv[k].z +
                   g.w * dv[k].w * xv[k].w;
        }
        float r = rstd[row], k3 = r * r * r * warp_sum(dot) / C;
        float4 *dxr = reinterpret_cast<float4 *>(dx + (size_t)row * C);
#pragma unroll
        for (int k = 0; k < NV4; k++) {
            int c = lane + 32 * k;
            if (c >= C4) break;
            float4 a = dxr[c], g = w4[c]; /* w again from cache: a row's weights are every row's */
            a.x += r * g.x * dv[k].x - k3 * xv[k].x;
            a.y += r * g.y * dv[k].y - k3 * xv[k].y;
            a.z += r * g.z * dv[k].z - k3 * xv[k].z;
            a.w += r * g.w * dv[k].w - k3 * xv[k].w;
            dxr[c] = a;
            dw_part[k].x += dv[k].x * xv[k].x * r;
            dw_part[k].y += dv[k].y * xv[k].y * r;
            dw_part[k].z += dv[k].z * xv[k].z * r;
            dw_part[k].w += dv[k].w * xv[k].w * r;
        }
    }
#pragma unroll
    for (int k = 0; k < NV4; k++) {
        int c = lane + 32 * k;
        if (c >= C4) break;
        atomicAdd(&dw_block[0][c], dw_part[k].x);
        atomicAdd(&dw_block[1][c], dw_part[k].y);
        atomicAdd(&dw_block[2][c], dw_part[k].z);
        atomicAdd(&dw_block[3][c], dw_part[k].w);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(&dw[c], dw_block[c % 4][c / 4]);
}
// float4s a lane holds for a row of C floats (a power of two), or 0: the block-per-row kernels
static int norm_rows_nv4(const void *a, const void *b, const void *c, const void *d, int C) {
    if (C % 4 != 0 || ((size_t)a | (size_t)b | (size_t)c | (size_t)d) % 16 != 0) return 0;
    for (int nv = 1; nv <= NV4_MAX; nv *= 2)
        if (32 * 4 * nv >= C) return nv;
    return 0;
}
// KERNEL<nv> over N rows, ROWS of them a block
#define NORM_ROWS_DISPATCH(nv, KERNEL, N, ROWS, ...)                                                                  \
    do {                                                                                                              \
        unsigned blocks_ = (unsigned)(((N) + (ROWS) - 1) / (ROWS)), threads_ = 32 * NORM_ROWS_PER_BLOCK;              \
        switch (nv) {                                                                                                 \
        case 1: pdl_launch(KERNEL<1>, blocks_, threads_, 0, __VA_ARGS__); break;                                      \
        case 2: pdl_launch(KERNEL<2>, blocks_, threads_, 0, __VA_ARGS__); break;                                      \
        case 4: pdl_launch(KERNEL<4>, blocks_, threads_, 0, __VA_ARGS__); break;                                      \
        case 8: pdl_launch(KERNEL<8>, blocks_, threads_, 0, __VA_ARGS__); break;                                      \
        default: pdl_launch(KERNEL<16>, blocks_, threads_, 0, __VA_ARGS__); break;                                    \
        }                                                                                                             \
    } while (0)

extern "C" void cuda_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    if (N <= 0) return;
    __nv_bfloat16 *out16 = cuda_held_target(out, (size_t)N * C); /* hold_operand's copy, made here */
    if (int nv = norm_rows_nv4(out, x, w, x, C))
        NORM_ROWS_DISPATCH(nv, rmsnorm_forward_rows_kernel, N, NORM_ROWS_PER_BLOCK, out, out16, rstd, x, w, N, C, eps);
    else rmsnorm_forward_kernel<<<N, row_threads(C)>>>(out, out16, rstd, x, w, C, eps);
    CUDA_LAUNCHED();
}
extern "C" void cuda_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                      const float *rstd, int N, int C) {
    if (N <= 0) return;
    if (int nv = norm_rows_nv4(dx, dout, x, w, C)) { /* dw with dx */
        int groups = (N + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK; /* of a row a warp */
        int blocks = NORM_BACKWARD_BLOCKS_PER_SM * cuda_sm_count();
        int per_warp = groups > blocks ? (groups + blocks - 1) / blocks : 1;
        NORM_ROWS_DISPATCH(nv, rmsnorm_backward_rows_kernel, N, NORM_ROWS_PER_BLOCK * per_warp, dx, dw, dout, x, w, rstd,
                           N, C, per_warp);
        CUDA_LAUNCHED();
        return;
    }
    rmsnorm_backward_kernel<<<N, row_threads(C)>>>(dx, dw, dout, x, w, rstd, C);
    CUDA_LAUNCHED();
    rmsnorm_dw_kernel<<<col_sum_grid(N, C), col_sum_block()>>>(dw, dout, x, rstd, N, C);
    CUDA_LAUNCHED();
}

// ---- SwiGLU: rows [gate (F) | up (F)] ----

__global__ void swiglu_forward_kernel(float *out, const float *gu, int N, int F) {
    EACH(i, (size_t)N * F) {
        size_t n = i / F, f = i % F;
        out[i] = swiglu_of(gu[n * 2 * F + f], gu[n * 2 * F + F + f]);
    }
}
__global__ void swiglu_backward_kernel(float *dgu, const float *dout, const float *gu, int N, int F) {
    EACH(i, (size_t)N * F) {
        size_t n = i / F, f = i % F;
        swiglu_grad(&dgu[n * 2 * F + f], &dgu[n * 2 * F + F + f], gu[n * 2 * F + f], gu[n * 2 * F + F + f], dout[i]);
    }
}

// Four neighbouring channels a thread, rows by blockIdx.y: 16-byte loads and stores and no 64-bit
// division per element, which held the scalar kernels to about 2 TB/s on an H200 (ncu: 0.19 ms a
// call for 16,384 rows of 2,048). Needs F a multiple of 4 and 16-byte aligned buffers.
__global__ void swiglu_forward4_kernel(float *out, const float *gu, int N, int F) {
    pdl_begin();
    int c = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const float *row = gu + (size_t)n * 2 * F;
        float4 g = *reinterpret_cast<const float4 *>(row + c), u = *reinterpret_cast<const float4 *>(row + F + c);
        float4 y = make_float4(swiglu_of(g.x, u.x), swiglu_of(g.y, u.y), swiglu_of(g.z, u.z), swiglu_of(g.w, u.w));
        *reinterpret_cast<float4 *>(out + (size_t)n * F + c) = y;
    }
}
__global__ void swiglu_backward4_kernel(float *dgu, const float *dout, const float *gu, int N, int F) {
    int c = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const float *row = gu + (size_t)n * 2 * F;
        float4 g = *reinterpret_cast<const float4 *>(row + c), u = *reinterpret_cast<const float4 *>(row + F + c);
        float4 dy = *reinterpret_cast<const float4 *>(dout + (size_t)n * F + c), dg, du;
        swiglu_grad(&dg.x, &du.x, g.x, u.x, dy.x);
        swiglu_grad(&dg.y, &du.y, g.y, u.y, dy.y);
        swiglu_grad(&dg.z, &du.z, g.z, u.z, dy.z);
        swiglu_grad(&dg.w, &du.w, g.w, u.w, dy.w);
        float *drow = dgu + (size_t)n * 2 * F;
        *reinterpret_cast<float4 *>(drow + c) = dg;
        *reinterpret_cast<float4 *>(drow + F + c) = du;
    }
}

static bool swiglu_vec4(const void *a, const void *b, const void *c, int F) {
    return F % 4 == 0 && ((size_t)a | (size_t)b | (size_t)c) % 16 == 0;
}
static dim3 swiglu_grid4(int N, int F) { return dim3((unsigned)((F / 4 + 255) / 256), (unsigned)(N < 65535 ? N : 65535)); }

extern "C" void cuda_swiglu_forward(float *out, const float *gate_up, int N, int F) {
    if (N <= 0 || F <= 0) return;
    if (swiglu_vec4(out, gate_up, gate_up, F)) pdl_launch(swiglu_forward4_kernel, swiglu_grid4(N, F), 256, 0, out, gate_up, N, F);
    else swiglu_forward_kernel<<<grid_for((size_t)N * F, 256), 256>>>(out, gate_up, N, F);
    CUDA_LAUNCHED();
}
extern "C" void cuda_swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F) {
    if (N <= 0 || F <= 0) return;
    if (swiglu_vec4(dgate_up, dout, gate_up, F))
        swiglu_backward4_kernel<<<swiglu_grid4(N, F), 256>>>(dgate_up, dout, gate_up, N, F);
    else swiglu_backward_kernel<<<grid_for((size_t)N * F, 256), 256>>>(dgate_up, dout, gate_up, N, F);
    CUDA_LAUNCHED();
}

// ---- RoPE, in place, half-split pairs ----

// A block per token row (its position read once), its threads over the row's (head, pair)
// elements in 32-bit arithmetic: a thread per element dividing a 64-bit index three times ran at
// about 2.3 TB/s on an H200.
__global__ void rope_kernel(float *x, int T, int H, int head_stride, long stride, int offset, int rot,
                            const float *cos_t, const float *sin_t, int pos0, float sign) {
    int half = rot / 2, t = (int)(blockIdx.x % (unsigned)T);
    float *row = x + (size_t)blockIdx.x * stride + offset;
    const float *cr = cos_t + (size_t)(pos0 + t) * half, *sr = sin_t + (size_t)(pos0 + t) * half;
    for (int e = threadIdx.x; e < H * half; e += blockDim.x) {
        int h = e / half, j = e - h * half;
        float *x1 = row + h * head_stride + j, *x2 = x1 + half;
        float2 r = rope_pair(*x1, *x2, cr[j], sign * sr[j]);
        *x1 = r.x;
        *x2 = r.y;
    }
}
static void rope(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot, const float *cos,
                 const float *sin, int pos0, float sign) {
    if (B <= 0 || T <= 0 || H <= 0 || rot < 2) return;
    int work = H * (rot / 2), threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    rope_kernel<<<(unsigned)(B * T), threads>>>(x, T, H, head_stride, stride, offset, rot, cos, sin, pos0, sign);
    CUDA_LAUNCHED();
}
extern "C" void cuda_rope_forward(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                                  const float *cos, const float *sin, int pos0) {
    rope(x, B, T, H, head_stride, stride, offset, rot, cos, sin, pos0, 1.0f);
}
extern "C" void cuda_rope_backward(float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                                   const float *cos, const float *sin, int pos0) {
    rope(dx, B, T, H, head_stride, stride, offset, rot, cos, sin, pos0, -1.0f);
}

// ---- activations, gates, feature maps (elementwise; y may be x) ----

__global__ void silu_kernel(float *y, const float *x, size_t n) {
    EACH(i, n) y[i] = x[i] * sigmoidf_(x[i]);
}
__global__ void silu_backward_kernel(float *dx, const float *dy, const float *x, size_t n) {
    EACH(i, n) {
        float s = sigmoidf_(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
__global__ void sigmoid_kernel(float *y, const float *x, size_t n) {
    pdl_begin();
    EACH(i, n) y[i] = sigmoidf_(x[i]);
}
__global__ void sigmoid_backward_kernel(float *dx, const float *dy, const float *y, size_t n) {
    EACH(i, n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}
template <int V> __global__ void gate_kernel(float *y, const float *a, const float *z, size_t n, int silu) {
    pdl_begin();
    EACH(j, n / V) {
        Floats<V> av = load_floats<V>(a + j * V), zv = load_floats<V>(z + j * V), out;
#pragma unroll
        for (int k = 0; k < V; k++) {
            float s = sigmoidf_(zv.v[k]);
            out.v[k] = av.v[k] * (silu ? zv.v[k] * s : s);
        }
        store_floats<V>(y + j * V, out);
    }
}
template <int V>
__global__ void gate_backward_kernel(float *da, float *dz, const float *dy, const float *a, const float *z, size_t n,
                                     int silu) {
    EACH(j, n / V) {
        Floats<V> zv = load_floats<V>(z + j * V), dv = load_floats<V>(dy + j * V), av = load_floats<V>(a + j * V);
        Floats<V> dav, dzv;
#pragma unroll
        for (int k = 0; k < V; k++) {
            float zi = zv.v[k], s = sigmoidf_(zi), d = dv.v[k], ai = av.v[k];
            float act = silu ? zi * s : s, dact = silu ? s * (1.0f + zi * (1.0f - s)) : s * (1.0f - s);
            dav.v[k] = d * act;
            dzv.v[k] = d * ai * dact;
        }
        store_floats<V>(da + j * V, dav);
        store_floats<V>(dz + j * V, dzv);
    }
}
__global__ void feature_map_kernel(float *y, const float *x, size_t n, int f) {
    EACH(i, n) {
        float v = x[i];
        y[i] = f == FEATURE_ELU1 ? (v > 0.0f ? v + 1.0f : __expf(v)) : f == FEATURE_RELU ? fmaxf(v, 0.0f) : v;
    }
}
__global__ void feature_map_backward_kernel(float *dx, const float *dy, const float *x, size_t n, int f) {
    EACH(i, n) {
        float v = x[i], d = dy[i];
        dx[i] = f == FEATURE_ELU1 ? (v > 0.0f ? d : d * __expf(v)) : f == FEATURE_RELU ? (v > 0.0f ? d : 0.0f) : d;
    }
}
extern "C" void cuda_silu_forward(float *y, const float *x, size_t n) {
    silu_kernel<<<grid_for(n, 256), 256>>>(y, x, n);
    CUDA_LAUNCHED();
}
extern "C" void cuda_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
    silu_backward_kernel<<<grid_for(n, 256), 256>>>(dx, dy, x, n);
    CUDA_LAUNCHED();
}
extern "C" void cuda_sigmoid_forward(float *y, const float *x, size_t n) {
    pdl_launch(sigmoid_kernel, grid_for(n, 256), 256, 0, y, x, n);
    CUDA_LAUNCHED();
}
extern "C" void cuda_sigmoid_backward(float *dx, const float *dy, const float *y, size_t n) {
    sigmoid_backward_kernel<<<grid_for(n, 256), 256>>>(dx, dy, y, n);
    CUDA_LAUNCHED();
}
extern "C" void cuda_gate_forward(float *y, const float *a, const float *z, size_t n, GateAct act) {
    int silu = act == ACT_SILU;
    if (vec4_fits(n, y, a, z)) pdl_launch(gate_kernel<4>, grid_for(n / 4, 256), 256, 0, y, a, z, n, silu);
    else pdl_launch(gate_kernel<1>, grid_for(n, 256), 256, 0, y, a, z, n, silu);
    CUDA_LAUNCHED();
}
extern "C" void cuda_gate_backward(float *da, float *dz, const float *dy, const float *a, const float *z, size_t n,
                                   GateAct act) {
    if (vec4_fits(n, da, dz, dy, a, z))
        gate_backward_kernel<4><<<grid_for(n / 4, 256), 256>>>(da, dz, dy, a, z, n, act == ACT_SILU);
    else gate_backward_kernel<1><<<grid_for(n, 256), 256>>>(da, dz, dy, a, z, n, act == ACT_SILU);
    CUDA_LAUNCHED();
}
extern "C" void cuda_feature_map_forward(float *y, const float *x, size_t n, FeatureMap f) {
    feature_map_kernel<<<grid_for(n, 256), 256>>>(y, x, n, (int)f);
    CUDA_LAUNCHED();
}
extern "C" void cuda_feature_map_backward(float *dx, const float *dy, const float *x, size_t n, FeatureMap f) {
    feature_map_backward_kernel<<<grid_for(n, 256), 256>>>(dx, dy, x, n, (int)f);
    CUDA_LAUNCHED();
}

// ---- bias ----

// V = 4 where C is too: a group's 4 columns in one row
template <int V> __global__ void bias_kernel(float *y, const float *bias, int rows, int C) {
    pdl_begin();
    EACH(j, (size_t)rows * C / V) {
        Floats<V> yv = load_floats<V>(y + j * V), bv = load_floats<V>(bias + j * V % C);
#pragma unroll
        for (int k = 0; k < V; k++) yv.v[k] += bv.v[k];
        store_floats<V>(y + j * V, yv);
    }
}
__global__ void bias_backward_kernel(float *dbias, const float *dy, int rows, int C) {
    int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C) COL_SUM_ROWS(r, rows) acc += dy[(size_t)r * C + c];
    acc = col_sum_reduce(acc);
    if (threadIdx.y == 0 && c < C) atomicAdd(&dbias[c], acc);
}
extern "C" void cuda_bias_forward(float *y, const float *bias, int rows, int C) {
    size_t n = (size_t)rows * C;
    if (vec4_fits(C, y, bias)) pdl_launch(bias_kernel<4>, grid_for(n / 4, 256), 256, 0, y, bias, rows, C);
    else pdl_launch(bias_kernel<1>, grid_for(n, 256), 256, 0, y, bias, rows, C);
    CUDA_LAUNCHED();
}
extern "C" void cuda_bias_backward(float *dbias, const float *dy, int rows, int C) {
    if (rows <= 0) return;
    bias_backward_kernel<<<col_sum_grid(rows, C), col_sum_block()>>>(dbias, dy, rows, C);
    CUDA_LAUNCHED();
}

// ---- rows scaled by one value each ----

__global__ void row_scale_kernel(float *y, const float *x, const float *s, int rows, int D, float alpha) {
    EACH(i, (size_t)rows * D) y[i] = alpha * s[i / D] * x[i];
}
// one warp per row; each lane writes only the entries it read for the dot product, so dx may be dy
__global__ void row_scale_backward_kernel(float *dx, float *ds, const float *dy, const float *x, const float *s,
                                          int rows, int D, float alpha, int accumulate) {
    size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (r >= (size_t)rows) return;
    const float *dyr = dy + r * D, *xr = x + r * D;
    float acc = 0.0f, f = alpha * s[r];
    for (int c = lane; c < D; c += 32) acc += dyr[c] * xr[c];
    acc = warp_sum(acc);
    for (int c = lane; c < D; c += 32) {
        float g = f * dyr[c];
        if (accumulate) dx[r * D + c] += g;
        else dx[r * D + c] = g;
    }
    if (lane == 0) ds[r] += alpha * acc;
}
extern "C" void cuda_row_scale_forward(float *y, const float *x, const float *s, int rows, int D, float alpha) {
    if (rows <= 0 || D <= 0) return;
    row_scale_kernel<<<grid_for((size_t)rows * D, 256), 256>>>(y, x, s, rows, D, alpha);
    CUDA_LAUNCHED();
}
extern "C" void cuda_row_scale_backward(float *dx, float *ds, const float *dy, const float *x, const float *s, int rows,
                                        int D, float alpha, bool accumulate) {
    if (rows <= 0 || D <= 0) return;
    row_scale_backward_kernel<<<grid_for((size_t)rows * 32, 256), 256>>>(dx, ds, dy, x, s, rows, D, alpha, accumulate);
    CUDA_LAUNCHED();
}

// ---- strided rows and the normalizer channel ----

// one thread per (row, column), walking the heads in order, so that a dst head stride of 0 sums
// the heads without atomics
__global__ void copy_heads_kernel(float *dst, long dst_stride, long dst_head_stride, const float *src, long src_stride,
                                  long src_head_stride, int rows, int heads, int cols, int accumulate) {
    pdl_begin();
    EACH(i, (size_t)rows * cols) {
        size_t r = i / cols, c = i % cols;
        float *d = dst + r * dst_stride + c;
        const float *s = src + r * src_stride + c;
        for (int h = 0; h < heads; h++) {
            float v = s[h * src_head_stride];
            if (accumulate) d[h * dst_head_stride] += v;
            else d[h * dst_head_stride] = v;
        }
    }
}
extern "C" void cuda_copy_heads(float *dst, long dst_stride, long dst_head_stride, const float *src, long src_stride,
                                long src_head_stride, int rows, int heads, int cols, bool accumulate) {
    if (rows <= 0 || heads <= 0 || cols <= 0) return;
    pdl_launch(copy_heads_kernel, grid_for((size_t)rows * cols, 256), 256, 0, dst, dst_stride, dst_head_stride, src,
               src_stride, src_head_stride, rows, heads, cols, (int)accumulate);
    CUDA_LAUNCHED();
}
extern "C" void cuda_copy_rows(float *dst, long dst_stride, const float *src, long src_stride, int rows, int cols,
                               bool accumulate) {
    cuda_copy_heads(dst, dst_stride, 0, src, src_stride, 0, rows, 1, cols, accumulate);
}

// the position is read on the device, so the launch is the same at every step (CUDA graphs)
__global__ void cache_write_kernel(float *cache, long seq_stride, long row_stride, const int *pos, const float *src,
                                   long src_stride, int B, int cols) {
    pdl_begin();
    const long at = (long)*pos * row_stride;
    EACH(i, (size_t)B * cols) {
        size_t b = i / cols, c = i % cols;
        cache[b * seq_stride + at + c] = src[b * src_stride + c];
    }
}
extern "C" void cuda_cache_write(float *cache, long seq_stride, long row_stride, const int *pos, const float *src,
                                 long src_stride, int B, int cols) {
    pdl_launch(cache_write_kernel, grid_for((size_t)B * cols, 256), 256, 0, cache, seq_stride, row_stride, pos, src,
               src_stride, B, cols);
    CUDA_LAUNCHED();
}

// a block a sequence: the row's squares summed, then the normalized a and b written side by side
__global__ void cache_write_normed_kernel(float *cache, long seq_stride, const int *pos, const float *a, int na,
                                          const float *w, float eps, const float *b, int nb) {
    pdl_begin();
    const float *ar = a + (size_t)blockIdx.x * na, *br = b + (size_t)blockIdx.x * nb;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < na; c += blockDim.x) ss += ar[c] * ar[c];
    float r = rsqrtf(block_sum(ss) / na + eps);
    float *row = cache + (size_t)blockIdx.x * seq_stride + (long)*pos * (na + nb);
    for (int c = threadIdx.x; c < na; c += blockDim.x) row[c] = ar[c] * r * w[c];
    for (int c = threadIdx.x; c < nb; c += blockDim.x) row[na + c] = br[c];
}
extern "C" void cuda_cache_write_normed(float *cache, long seq_stride, const int *pos, const float *a, int na,
                                        const RowNorm *norm, const float *b, int nb, int B) {
    if (B <= 0) return;
    pdl_launch(cache_write_normed_kernel, B, row_threads(na), 0, cache, seq_stride, pos, a, na, norm->w, norm->eps, b,
               nb);
    CUDA_LAUNCHED();
}

__global__ void append_ones_kernel(float *y, const float *x, int rows, int D) {
    EACH(i, (size_t)rows * (D + 1)) {
        size_t r = i / (D + 1), c = i % (D + 1);
        y[i] = c == (size_t)D ? 1.0f : x[r * D + c];
    }
}
__global__ void normalize_by_last_kernel(float *o, const float *num, int rows, int D, float eps) {
    EACH(i, (size_t)rows * D) {
        size_t r = i / D, c = i % D;
        const float *nr = num + r * (D + 1);
        o[i] = nr[c] / (nr[D] + eps);
    }
}
__global__ void normalize_by_last_backward_kernel(float *dnum, const float *dout, const float *num, int rows, int D,
                                                  float eps) {
    size_t r = blockIdx.x;
    const float *nr = num + r * (D + 1), *dr = dout + r * D;
    float *dn = dnum + r * (D + 1), inv = 1.0f / (nr[D] + eps), acc = 0.0f;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        dn[c] = dr[c] * inv;
        acc += dr[c] * nr[c];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dn[D] = -acc * inv * inv;
}
extern "C" void cuda_append_ones(float *y, const float *x, int rows, int D) {
    append_ones_kernel<<<grid_for((size_t)rows * (D + 1), 256), 256>>>(y, x, rows, D);
    CUDA_LAUNCHED();
}
extern "C" void cuda_normalize_by_last(float *o, const float *num, int rows, int D, float eps) {
    normalize_by_last_kernel<<<grid_for((size_t)rows * D, 256), 256>>>(o, num, rows, D, eps);
    CUDA_LAUNCHED();
}
extern "C" void cuda_normalize_by_last_backward(float *dnum, const float *dout, const float *num, int rows, int D,
                                                float eps) {
    if (rows <= 0) return;
    normalize_by_last_backward_kernel<<<rows, row_threads(D)>>>(dnum, dout, num, rows, D, eps);
    CUDA_LAUNCHED();
}

// ---- L2 norm of rows of D ----

// A warp per row (rows are heads, 16 to 256 wide): a block per row spent its time in the
// block-wide reduction's barriers.
__global__ void l2norm_forward_kernel(float *y, float *rnorm, const float *x, int rows, int D, float eps) {
    WARP_ROW(i, rows);
    const float *xr = x + i * D;
    float ss = 0.0f;
    for (int c = lane; c < D; c += 32) ss += xr[c] * xr[c];
    float r = rsqrtf(warp_sum(ss) + eps);
    if (lane == 0) rnorm[i] = r;
    for (int c = lane; c < D; c += 32) y[i * D + c] = xr[c] * r;
}
__global__ void l2norm_backward_kernel(float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D) {
    WARP_ROW(i, rows);
    size_t o = i * D;
    float dot = 0.0f;
    for (int c = lane; c < D; c += 32) dot += y[o + c] * dy[o + c];
    dot = warp_sum(dot);
    float r = rnorm[i];
    for (int c = lane; c < D; c += 32) dx[o + c] = r * (dy[o + c] - y[o + c] * dot);
}
extern "C" void cuda_l2norm_forward(float *y, float *rnorm, const float *x, int rows, int D, float eps) {
    if (rows <= 0) return;
    l2norm_forward_kernel<<<grid_for((size_t)rows * 32, 256), 256>>>(y, rnorm, x, rows, D, eps);
    CUDA_LAUNCHED();
}
extern "C" void cuda_l2norm_backward(float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D) {
    if (rows <= 0) return;
    l2norm_backward_kernel<<<grid_for((size_t)rows * 32, 256), 256>>>(dx, dy, y, rnorm, rows, D);
    CUDA_LAUNCHED();
}

// ---- log-space decay gate: g = -exp(A_log[h]) softplus(a + dt_bias[h D + d]) ----

__device__ __forceinline__ float softplusf_(float x) { return x > 20.0f ? x : x < -20.0f ? expf(x) : log1pf(expf(x)); }

// V = 4 where D is too: a group's 4 channels in one head
template <int V>
__global__ void decay_gate_kernel(float *g, const float *a, const float *A_log, const float *dt_bias, int N, int H,
                                  int D) {
    pdl_begin();
    EACH(j, (size_t)N * H * D / V) {
        int hd = (int)(j * V % ((size_t)H * D)), h = hd / D;
        Floats<V> av = load_floats<V>(a + j * V), bv = load_floats<V>(dt_bias + hd), gv;
        float A = -expf(A_log[h]);
#pragma unroll
        for (int k = 0; k < V; k++) gv.v[k] = A * softplusf_(av.v[k] + bv.v[k]);
        store_floats<V>(g + j * V, gv);
    }
}
__global__ void decay_gate_backward_kernel(float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,
                                           const float *A_log, const float *dt_bias, int N, int H, int D) {
    int HD = H * D, c = blockIdx.x * 32 + threadIdx.x, h = c / D;
    float sum_dt = 0.0f, sum_A = 0.0f;
    if (c < HD) {
        float A = expf(A_log[h]), bias = dt_bias[c];
        COL_SUM_ROWS(n, N) {
            size_t i = (size_t)n * HD + c;
            float z = a[i] + bias, d = dg[i] * -A * sigmoidf_(z);
            da[i] = d;
            sum_dt += d;
            sum_A += dg[i] * -A * softplusf_(z); /* d g / d A_log = g */
        }
    }
    sum_dt = col_sum_reduce(sum_dt);
    sum_A = col_sum_reduce(sum_A);
    if (threadIdx.y == 0 && c < HD) {
        atomicAdd(&ddt_bias[c], sum_dt);
        atomicAdd(&dA_log[h], sum_A);
    }
}
extern "C" void cuda_decay_gate_forward(float *g, const float *a, const float *A_log, const float *dt_bias, int N,
                                        int H, int D) {
    size_t n = (size_t)N * H * D;
    if (vec4_fits(D, g, a, dt_bias))
        pdl_launch(decay_gate_kernel<4>, grid_for(n / 4, 256), 256, 0, g, a, A_log, dt_bias, N, H, D);
    else pdl_launch(decay_gate_kernel<1>, grid_for(n, 256), 256, 0, g, a, A_log, dt_bias, N, H, D);
    CUDA_LAUNCHED();
}
extern "C" void cuda_decay_gate_backward(float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,
                                         const float *A_log, const float *dt_bias, int N, int H, int D) {
    if (N <= 0) return;
    decay_gate_backward_kernel<<<col_sum_grid(N, H * D), col_sum_block()>>>(da, dA_log, ddt_bias, dg, a, A_log, dt_bias,
                                                                           N, H, D);
    CUDA_LAUNCHED();
}
