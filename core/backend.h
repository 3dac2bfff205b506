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
 * Query head h uses key/value head h / (H / Hkv) (grouped-query attention). */
typedef struct {
    int B, T, H, Hkv, Dk, Dv;
    long q_stride, k_stride, v_stride, o_stride;
    float scale;
} AttnShape;

/* What the fused LM head + cross-entropy reports: the summed loss over rows with a target
 * (target >= 0) and how many of those rows had the target as their argmax. */
typedef struct {
    double loss_sum;
    long n_targets;
    long n_correct;
} XentStats;

typedef struct Backend {
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes); /* zero-filled */
    void (*release)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend -> host */
    void (*zero)(float *x, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);
    void (*add)(float *y, const float *x, size_t n); /* y += x */

    /* ---- matmul: C = alpha * op(A) op(B) + beta * C, op(A) is M x K, op(B) is K x N ---- */
    void (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

    /* ---- token embedding: out[n] = wte[tokens[n]] ---- */
    void (*embedding_forward)(float *out, const int *tokens, const float *wte, int N, int C);
    void (*embedding_backward)(float *dwte, const float *dout, const int *tokens, int N, int C);

    /* ---- RMSNorm: out = x / rms(x) * w; rstd[n] = 1 / sqrt(mean(x^2) + eps) ---- */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
    /* adds the input gradient to dx, adds to dw */
    void (*rmsnorm_backward)(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *rstd, int N, int C);

    /* ---- SwiGLU activation: gate_up rows are [gate (F) | up (F)]; out = silu(gate) * up ---- */
    void (*swiglu_forward)(float *out, const float *gate_up, int N, int F);
    void (*swiglu_backward)(float *dgate_up, const float *dout, const float *gate_up, int N, int F);

    /* ---- rotary embedding, in place, on channels [offset, offset + rot) of each of H heads of
     * width head_stride inside rows of `stride` floats; token t of sequence b has position
     * pos0 + t. cos/sin are [positions, rot/2] tables; backward applies the inverse rotation. */
    void (*rope_forward)(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                         const float *cos, const float *sin, int pos0);
    void (*rope_backward)(float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                          const float *cos, const float *sin, int pos0);

    /* ---- causal softmax attention; lse is [B, H, T] (log-sum-exp of each score row, kept for
     * the backward). Backward writes dq, dk, dv (same strides as q, k, v). ---- */
    size_t (*attention_workspace)(const AttnShape *s);
    void (*attention_forward)(const AttnShape *s, float *o, float *lse, const float *q, const float *k,
                              const float *v, float *work);
    void (*attention_backward)(const AttnShape *s, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *o,
                               const float *lse, float *work);

    /* ---- LM head fused with cross-entropy: logits = x W^T, W [V, C]; rows with target < 0 are
     * ignored. With dx != NULL it also writes dx and adds to dW the gradient of
     * grad_scale * (sum of row losses). ---- */
    size_t (*lm_head_xent_workspace)(int N, int C, int V);
    XentStats (*lm_head_xent)(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                              int C, int V, float grad_scale, float *work);

    /* ---- optimizer ---- */
    double (*sum_squares)(const float *x, size_t n);
    /* AdamW on one tensor; g is multiplied by grad_scale first (gradient clipping); step >= 1. */
    void (*adamw)(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int step);
} Backend;

const Backend *backend_cpu(void);
/* NULL when this build has no CUDA backend. */
const Backend *backend_cuda(void);
/* Looks a backend up by config name ("cpu", "cuda"); dies with a clear message when absent. */
const Backend *backend_by_name(const char *name);
/* Sets the CPU thread count (OpenMP and OpenBLAS); 0 means all cores. */
void backend_set_threads(int threads);
int backend_threads(void);
