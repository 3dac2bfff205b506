// The SwiGLU MLP op on the GPU. In tensor-core mode, for at least MLP_BF16_MIN_TOKENS tokens, its
// intermediates are bf16, as PyTorch's autocast keeps them: the gate/up product writes bf16 rows
// (kept for the backward, half the bytes of fp32), SwiGLU reads and writes bf16, and the
// backward's dact and dgate_up are bf16, so of the activations only x and dy are rounded by a
// separate pass. Accumulation and the weight gradients stay fp32. In fp32 mode, and for fewer tokens
// (decode, where a weight's conversion would cost more than its product), the op is its parts
// (core/mlp_parts.h) on the fp32 ops.
#include "core/mlp_parts.h"
#include "cuda_common.cuh"
#include "cuda_ops.cuh"

typedef __nv_bfloat16 bf16;

namespace {

// From this many tokens the bf16 path pays for rounding both weights in each pass: the gate/up
// product then does about 400 multiply-adds per converted element at F = 2,048, the intensity from
// which cuda_gemm converts (BF16_MIN_INTENSITY in backend_cuda.cu). (Set when every pass rounded
// its weights; inside a training step they come from step_weights' copy, so the bf16 path would
// pay from fewer tokens: not re-tuned, since training runs far above it.)
constexpr int MLP_BF16_MIN_TOKENS = 512;

bool use_bf16(int N) { return cuda_tensor_cores() && N >= MLP_BF16_MIN_TOKENS; }

size_t round8(size_t n) { return (n + 7) / 8 * 8; } // bf16 elements: pieces stay 16-byte aligned

// The bf16 path's work, all bf16: xs [N, C] (x, then dy), act [N, F], w [2F, C] (one weight at a
// time), dgate_up [N, 2F] and dact [N, F] (the down product's input gradient, as autocast keeps it).
struct Bf16Work {
    bf16 *xs, *act, *w, *dgu, *dact;
};

size_t bf16_elements(int N, int C, int F) {
    return round8((size_t)N * C) + 2 * round8((size_t)N * F) + round8((size_t)2 * F * C) + round8((size_t)N * 2 * F);
}

Bf16Work carve(float *work, int N, int C, int F) {
    Bf16Work w;
    bf16 *p = reinterpret_cast<bf16 *>(work);
    w.xs = p, p += round8((size_t)N * C);
    w.act = p, p += round8((size_t)N * F);
    w.w = p, p += round8((size_t)2 * F * C);
    w.dgu = p, p += round8((size_t)N * 2 * F);
    w.dact = p;
    return w;
}

// Eight bf16 channels (16 bytes) a thread where the rows allow (F a multiple of 8), else one:
// a thread per 2-byte element ran at about 1.7 TB/s on an H200.
constexpr int VEC = 8;
__device__ __forceinline__ void load_bf16s(float (&x)[VEC], const bf16 *p) {
    uint4 v = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < VEC / 2; i++) {
        float2 f = __bfloat1622float2(h[i]);
        x[2 * i] = f.x, x[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void store_bf16s(bf16 *p, const float (&x)[VEC]) {
    uint4 v;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < VEC / 2; i++) h[i] = __floats2bfloat162_rn(x[2 * i], x[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = v;
}

// act = silu(gate) * up from bf16 rows [gate (F) | up (F)], rows by blockIdx.y, V channels a thread
template <int V> __global__ void swiglu_bf16_forward_kernel(bf16 *act, const bf16 *gu, int N, int F) {
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const bf16 *row = gu + (size_t)n * 2 * F;
        bf16 *out = act + (size_t)n * F + c;
        if constexpr (V == VEC) {
            float g[VEC], u[VEC], y[VEC];
            load_bf16s(g, row + c);
            load_bf16s(u, row + F + c);
#pragma unroll
            for (int i = 0; i < VEC; i++) y[i] = swiglu_of(g[i], u[i]);
            store_bf16s(out, y);
        } else {
            *out = __float2bfloat16_rn(swiglu_of(__bfloat162float(row[c]), __bfloat162float(row[F + c])));
        }
    }
}

// dgate_up from dact and the kept gate_up, all bf16, V channels a thread
template <int V> __global__ void swiglu_bf16_backward_kernel(bf16 *dgu, const bf16 *dact, const bf16 *gu, int N, int F) {
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const bf16 *row = gu + (size_t)n * 2 * F;
        bf16 *drow = dgu + (size_t)n * 2 * F;
        if constexpr (V == VEC) {
            float g[VEC], u[VEC], dy[VEC], dg[VEC], du[VEC];
            load_bf16s(g, row + c);
            load_bf16s(u, row + F + c);
            load_bf16s(dy, dact + (size_t)n * F + c);
#pragma unroll
            for (int i = 0; i < VEC; i++) swiglu_grad(&dg[i], &du[i], g[i], u[i], dy[i]);
            store_bf16s(drow + c, dg);
            store_bf16s(drow + F + c, du);
        } else {
            float dg, du;
            swiglu_grad(&dg, &du, __bfloat162float(row[c]), __bfloat162float(row[F + c]),
                        __bfloat162float(dact[(size_t)n * F + c]));
            drow[c] = __float2bfloat16_rn(dg);
            drow[F + c] = __float2bfloat16_rn(du);
        }
    }
}

// a weight [rows, cols] in bf16: the training step's copy (step_weights), else rounded into w.w
const bf16 *weight_bf16(const Bf16Work &w, const float *weight, int rows, int cols) {
    return cuda_bf16_operand(weight, rows, cols, cols, w.w).p;
}

dim3 rows_grid(int N, int F, int v) {
    return dim3((unsigned)((F / v + 255) / 256), (unsigned)(N < 65535 ? N : 65535));
}

void swiglu_bf16_forward(bf16 *act, const bf16 *gu, int N, int F) {
    if (F % VEC == 0) swiglu_bf16_forward_kernel<VEC><<<rows_grid(N, F, VEC), 256>>>(act, gu, N, F);
    else swiglu_bf16_forward_kernel<1><<<rows_grid(N, F, 1), 256>>>(act, gu, N, F);
    CUDA_LAUNCHED();
}

void swiglu_bf16_backward(bf16 *dgu, const bf16 *dact, const bf16 *gu, int N, int F) {
    if (F % VEC == 0) swiglu_bf16_backward_kernel<VEC><<<rows_grid(N, F, VEC), 256>>>(dgu, dact, gu, N, F);
    else swiglu_bf16_backward_kernel<1><<<rows_grid(N, F, 1), 256>>>(dgu, dact, gu, N, F);
    CUDA_LAUNCHED();
}

} // namespace

// Sized for N tokens and any call of fewer: the bf16 path keeps N x 2F bf16 (N F floats), the
// parts N x 2F fp32, and a call below MLP_BF16_MIN_TOKENS takes the parts' path however large N
// was, so both are covered.
extern "C" size_t cuda_mlp_saved(int N, int C, int F) {
    (void)C;
    if (!cuda_tensor_cores()) return mlp_parts_saved(N, F);
    int small = N < MLP_BF16_MIN_TOKENS ? N : MLP_BF16_MIN_TOKENS - 1;
    size_t bf16_path = N >= MLP_BF16_MIN_TOKENS ? round8((size_t)N * 2 * F) / 2 : 0;
    size_t parts = mlp_parts_saved(small, F);
    return bf16_path > parts ? bf16_path : parts;
}

extern "C" size_t cuda_mlp_workspace(int N, int C, int F) {
    if (!cuda_tensor_cores()) return mlp_parts_workspace(N, F);
    int small = N < MLP_BF16_MIN_TOKENS ? N : MLP_BF16_MIN_TOKENS - 1;
    size_t bf16_path =
        N >= MLP_BF16_MIN_TOKENS ? sizeof(bf16) * bf16_elements(N, C, F) : 0;
    size_t parts = mlp_parts_workspace(small, F);
    return bf16_path > parts ? bf16_path : parts;
}

extern "C" void cuda_mlp_forward(float *y, float *saved, const float *x, const float *w_gate_up, const float *w_down,
                                 int N, int C, int F, float *work) {
    if (!use_bf16(N)) {
        mlp_parts_forward(backend_cuda(), y, saved, x, w_gate_up, w_down, N, C, F, work);
        return;
    }
    Bf16Work w = carve(work, N, C, F);
    bf16 *gate_up = reinterpret_cast<bf16 *>(saved);
    Bf16Operand xs = cuda_bf16_operand(x, N, C, C, w.xs); /* hold_operand's copy where x is held */
    cuda_gemm_bf16(false, true, N, 2 * F, C, 1.0f, xs.p, xs.ld, weight_bf16(w, w_gate_up, 2 * F, C), C, 0.0f, gate_up,
                   true, 2 * F);
    swiglu_bf16_forward(w.act, gate_up, N, F);
    const bf16 *down = weight_bf16(w, w_down, C, F); /* after the first product in stream order */
    cuda_gemm_bf16(false, true, N, C, F, 1.0f, w.act, F, down, F, 1.0f, y, false, C);
}

extern "C" void cuda_mlp_backward(float *dx, float *dw_gate_up, float *dw_down, const float *dy, const float *x,
                                  const float *w_gate_up, const float *w_down, const float *saved, int N, int C, int F,
                                  float *work) {
    if (!use_bf16(N)) {
        mlp_parts_backward(backend_cuda(), dx, dw_gate_up, dw_down, dy, x, w_gate_up, w_down, saved, N, C, F, work);
        return;
    }
    Bf16Work w = carve(work, N, C, F);
    const bf16 *gate_up = reinterpret_cast<const bf16 *>(saved);
    swiglu_bf16_forward(w.act, gate_up, N, F); /* act again, as the forward computed it */
    cuda_to_bf16(w.xs, dy, N, C, C);
    cuda_gemm_bf16(true, false, C, F, N, 1.0f, w.xs, C, w.act, F, 1.0f, dw_down, false, F); /* dW_down += dy^T act */
    cuda_gemm_bf16(false, false, N, F, C, 1.0f, w.xs, C, weight_bf16(w, w_down, C, F), F, 0.0f, w.dact, true,
                   F); /* dact = dy W_down */
    swiglu_bf16_backward(w.dgu, w.dact, gate_up, N, F);
    Bf16Operand xs = cuda_bf16_operand(x, N, C, C, w.xs); /* dy is done with w.xs */
    cuda_gemm_bf16(true, false, 2 * F, C, N, 1.0f, w.dgu, 2 * F, xs.p, xs.ld, 1.0f, dw_gate_up, false, C);
    const bf16 *gate_up_w = weight_bf16(w, w_gate_up, 2 * F, C);
    cuda_gemm_bf16(false, false, N, C, 2 * F, 1.0f, w.dgu, 2 * F, gate_up_w, C, 0.0f, dx, false, C); /* dx = dgate_up W */
}
