// The short causal depthwise convolution over time on the GPU (the delta layers' and linear
// attention's short convolutions over q, k and v): the forward, with SiLU and each head's L2 norm
// folded in where asked; the backward, SiLU's included; and decode's steps.
#include "cuda_common.cuh"
#include "cuda_ops.cuh"

// A thread takes one channel of CONV_STEPS consecutive time steps (a block's threads neighbouring
// channels, so every load is coalesced), its taps' weights in registers and no 64-bit division:
// a thread per element spent most of its time dividing its index.
enum { CONV_STEPS = 8 };
static dim3 conv_grid(int B, int T, int C) {
    return dim3((unsigned)(B * ((T + CONV_STEPS - 1) / CONV_STEPS)), (unsigned)((C + 127) / 128));
}
// What the sums become: themselves, SiLU of them, or SiLU's backward at them (dy times silu'(sum),
// dy read at the output's index): the silu and silu_backward kernels' own expressions, so the
// numbers are theirs.
enum ConvEpilogue { CONV_PLAIN, CONV_SILU, CONV_SILU_GRAD };
template <int EPILOGUE> __device__ __forceinline__ float conv_epilogue(float acc, const float *dy, size_t i) {
    if (EPILOGUE == CONV_SILU) return acc * sigmoidf_(acc);
    if (EPILOGUE == CONV_SILU_GRAD) {
        float s = sigmoidf_(acc);
        return dy[i] * s * (1.0f + acc * (1.0f - s));
    }
    return acc;
}
// channel c's sums at the CONV_STEPS steps from t0 of one sequence (xb: its channel c):
// y[t] = sum_k w[c,k] x[t - W + 1 + k]  (DIR = -1), or the backward's
// dx[t] = sum_k w[c,k] dy[t + W - 1 - k]  (DIR = +1); taps outside [0, T) add nothing. With
// TAPS = W known when compiled, the window's CONV_STEPS + W - 1 inputs are loaded first, each
// once, into registers, zeros outside [0, T), so the taps need no test of their own (a zero tap
// leaves a sum's value as it is); at run time's W (TAPS = 0) each tap loads the inputs it reads,
// W loads an input. The sums are the same either way, in the same order.
enum { CONV_COMPILED_TAPS = 4 }; /* the configs' window (fla's and Kimi Linear's) */
template <int DIR, int TAPS>
__device__ __forceinline__ void conv_sums(float (&acc)[CONV_STEPS], const float *xb, const float *w, int c, int T,
                                          int C, int W, int t0) {
#pragma unroll
    for (int u = 0; u < CONV_STEPS; u++) acc[u] = 0.0f;
    if constexpr (TAPS == 0) {
        for (int k = 0; k < W; k++) {
            float wk = w[c * W + k];
            int shift = DIR * (W - 1 - k);
#pragma unroll
            for (int u = 0; u < CONV_STEPS; u++) {
                int s = t0 + u + shift;
                if (s >= 0 && s < T) acc[u] += wk * xb[(size_t)s * C];
            }
        }
    } else {
        constexpr int N = CONV_STEPS + TAPS - 1;
        const int first = DIR < 0 ? t0 - (TAPS - 1) : t0; /* the window's first step */
        float xs[N];
        long long at = (long long)first * C; /* step first + j's offset, a row further each step */
#pragma unroll
        for (int j = 0; j < N; j++, at += C) {
            int s = first + j;
            xs[j] = s >= 0 && s < T ? xb[at] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < TAPS; k++) {
            float wk = w[c * TAPS + k];
#pragma unroll
            for (int u = 0; u < CONV_STEPS; u++) acc[u] += wk * xs[DIR < 0 ? u + k : u + TAPS - 1 - k];
        }
    }
}
// the sums, then the epilogue (dy: its input, for CONV_SILU_GRAD)
template <int EPILOGUE, int DIR, int TAPS>
__global__ void conv1d_steps_kernel(float *y, const float *x, const float *w, int T, int C, int W, const float *dy) {
    int c = blockIdx.y * 128 + threadIdx.x, tiles = (T + CONV_STEPS - 1) / CONV_STEPS;
    if (c >= C) return;
    int b = blockIdx.x / tiles, t0 = (blockIdx.x % tiles) * CONV_STEPS;
    float acc[CONV_STEPS];
    conv_sums<DIR, TAPS>(acc, x + (size_t)b * T * C + c, w, c, T, C, W, t0);
    const size_t base = (size_t)b * T * C + c;
#pragma unroll
    for (int u = 0; u < CONV_STEPS; u++) {
        size_t i = base + (size_t)(t0 + u) * C;
        if (t0 + u < T) y[i] = conv_epilogue<EPILOGUE>(acc[u], dy, i);
    }
}
template <int EPILOGUE, int DIR>
static void conv_steps(float *y, const float *x, const float *w, int B, int T, int C, int W, const float *dy) {
    if (W == CONV_COMPILED_TAPS)
        conv1d_steps_kernel<EPILOGUE, DIR, CONV_COMPILED_TAPS><<<conv_grid(B, T, C), 128>>>(y, x, w, T, C, W, dy);
    else conv1d_steps_kernel<EPILOGUE, DIR, 0><<<conv_grid(B, T, C), 128>>>(y, x, w, T, C, W, dy);
    CUDA_LAUNCHED();
}
// dw[c,k] += sum over (b, t) of dy[b,t,c] x[b, t - W + 1 + k, c], over bands of the B*T rows, for
// the taps k0 .. k0 + CONV_TAPS - 1 (kept in registers)
enum { CONV_TAPS = 8 };
__global__ void conv1d_dw_kernel(float *dw, const float *dy, const float *x, int B, int T, int C, int W, int k0) {
    int c = blockIdx.x * 32 + threadIdx.x;
    float acc[CONV_TAPS] = {};
    if (c < C) COL_SUM_ROWS(bt, B * T) {
        int t = bt % T;
        float g = dy[(size_t)bt * C + c];
#pragma unroll
        for (int j = 0; j < CONV_TAPS; j++) {
            int u = t - W + 1 + k0 + j;
            if (k0 + j < W && u >= 0) acc[j] += g * x[((size_t)bt - t + u) * C + c];
        }
    }
    for (int j = 0; j < CONV_TAPS && k0 + j < W; j++) {
        float v = col_sum_reduce(acc[j]);
        if (threadIdx.y == 0 && c < C) atomicAdd(&dw[c * W + k0 + j], v);
    }
}
// SiLU(conv1d(x)) with each head of D channels L2-normalized in the same pass, for D dividing a
// block's 128 channels: each warp sums its squares for all CONV_STEPS steps at once (a butterfly
// leaves lane l the sum of step l % 8 over its group of 8 lanes, 7 shuffles, then 2 more add the
// groups': 9 where a warp sum a step took 40), and the head's warps add theirs through shared
// memory. Threads past C stay for the shuffles and the barrier with zero outputs (C is whole
// heads, so no head mixes them).
template <int D, int TAPS>
__global__ void conv1d_silu_l2_kernel(float *y, float *rnorm, const float *x, const float *w, int T, int C, int W,
                                      float eps) {
    __shared__ float squares[4][CONV_STEPS]; /* each warp's sum a step */
    int c = blockIdx.y * 128 + threadIdx.x, tiles = (T + CONV_STEPS - 1) / CONV_STEPS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, first = warp / (D / 32) * (D / 32);
    int b = blockIdx.x / tiles, t0 = (blockIdx.x % tiles) * CONV_STEPS;
    float v[CONV_STEPS] = {};
    if (c < C) {
        conv_sums<-1, TAPS>(v, x + (size_t)b * T * C + c, w, c, T, C, W, t0);
#pragma unroll
        for (int u = 0; u < CONV_STEPS; u++) v[u] = conv_epilogue<CONV_SILU>(v[u], nullptr, 0);
    }
    static_assert(CONV_STEPS == 8, "a warp's squares: one step a lane of each group of 8");
    float sq[CONV_STEPS];
#pragma unroll
    for (int u = 0; u < CONV_STEPS; u++) sq[u] = v[u] * v[u];
    group_sum_scatter<CONV_STEPS, CONV_STEPS>(sq, lane % CONV_STEPS, 0xffffffffu);
    float warp_squares = sq[0];
    warp_squares += __shfl_xor_sync(0xffffffffu, warp_squares, 8);
    warp_squares += __shfl_xor_sync(0xffffffffu, warp_squares, 16);
    if (lane < CONV_STEPS) squares[warp][lane] = warp_squares;
    __syncthreads();
    if (c >= C) return;
    const size_t row0 = (size_t)b * T + t0; /* step t0's row; y's rows are C wide, rnorm's C / D */
    float *yu = y + row0 * C + c, *ru = rnorm + row0 * (C / D) + c / D;
#pragma unroll
    for (int u = 0; u < CONV_STEPS; u++, yu += C, ru += C / D) {
        if (t0 + u >= T) break;
        float ss = 0.0f;
        for (int j = 0; j < D / 32; j++) ss += squares[first + j][u];
        float r = rsqrtf(ss + eps);
        *yu = v[u] * r;
        if (c % D == 0) *ru = r;
    }
}

// SiLU(conv1d(x))'s backward in one pass, for W <= CONV_FUSED_TAPS: a thread walks one channel
// over CONV_WALK time steps, keeping the last W inputs and the last W SiLU gradients dc in
// registers: each step makes the convolution again (the forward's sums, in its order), dc from
// it and dy (conv_epilogue<CONV_SILU_GRAD>), adds the step's share of dw, and finishes the input
// gradient of the step W - 1 back (the backward convolution's sums, in its order). A walk goes
// W - 1 steps past its end (where dc is still needed); those steps add nothing to dw, which each
// thread adds to with one atomic per tap. Against the three passes it replaces (dc, dx from dc,
// dw from dc and x), dc never leaves the registers. The window holds zeros for the inputs before
// step 0 and dc is zero past T, so the taps there need no test (a zero tap leaves a sum's value
// as it is).
enum { CONV_WALK = 32, CONV_FUSED_TAPS = 8 };
static_assert(CONV_FUSED_TAPS == 8, "cuda_conv1d_silu_backward instantiates the fused kernel for 1 to 8 taps");
template <int W>
__global__ void conv1d_silu_backward_kernel(float *dx, float *dw, const float *dy, const float *x, const float *w,
                                            int T, int C) {
    int c = blockIdx.y * 128 + threadIdx.x, walks = (T + CONV_WALK - 1) / CONV_WALK;
    if (c >= C) return;
    int b = blockIdx.x / walks, t0 = (blockIdx.x % walks) * CONV_WALK, t1 = min(t0 + CONV_WALK, T);
    const size_t base = (size_t)b * T * C + c;
    float wk[W], xs[W], dcs[W], dw_acc[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        wk[k] = w[c * W + k];
        int s = t0 - W + k; /* xs[k] = x at step t0 - W + k: shifted down one at the first step, xs[W-1] then loads */
        xs[k] = k >= 1 && s >= 0 ? x[base + (size_t)s * C] : 0.0f;
        dcs[k] = 0.0f;
        dw_acc[k] = 0.0f;
    }
    const int end = t1 + W - 1; /* the walk's steps: its own and the W - 1 after them */
    long long at = (long long)t0 * C; /* step s0's offset from base */
    for (int s0 = t0; s0 < end; s0 += CONV_STEPS, at += (long long)CONV_STEPS * C) {
        /* the next CONV_STEPS steps' x and dy loaded together, before the steps that use them */
        float xl[CONV_STEPS], dl[CONV_STEPS];
        const float *xu = x + base + at, *dyu = dy + base + at;
#pragma unroll
        for (int u = 0; u < CONV_STEPS; u++, xu += C, dyu += C) {
            bool in = s0 + u < end && s0 + u < T;
            xl[u] = in ? *xu : 0.0f;
            dl[u] = in ? *dyu : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < CONV_STEPS; u++) {
            int s = s0 + u;
            if (s >= end) break;
            float dc = 0.0f;
            if (s < T) {
#pragma unroll
                for (int k = 0; k < W - 1; k++) xs[k] = xs[k + 1];
                xs[W - 1] = xl[u];
                float acc = 0.0f;
#pragma unroll
                for (int k = 0; k < W; k++) acc += wk[k] * xs[k]; /* zeros before step 0 */
                dc = conv_epilogue<CONV_SILU_GRAD>(acc, dl, u);
                if (s < t1)
#pragma unroll
                    for (int k = 0; k < W; k++) dw_acc[k] += dc * xs[k];
            }
#pragma unroll
            for (int k = 0; k < W - 1; k++) dcs[k] = dcs[k + 1];
            dcs[W - 1] = dc; /* dcs[j] = dc at step s - W + 1 + j */
            int t = s - W + 1;
            if (t >= t0) { /* dx[t] = sum_k w[k] dc[t + W - 1 - k], dc zero past T */
                float acc = 0.0f;
#pragma unroll
                for (int k = 0; k < W; k++) acc += wk[k] * dcs[W - 1 - k];
                dx[base + at + (long long)(u - W + 1) * C] = acc;
            }
        }
    }
#pragma unroll
    for (int k = 0; k < W; k++) atomicAdd(&dw[c * W + k], dw_acc[k]);
}

// one channel c of a decode step: the output from the input xi and st, one sequence's state
// [W-1, C] of the last W-1 inputs (oldest first), which then moves on by xi
__device__ __forceinline__ float conv_step_channel(float *st, const float *w, float xi, int c, int C, int W) {
    float acc = w[c * W + W - 1] * xi;
    for (int k = 0; k < W - 1; k++) acc += w[c * W + k] * st[(size_t)k * C + c];
    for (int k = 0; k + 1 < W - 1; k++) st[(size_t)k * C + c] = st[(size_t)(k + 1) * C + c];
    if (W > 1) st[(size_t)(W - 2) * C + c] = xi;
    return acc;
}
__global__ void conv1d_step_kernel(float *y, float *state, const float *x, const float *w, int B, int C, int W) {
    EACH(i, (size_t)B * C) {
        int c = (int)(i % C);
        size_t b = i / C;
        y[i] = conv_step_channel(state + b * (size_t)(W - 1) * C, w, x[i], c, C, W);
    }
}

// conv_silu_step: a warp per (input, sequence, head), its lanes over the head's channels; each
// lane reads back only what it wrote before the norm's scaling
typedef struct {
    ConvStepInput in[4];
} ConvStepInputs;
__global__ void conv_silu_step_kernel(ConvStepInputs ins, int n, int B, int H, int W, float eps) {
    pdl_begin();
    WARP_ROW(r, (size_t)n * B * H);
    const int h = (int)(r % H), b = (int)(r / H % B);
    const ConvStepInput p = ins.in[r / ((size_t)H * B)];
    const int C = H * p.D;
    float *st = p.tail + (size_t)b * (W - 1) * C, *y = p.y + (size_t)b * C + (size_t)h * p.D;
    float ss = 0.0f;
    for (int d = lane; d < p.D; d += 32) {
        float v = conv_step_channel(st, p.w, p.x[(size_t)b * C + (size_t)h * p.D + d], h * p.D + d, C, W);
        v *= sigmoidf_(v);
        y[d] = v;
        ss += v * v;
    }
    if (!p.l2) return;
    float rn = rsqrtf(warp_sum(ss) + eps);
    if (lane == 0) p.rnorm[(size_t)b * H + h] = rn;
    for (int d = lane; d < p.D; d += 32) y[d] *= rn;
}
extern "C" void cuda_conv1d_forward(float *y, const float *x, const float *w, int B, int T, int C, int W) {
    if (B * T <= 0 || C <= 0) return;
    conv_steps<CONV_PLAIN, -1>(y, x, w, B, T, C, W, nullptr);
}
// heads of 32, 64 or 128 channels normalized in the convolution's pass; others by l2norm_forward
// after it, in place (each lane writes what it read)
extern "C" void cuda_conv1d_silu_forward(float *y, float *rnorm, const float *x, const float *w, int B, int T, int C,
                                         int W, int D, float eps) {
    if (B * T <= 0 || C <= 0) return;
    if (rnorm && (D <= 0 || C % D)) die("conv1d_silu_forward: %d channels are not heads of %d", C, D);
    if (rnorm && (D == 32 || D == 64 || D == 128)) {
        const bool compiled = W == CONV_COMPILED_TAPS;
        auto kernel = D == 32   ? (compiled ? conv1d_silu_l2_kernel<32, CONV_COMPILED_TAPS> : conv1d_silu_l2_kernel<32, 0>)
                      : D == 64 ? (compiled ? conv1d_silu_l2_kernel<64, CONV_COMPILED_TAPS> : conv1d_silu_l2_kernel<64, 0>)
                                : (compiled ? conv1d_silu_l2_kernel<128, CONV_COMPILED_TAPS>
                                            : conv1d_silu_l2_kernel<128, 0>);
        kernel<<<conv_grid(B, T, C), 128>>>(y, rnorm, x, w, T, C, W, eps);
        CUDA_LAUNCHED();
        return;
    }
    conv_steps<CONV_SILU, -1>(y, x, w, B, T, C, W, nullptr);
    if (rnorm) cuda_l2norm_forward(y, rnorm, y, B * T * (C / D), D, eps);
}
extern "C" void cuda_conv1d_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int B,
                                     int T, int C, int W) {
    if (B * T <= 0 || C <= 0) return;
    conv_steps<CONV_PLAIN, 1>(dx, dy, w, B, T, C, W, nullptr);
    for (int k0 = 0; k0 < W; k0 += CONV_TAPS) {
        conv1d_dw_kernel<<<col_sum_grid(B * T, C), col_sum_block()>>>(dw, dy, x, B, T, C, W, k0);
        CUDA_LAUNCHED();
    }
}
// Up to CONV_FUSED_TAPS taps in one pass; wider windows (at most 64) as the ops it stands for,
// SiLU's gradient in dy's place (each element reads dy where it writes)
extern "C" void cuda_conv1d_silu_backward(float *dx, float *dw, float *dy, const float *x, const float *w, int B,
                                          int T, int C, int W) {
    if (B * T <= 0 || C <= 0) return;
    dim3 grid((unsigned)(B * ((T + CONV_WALK - 1) / CONV_WALK)), (unsigned)((C + 127) / 128));
    switch (W) {
#define FUSED(n)                                                                                                      \
    case n: conv1d_silu_backward_kernel<n><<<grid, 128>>>(dx, dw, dy, x, w, T, C); break;
        FUSED(1) FUSED(2) FUSED(3) FUSED(4) FUSED(5) FUSED(6) FUSED(7) FUSED(8)
#undef FUSED
    default:
        conv_steps<CONV_SILU_GRAD, -1>(dy, x, w, B, T, C, W, dy);
        cuda_conv1d_backward(dx, dw, dy, x, w, B, T, C, W);
        return;
    }
    CUDA_LAUNCHED();
}
extern "C" void cuda_conv1d_step(float *y, float *state, const float *x, const float *w, int B, int C, int W) {
    conv1d_step_kernel<<<grid_for((size_t)B * C, 256), 256>>>(y, state, x, w, B, C, W);
    CUDA_LAUNCHED();
}
extern "C" void cuda_conv_silu_step(int B, int H, int W, int n, const ConvStepInput *in, float eps) {
    ConvStepInputs ins;
    if (n < 0 || n > 4) die("conv_silu_step: %d inputs, at most 4", n);
    if (n == 0 || B * H <= 0) return;
    for (int i = 0; i < n; i++) ins.in[i] = in[i];
    pdl_launch(conv_silu_step_kernel, grid_for((size_t)n * B * H * 32, 128), 128, 0, ins, n, B, H, W, eps);
    CUDA_LAUNCHED();
}
