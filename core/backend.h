/* The backend interface: every operation the model and the mixers run goes through one of these
 * function pointers, so the same model code runs on the CPU reference and on the GPU.
 *
 * Conventions (shared by every implementation):
 * - All pointers are backend memory (host for the CPU, device for CUDA), fp32 unless typed.
 * - Matrices are row-major. Activations are [N, C] with N = B * T tokens (batch-major).
 * - A "backward" writes the input gradient (or adds to it where it says "adds") and ADDS to
 *   parameter gradients, so gradient accumulation over micro-batches needs no extra pass.
 * - Operations that need scratch memory take a `work` pointer sized by the matching
 *   *_workspace() call; callers reserve it in the run's arena so no step allocates. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Shape of one causal softmax attention call. Heads are laid out [B, T, H, D] inside rows of
 * the given strides (in floats), so q, k and v may live side by side in one fused buffer.
 * Query head h uses key/value head h / (H / Hkv) (grouped-query attention).
 * The keys and values may be read where another op left them (MLA's up-projection writes
 * [k_nope_h | v_h] per head, and its one rotary key serves every head): the last k_shared of a
 * key's Dk columns are not in k's rows but in one copy that every head shares (the k_shared
 * argument, rows of k_shared_stride), and kv head g's own Dk - k_shared key columns start at
 * column g k_head of k's rows, its values at g v_head of v's (0: right after the last head's,
 * Dk - k_shared and Dv). The gradients take the same layout; the shared columns' gradient sums
 * every head's. Decode reads only the plain layout (k_head, v_head, k_shared 0). */
typedef struct {
    int B, T, H, Hkv, Dk, Dv;
    long q_stride, k_stride, v_stride, o_stride;
    float scale;
    long k_head, v_head;
    int k_shared;
    long k_shared_stride;
    /* RoPE inside the op, set only where attention_rotates says the backend does it (else NULL,
     * and the caller rotates): q and k arrive unrotated, the scores are those of q and k rotated
     * (half-split pairs over the last attn_rotated(s) channels of each head: all Dk, or with
     * shared key columns those and the query channels that meet them, MLA's decoupled RoPE; token
     * t at position t: the rope_forward op's rotation), and dq, dk (and dk_shared) are the
     * gradients of the unrotated ones. Tables [T, attn_rotated(s) / 2] (attention_layout.h). */
    const float *rope_cos, *rope_sin;
} AttnShape;

/* What the fused LM head + cross-entropy reports: the summed loss over rows with a target
 * (target >= 0) and how many of those rows had the target as their argmax. */
typedef struct {
    double loss_sum;
    long n_targets;
    long n_correct;
} XentStats;

/* One product of a linear_group, W [out, in]: y = x W^T (LINEAR_SET), y += x W^T (LINEAR_ADD), or
 * y [N, out / 2] = SwiGLU(x W^T), silu of the first out / 2 columns times the last (LINEAR_SWIGLU:
 * an MLP's gate and up projections, out even). */
enum { LINEAR_GROUP_MAX = 8 };
typedef enum { LINEAR_SET, LINEAR_ADD, LINEAR_SWIGLU } LinearOutOp;
typedef struct {
    const float *w;
    float *y;
    int out;
    LinearOutOp op;
} LinearOut;

/* One layer of a linear_group_backward, W [out, in]: its gradient dW and the gradient dy [N, out]
 * of its output. */
typedef struct {
    const float *w;
    float *dw;
    const float *dy;
    int out;
} LinearGrad;

/* The RMSNorm (weights w [in], eps) through which a linear_group's products read x: a decode step
 * passes the block's norm so that a backend can fold it into the products' launch (the GPU's
 * few-row products apply it as they load x). */
typedef struct {
    const float *w;
    float eps;
} RowNorm;

/* One input of conv_silu_step: x [B, H * D] through the short convolution's step (weights w
 * [H * D, W], tail [B, W-1, H * D]) and SiLU into y, then, with l2, each head's D channels
 * L2-normalized in place (rnorm [B * H]). */
typedef struct {
    float *y, *rnorm, *tail;
    const float *x, *w;
    int D;
    bool l2;
} ConvStepInput;

/* Activation applied by the gate op. */
typedef enum { ACT_SILU, ACT_SIGMOID } GateAct;

/* Feature maps of linear attention. */
typedef enum { FEATURE_IDENTITY, FEATURE_ELU1, FEATURE_RELU } FeatureMap;

/* Shape of a linear-time core (linear attention, the delta rule of gdn and kda). Queries and
 * keys are [B, T, H, K], values and outputs [B, T, H, V], all contiguous; states [B, H, K, V];
 * for the delta rule beta is [B, T, H] and the log-space decay g is [B, T, H, K] when
 * channel_gate (kda) or [B, T, H] (gdn). chunk > 0 selects the chunkwise-parallel form with
 * chunks of that many rows; chunk == 0 the recurrent form (one token at a time). */
typedef struct {
    int B, T, H, K, V;
    float scale;
    int chunk;
    bool channel_gate;
} ScanShape;

/* Every operation each backend implements, X(return type, name, (parameters)), with its
 * documentation. The list makes the Backend's function pointers (below), each backend's
 * prototypes (cpu_NAME in core/cpu/cpu_ops.h, cuda_NAME in core/cuda/cuda_ops.cuh) and its table,
 * so an operation is added here once. */
#define BACKEND_OPS(X)                                                                                                \
    /* ---- memory (alloc, release, upload, download, sync and peak_flops are fields of Backend) ---- */              \
    X(void, zero, (float *x, size_t n))                                                                               \
    X(void, copy, (float *dst, const float *src, size_t n))                                                           \
    X(void, add, (float *y, const float *x, size_t n)) /* y += x */                                                   \
    /* ---- replay: graph_begin starts recording the backend's work instead of running it (false: this               \
     * backend replays nothing, the CPU, or not now); graph_end returns the recording, or NULL when an                \
     * op in it depended on a host value that may change (the work must then run as it is) ---- */                   \
    X(bool, graph_begin, (void))                                                                                      \
    X(void *, graph_end, (void))                                                                                      \
    X(void, graph_launch, (void *graph))                                                                              \
    X(void, graph_free, (void *graph))                                                                                \
                                                                                                                      \
    /* ---- matmul: C = alpha * op(A) op(B) + beta * C, op(A) is M x K, op(B) is K x N ---- */                        \
    X(void, gemm, (bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,             \
                   const float *B, int ldb, float beta, float *C, int ldc))                                           \
    /* `count` independent products, the i-th on A + i * stride_a, B + i * stride_b, C + i * stride_c                \
     * (strides in floats): per-head products in one call (one launch on the GPU) */                                 \
    X(void, gemm_batched, (bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,     \
                           long long stride_a, const float *B, int ldb, long long stride_b, float beta, float *C,     \
                           int ldc, long long stride_c, int count))                                                   \
    /* weights w [n] as a decode step's products read them. (NULL, 0, true) forgets the copies of the              \
     * last decode; (w, n, true) makes the backend's copy of w as it is now: first the model's parameter              \
     * buffer, then any weights a mixer derives from it (the GPU, in its tensor-core mode, keeps them in              \
     * bf16: half the bytes a one-token step reads); (w, n, false) with the parameter buffer: few-row                 \
     * products of any copied matrix read its copy until (NULL, 0, false). One decode's copies at a time:           \
     * the next decode_begin, or model_free, forgets them. The CPU reads w as it is */                                \
    X(void, decode_weights, (const float *w, size_t n, bool convert))                                                 \
    /* a training step's parameters w [n] (the parameter buffer) as its products read them: (w, n) before             \
     * the step's first forward makes the backend's copy of w as it is now (the GPU, in its tensor-core              \
     * mode, rounds it to bf16 once, and a bf16 product of a whole weight inside it reads the copy                   \
     * instead of rounding the weight again); (NULL, 0) after the step's last backward, before the                   \
     * optimizer changes w: products read the weights again. The CPU reads w as it is */                             \
    X(void, step_weights, (const float *w, size_t n))                                                                \
    /* an activation x [n] (a block's normed input) that the products after it read, unchanged, until              \
     * hold_operand(NULL, 0) or the next hold: a backend that rounds products' operands (the GPU in its              \
     * tensor-core mode) keeps one rounded copy of x for all of them, made by the RMSNorm that writes x              \
     * next (rmsnorm_forward into exactly x), else by the first product that reads it. Call it before               \
     * the op that writes x; nothing but that op may write x while it is held. The CPU reads x as it is */            \
    X(void, hold_operand, (const float *x, size_t n))                                                                \
    /* n <= LINEAR_GROUP_MAX linear layers of one input x [N, in]: the products of outs[i], of x itself              \
     * (norm NULL) or of RMSNorm(x), in any order (no output may overlap another or x). One op so that a             \
     * backend can run a token's projections as one launch (the GPU at decode, where each product is                 \
     * a launch's worth of work) */                                                                                   \
    X(void, linear_group, (const float *x, const RowNorm *norm, int N, int in, int n, const LinearOut *outs))         \
    /* a linear layer's backward, y = x W^T with x [N, in] and W [out, in]: dW += dy^T x, and                        \
     * dx = dy W (dx += dy W when accumulate_dx; skipped when dx is NULL). The two products of one                    \
     * op, so that a backend can prepare dy once for both (the GPU rounds it to bf16 once) */                         \
    X(void, linear_backward, (float *dx, float *dW, const float *dy, const float *x, const float *W, int N, int in,   \
                              int out, bool accumulate_dx))                                                           \
    /* the backward of n <= LINEAR_GROUP_MAX linear layers of one input x [N, in] (a linear_group without           \
     * a norm): dW_i += dy_i^T x for each, and dx = sum_i dy_i W_i (dx += when accumulate_dx), the sum                \
     * in the layers' order, as linear_backward of each in turn makes it. One op so that a backend can                \
     * make dx in one product over the layers' stacked outputs instead of reading and writing dx once                 \
     * a layer (the GPU: the dy_i rounded to bf16 side by side, the weights' rows stacked) */                         \
    X(void, linear_group_backward, (float *dx, const float *x, int N, int in, int n, const LinearGrad *grads,         \
                                    bool accumulate_dx))                                                              \
                                                                                                                      \
    /* ---- token embedding: out[n] = wte[tokens[n]] ---- */                                                          \
    X(void, embedding_forward, (float *out, const int *tokens, const float *wte, int N, int C))                       \
    X(void, embedding_backward, (float *dwte, const float *dout, const int *tokens, int N, int C))                    \
                                                                                                                      \
    /* ---- RMSNorm: out = x / rms(x) * w; rstd[n] = 1 / sqrt(mean(x^2) + eps) ---- */                                \
    X(void, rmsnorm_forward, (float *out, float *rstd, const float *x, const float *w, int N, int C, float eps))      \
    /* adds the input gradient to dx, adds to dw */                                                                   \
    X(void, rmsnorm_backward, (float *dx, float *dw, const float *dout, const float *x, const float *w,               \
                               const float *rstd, int N, int C))                                                      \
                                                                                                                      \
    /* ---- SwiGLU activation: gate_up rows are [gate (F) | up (F)]; out = silu(gate) * up ---- */                    \
    X(void, swiglu_forward, (float *out, const float *gate_up, int N, int F))                                         \
    X(void, swiglu_backward, (float *dgate_up, const float *dout, const float *gate_up, int N, int F))                \
    /* the whole SwiGLU MLP of a block, y += W_down (silu(x W_gate) * (x W_up)) with W_gate_up [2F, C]:               \
     * `saved` (mlp_saved floats, kept from forward to backward) and `work` (mlp_workspace bytes,                     \
     * scratch) in whatever form the backend keeps them (the GPU: bf16); backward sets dx, adds to                   \
     * dw_gate_up and dw_down. Sized for N tokens, they serve any call of at most N. */                               \
    X(size_t, mlp_saved, (int N, int C, int F))                                                                      \
    X(size_t, mlp_workspace, (int N, int C, int F))                                                                  \
    X(void, mlp_forward, (float *y, float *saved, const float *x, const float *w_gate_up, const float *w_down, int N, \
                          int C, int F, float *work))                                                                 \
    X(void, mlp_backward, (float *dx, float *dw_gate_up, float *dw_down, const float *dy, const float *x,             \
                           const float *w_gate_up, const float *w_down, const float *saved, int N, int C, int F,       \
                           float *work))                                                                              \
                                                                                                                      \
    /* ---- rotary embedding, in place, on channels [offset, offset + rot) of each of H heads of                      \
     * width head_stride inside rows of `stride` floats; token t of sequence b has position                           \
     * pos0 + t. cos/sin are [positions, rot/2] tables; backward applies the inverse rotation. */                     \
    X(void, rope_forward, (float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,          \
                           const float *cos, const float *sin, int pos0))                                             \
    X(void, rope_backward, (float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,        \
                            const float *cos, const float *sin, int pos0))                                            \
                                                                                                                      \
    /* ---- causal softmax attention; lse is [B, H, T] (log-sum-exp of each score row, kept for                       \
     * the backward). Backward writes dq, dk, dk_shared, dv in the layouts of q, k, k_shared, v (dk                   \
     * and dv may be disjoint columns of one buffer, as MLA's are). `saved` (attention_saved bytes,                   \
     * kept from forward to backward): where that is more than 0 (the GPU's tensor-core kernels:                      \
     * their bf16 copies of q, k and v), the backward reads q, k and v from there and not from the                    \
     * caller, who need not keep them; where it is 0, the backward reads q, k, k_shared and v. ---- */                \
    X(size_t, attention_workspace, (const AttnShape *s))                                                              \
    /* whether attention_forward and attention_backward apply RoPE themselves for this shape                          \
     * (AttnShape's rope_cos; the GPU's tensor-core kernels, as they pack q and k and store dq, dk) */                \
    X(bool, attention_rotates, (const AttnShape *s))                                                                  \
    X(size_t, attention_saved, (const AttnShape *s))                                                                  \
    X(void, attention_forward, (const AttnShape *s, float *o, float *lse, void *saved, const float *q,                \
                                const float *k, const float *k_shared, const float *v, float *work))                  \
    X(void, attention_backward, (const AttnShape *s, float *dq, float *dk, float *dk_shared, float *dv,               \
                                 const float *dout, const float *q, const float *k, const float *k_shared,            \
                                 const float *v, const float *o, const float *lse, const void *saved, float *work))   \
                                                                                                                      \
    /* ---- decode: one new query per sequence against its first len cached keys, 1 <= len <= s->T                   \
     * (s->T: the cache's rows, as for the workspace). len_at holds len in backend memory: kernels                    \
     * that read it there launch the same at every position (a recorded step replays at any). q row                  \
     * of sequence b at q + b * q_stride, output at o + b * o_stride; cached token j of sequence b                    \
     * at k + b * kv_seq_stride + j * k_stride (v likewise; v may alias k, as MLA's latent does). ---- */             \
    X(size_t, attention_decode_workspace, (const AttnShape *s))                                                       \
    X(void, attention_decode, (const AttnShape *s, long kv_seq_stride, int len, const int *len_at, float *o,         \
                               const float *q, const float *k, const float *v, float *work))                          \
    /* a decode step's new cache row per sequence, at the position *pos in backend memory:                            \
     * cache[b * seq_stride + *pos * row_stride + c] = src[b * src_stride + c] for c < cols */                        \
    X(void, cache_write, (float *cache, long seq_stride, long row_stride, const int *pos, const float *src,           \
                          long src_stride, int B, int cols))                                                          \
    /* cache_write of the rows [RMSNorm(a) | b] (MLA's latent and rotary key), a [B, na] normalized with              \
     * norm, b [B, nb] as it is, rows na + nb apart: one op, so that a backend can make the row in one launch */     \
    X(void, cache_write_normed, (float *cache, long seq_stride, const int *pos, const float *a, int na,               \
                                 const RowNorm *norm, const float *b, int nb, int B))                                 \
                                                                                                                      \
    /* ---- LM head fused with cross-entropy: logits = x W^T, W [V, C]; rows with target < 0 are                      \
     * ignored. With dx != NULL it also writes dx and adds to dW the gradient of                                      \
     * grad_scale * (sum of row losses). ---- */                                                                      \
    X(size_t, lm_head_xent_workspace, (int N, int C, int V))                                                          \
    X(XentStats, lm_head_xent, (float *dx, float *dW, const float *x, const float *W, const int *targets, int N,      \
                                int C, int V, float grad_scale, float *work))                                         \
                                                                                                                      \
    /* ---- elementwise activations (backwards write dx; in place, y == x, is allowed) ---- */                        \
    X(void, silu_forward, (float *y, const float *x, size_t n))                                                       \
    X(void, silu_backward, (float *dx, const float *dy, const float *x, size_t n))                                    \
    X(void, sigmoid_forward, (float *y, const float *x, size_t n))                                                    \
    X(void, sigmoid_backward, (float *dx, const float *dy, const float *y, size_t n)) /* from the output y */         \
    /* y = a * act(z); backward writes da and dz */                                                                   \
    X(void, gate_forward, (float *y, const float *a, const float *z, size_t n, GateAct act))                          \
    X(void, gate_backward, (float *da, float *dz, const float *dy, const float *a, const float *z, size_t n,          \
                            GateAct act))                                                                             \
    X(void, feature_map_forward, (float *y, const float *x, size_t n, FeatureMap f))                                  \
    X(void, feature_map_backward, (float *dx, const float *dy, const float *x, size_t n, FeatureMap f))               \
    /* y[i] += bias[i % C] for n = rows * C elements; backward adds the column sums of dy to dbias */                 \
    X(void, bias_forward, (float *y, const float *bias, int rows, int C))                                             \
    X(void, bias_backward, (float *dbias, const float *dy, int rows, int C))                                          \
    /* y[r, :] = alpha s[r] x[r, :] for rows of D (y == x allowed); backward adds alpha dy[r] . x[r] to ds[r]         \
     * and writes (or with accumulate adds) alpha s[r] dy[r, :] to dx (dx == dy allowed without accumulate) */        \
    X(void, row_scale_forward, (float *y, const float *x, const float *s, int rows, int D, float alpha))              \
    X(void, row_scale_backward, (float *dx, float *ds, const float *dy, const float *x, const float *s, int rows,      \
                                 int D, float alpha, bool accumulate))                                                \
                                                                                                                      \
    /* ---- linear attention's normalizer rides along as an extra value channel of ones:                              \
     * append_ones makes rows of D + 1 ending in 1; normalize_by_last divides the first D columns                     \
     * by (the last + eps); its backward writes all D + 1 columns of dnum. ---- */                                    \
    X(void, append_ones, (float *y, const float *x, int rows, int D))                                                 \
    X(void, normalize_by_last, (float *o, const float *num, int rows, int D, float eps))                              \
    X(void, normalize_by_last_backward, (float *dnum, const float *dout, const float *num, int rows, int D,           \
                                         float eps))                                                                  \
                                                                                                                      \
    /* ---- rows of a strided 2-D block: dst[r * dst_stride + c] (+)= src[r * src_stride + c] ---- */                 \
    X(void, copy_rows, (float *dst, long dst_stride, const float *src, long src_stride, int rows, int cols,           \
                        bool accumulate))                                                                             \
    /* the same for `heads` blocks side by side, block h at dst + h * dst_head_stride and                             \
     * src + h * src_head_stride, applied head after head for each element: a src head stride of 0                    \
     * copies one block into every head, a dst head stride of 0 with accumulate sums the heads */                     \
    X(void, copy_heads, (float *dst, long dst_stride, long dst_head_stride, const float *src, long src_stride,        \
                         long src_head_stride, int rows, int heads, int cols, bool accumulate))                       \
                                                                                                                      \
    /* ---- causal depthwise convolution over time, no bias: y[b,t,c] = sum_{i<W} w[c,i] x[b,t-W+1+i,c]               \
     * (x before position 0 is zero); x, y [B, T, C], w [C, W]. Backward writes dx, adds to dw. ---- */               \
    X(void, conv1d_forward, (float *y, const float *x, const float *w, int B, int T, int C, int W))                   \
    X(void, conv1d_backward, (float *dx, float *dw, const float *dy, const float *x, const float *w, int B,           \
                              int T, int C, int W))                                                                   \
    /* y = silu(conv1d(x)), with rnorm each head of D channels then L2-normalized as l2norm_forward                  \
     * makes it (rnorm [B T C / D]; rnorm NULL: no norm, D and eps unused); and the backward of                       \
     * silu(conv1d(x)): dx, and dw added to, from dy, the convolution's output made again rather than                 \
     * kept. dy is scratch: its values may be lost (the CPU leaves SiLU's gradient there); dx must not                \
     * alias dy or x. A delta layer's input path: one pass each way on the GPU */                                     \
    X(void, conv1d_silu_forward, (float *y, float *rnorm, const float *x, const float *w, int B, int T, int C, int W, \
                                  int D, float eps))                                                                  \
    X(void, conv1d_silu_backward, (float *dx, float *dw, float *dy, const float *x, const float *w, int B, int T,     \
                                   int C, int W))                                                                     \
    /* one decode step: state [B, W-1, C] holds the last W-1 inputs (oldest first); x, y [B, C] */                    \
    X(void, conv1d_step, (float *y, float *state, const float *x, const float *w, int B, int C, int W))               \
    /* a delta layer's decode inputs (q, k, v: n <= 4 of them, H heads each) as conv1d_step, silu_forward and         \
     * l2norm_forward make them, in one op: one launch on the GPU instead of eight */                                \
    X(void, conv_silu_step, (int B, int H, int W, int n, const ConvStepInput *in, float eps))                         \
                                                                                                                      \
    /* ---- L2 normalization of rows of D: y = x / sqrt(sum x^2 + eps), rnorm = that 1/sqrt ---- */                   \
    X(void, l2norm_forward, (float *y, float *rnorm, const float *x, int rows, int D, float eps))                     \
    X(void, l2norm_backward, (float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D))       \
                                                                                                                      \
    /* ---- log-space decay gate of gdn/kda: g = -exp(A_log[h]) * softplus(a + dt_bias[h*D + d]) for                  \
     * a, g [N, H, D], A_log [H], dt_bias [H*D] (D = 1 for gdn). Backward writes da, adds to dA_log                   \
     * and ddt_bias. ---- */                                                                                          \
    X(void, decay_gate_forward, (float *g, const float *a, const float *A_log, const float *dt_bias, int N,           \
                                 int H, int D))                                                                       \
    X(void, decay_gate_backward, (float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,         \
                                  const float *A_log, const float *dt_bias, int N, int H, int D))                     \
                                                                                                                      \
    /* ---- linear attention core (no normalizer, no decay): S_t = S_{t-1} + k_t v_t^T,                               \
     * o_t = scale S_t^T q_t. `saved` keeps what the backward needs (linear_attn_saved floats). ---- */               \
    X(size_t, linear_attn_saved, (const ScanShape *s))                                                                \
    X(size_t, linear_attn_workspace, (const ScanShape *s))                                                            \
    X(void, linear_attn_forward, (const ScanShape *s, float *o, float *final_state, float *saved, const float *q,     \
                                  const float *k, const float *v, const float *initial_state, float *work))           \
    /* writes dq, dk, dv and dinitial_state (when not NULL); dfinal_state may be NULL (zero) */                       \
    X(void, linear_attn_backward, (const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,        \
                                   const float *dfinal_state, const float *dout, const float *q, const float *k,      \
                                   const float *v, const float *saved, float *work))                                  \
    /* one token for B sequences: state [B, H, K, V] updated in place, o [B, H, V] */                                 \
    X(void, linear_attn_step, (const ScanShape *s, float *state, float *o, const float *q, const float *k,            \
                               const float *v))                                                                       \
                                                                                                                      \
    /* ---- gated delta rule core of gdn and kda (shared/spec/attention.md):                                          \
     * S'_t = diag(exp(g_t)) S_{t-1}; u_t = beta_t (v_t - S'_t^T k_t); S_t = S'_t + k_t u_t^T;                        \
     * o_t = scale S_t^T q_t. ---- */                                                                                 \
    X(size_t, delta_rule_saved, (const ScanShape *s))                                                                 \
    X(size_t, delta_rule_workspace, (const ScanShape *s))                                                             \
    X(void, delta_rule_forward, (const ScanShape *s, float *o, float *final_state, float *saved, const float *q,      \
                                 const float *k, const float *v, const float *g, const float *beta,                   \
                                 const float *initial_state, float *work))                                            \
    X(void, delta_rule_backward, (const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,       \
                                  float *dinitial_state, const float *dfinal_state, const float *dout,                \
                                  const float *q, const float *k, const float *v, const float *g,                     \
                                  const float *beta, const float *saved, float *work))                                \
    X(void, delta_rule_step, (const ScanShape *s, float *state, float *o, const float *q, const float *k,             \
                              const float *v, const float *g, const float *beta))                                     \
                                                                                                                      \
    /* ---- diagonal-plus-low-rank (generalized delta) rule of dplr, fla's dplr op, per head:                         \
     * w_t = S_{t-1}^T a_t;  S_t = diag(exp(gk_t)) S_{t-1} + b_t w_t^T + k_t v_t^T;  o_t = scale S_t^T q_t.          \
     * a, b and the log decay gk are [B, T, H, K] (one decay per key channel; s->channel_gate is not                  \
     * read). Backward writes every gradient; dfinal_state may be NULL (zero). ---- */                                \
    X(size_t, dplr_saved, (const ScanShape *s))                                                                       \
    X(size_t, dplr_workspace, (const ScanShape *s))                                                                   \
    X(void, dplr_forward, (const ScanShape *s, float *o, float *final_state, float *saved, const float *q,            \
                           const float *k, const float *v, const float *a, const float *b, const float *gk,           \
                           const float *initial_state, float *work))                                                  \
    X(void, dplr_backward, (const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,    \
                            float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,      \
                            const float *k, const float *v, const float *a, const float *b, const float *gk,          \
                            const float *saved, float *work))                                                         \
    X(void, dplr_step, (const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,   \
                        const float *a, const float *b, const float *gk))                                             \
                                                                                                                      \
    /* ---- optimizer ---- */                                                                                         \
    X(double, sum_squares, (const float *x, size_t n))                                                                \
    /* AdamW on one tensor; g is multiplied by grad_scale first (gradient clipping); step >= 1. */                    \
    X(void, adamw, (float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,       \
                    float eps, float weight_decay, float grad_scale, int step))

typedef struct Backend {
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes); /* zero-filled */
    void (*release)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend -> host */
    void (*sync)(void); /* waits until every queued operation has finished (timing) */
    /* the device's dense peak in FLOP/s for model FLOPs utilization (bf16 tensor cores on a
     * GPU), with its description in `what`; 0 when unknown */
    double (*peak_flops)(char *what, size_t len);
    /* the most bytes this backend's allocations held at once so far */
    size_t (*peak_bytes)(void);

    /* ---- the operations of BACKEND_OPS, a pointer each ---- */
#define BACKEND_OP_POINTER(ret, op, params) ret(*op) params;
    BACKEND_OPS(BACKEND_OP_POINTER)
#undef BACKEND_OP_POINTER
} Backend;

const Backend *backend_cpu(void);
/* NULL when this build has no CUDA backend; dies with a clear message when it has one but no
 * GPU can be used. */
const Backend *backend_cuda(void);
/* Whether backend_cuda() would work here (tests skip the GPU checks when it would not); fills
 * why (when not NULL) with the reason. */
bool backend_cuda_usable(char *why, size_t len);
/* Looks a backend up by config name ("cpu", "cuda"); dies with a clear message when absent. */
const Backend *backend_by_name(const char *name);
/* The GPU backend's products: "bf16" (bf16 operands on tensor cores, fp32 accumulation) or "fp32"
 * (exact). ATTNLAB_CUDA_MATMUL, when set, takes precedence; returns the mode in effect. Call it
 * before the first model or op of the process: workspace sizes depend on it. */
const char *backend_cuda_matmul(const char *mode);
/* Which kernels the GPU's softmax attention runs for heads of up to 128 channels: "wgmma"
 * (Hopper's warpgroup products: compute capability 9.0 and a build with sm_90a code), "mma.sync"
 * (other GPUs, or ATTNLAB_CUDA_WGMMA=0) or "fp32" (ATTNLAB_CUDA_MATMUL=fp32); NULL without the
 * GPU backend. Initializes the backend. */
const char *backend_cuda_attention_kernels(void);
/* 10 x major + minor of the GPU in use (90 for an H100 or H200); 0 without the GPU backend */
int backend_cuda_compute_capability(void);
/* Called first thing in main: where OpenBLAS fell back to its generic kernels on a CPU it does
 * not know, starts the process again with the kernels the CPU supports (openblas_core.c). */
void backend_cpu_pick_kernels(char **argv);
/* Sets the CPU thread count (OpenMP and OpenBLAS); 0 means all cores. */
void backend_set_threads(int threads);
int backend_threads(void);
