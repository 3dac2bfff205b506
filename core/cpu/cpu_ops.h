/* The CPU reference backend's operations (signatures as in core/backend.h). */
#pragma once
#include <omp.h>

#include "../backend.h"
#include "prefetch.h"

/* Inside a parallel region: this thread's share [*lo, *hi) of n items, split evenly in order.
 * Used where a thread must own a fixed slice (deterministic reductions, disjoint columns). */
static inline void thread_share(long n, long *lo, long *hi) {
    long nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

int cpu_threads(void);

void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* dst [cols, rows] = src [rows, cols]^T (OpenBLAS's somatcopy: ~0.3 us for 64 x 64) */
void cpu_transpose(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);

void cpu_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C);
void cpu_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C);

void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void cpu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C);

void cpu_swiglu_forward(float *out, const float *gate_up, int N, int F);
void cpu_swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F);

void cpu_rope_forward(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                      const float *cos, const float *sin, int pos0);
void cpu_rope_backward(float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                       const float *cos, const float *sin, int pos0);

size_t cpu_attention_workspace(const AttnShape *s);
void cpu_attention_forward(const AttnShape *s, float *o, float *lse, const float *q, const float *k,
                           const float *v, float *work);
void cpu_attention_backward(const AttnShape *s, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, const float *o, const float *lse,
                            float *work);

size_t cpu_lm_head_xent_workspace(int N, int C, int V);
XentStats cpu_lm_head_xent(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                           int C, int V, float grad_scale, float *work);

double cpu_sum_squares(const float *x, size_t n);
void cpu_adamw(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, int step);

size_t cpu_attention_decode_workspace(const AttnShape *s);
void cpu_attention_decode(const AttnShape *s, long kv_seq_stride, float *o, const float *q, const float *k,
                          const float *v, float *work);

/* activations.c */
void cpu_silu_forward(float *y, const float *x, size_t n);
void cpu_silu_backward(float *dx, const float *dy, const float *x, size_t n);
void cpu_sigmoid_forward(float *y, const float *x, size_t n);
void cpu_sigmoid_backward(float *dx, const float *dy, const float *y, size_t n);
void cpu_gate_forward(float *y, const float *a, const float *z, size_t n, GateAct act);
void cpu_gate_backward(float *da, float *dz, const float *dy, const float *a, const float *z, size_t n, GateAct act);
void cpu_feature_map_forward(float *y, const float *x, size_t n, FeatureMap f);
void cpu_feature_map_backward(float *dx, const float *dy, const float *x, size_t n, FeatureMap f);

/* tensor_ops.c */
void cpu_bias_forward(float *y, const float *bias, int rows, int C);
void cpu_bias_backward(float *dbias, const float *dy, int rows, int C);
void cpu_copy_rows(float *dst, long dst_stride, const float *src, long src_stride, int rows, int cols,
                   bool accumulate);

/* conv1d.c */
void cpu_conv1d_forward(float *y, const float *x, const float *w, int B, int T, int C, int W);
void cpu_conv1d_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int B, int T, int C,
                         int W);
void cpu_conv1d_step(float *y, float *state, const float *x, const float *w, int B, int C, int W);

/* l2norm.c */
void cpu_l2norm_forward(float *y, float *rnorm, const float *x, int rows, int D, float eps);
void cpu_l2norm_backward(float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D);

/* decay_gate.c */
void cpu_decay_gate_forward(float *g, const float *a, const float *A_log, const float *dt_bias, int N, int H, int D);
void cpu_decay_gate_backward(float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,
                             const float *A_log, const float *dt_bias, int N, int H, int D);

/* linear_attn.c */
size_t cpu_linear_attn_saved(const ScanShape *s);
size_t cpu_linear_attn_workspace(const ScanShape *s);
void cpu_linear_attn_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                             const float *k, const float *v, const float *initial_state, float *work);
void cpu_linear_attn_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,
                              const float *dfinal_state, const float *dout, const float *q, const float *k,
                              const float *v, const float *saved, float *work);
void cpu_linear_attn_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                          const float *v);

/* triangular.c: lower-triangular n x n matrices by diagonal blocks of TRIANGLE_ROWS rows. Entries
 * right of the diagonal blocks are never read or written by these functions (their callers may
 * leave them unset); entries above the diagonal inside a diagonal block are read as they are,
 * so they must be zero in an operand. */
enum { TRIANGLE_ROWS = 16 };
/* T (row stride ld) holds N in its strict lower triangle on entry and (I + N)^-1 on return, with
 * zeros above the diagonal inside the diagonal blocks; tmp holds n * n / 4 floats */
void cpu_unit_lower_inverse(float *T, int n, int ld, float *tmp);
/* C = alpha op(L) B + beta C with L lower triangular and B n x N; between the block products,
 * a few of pf's queued lines are requested (prefetch.h; pf may be NULL) */
void cpu_gemm_lower_left(bool trans_l, int n, int N, float alpha, const float *L, int ldl, const float *B, int ldb,
                         float beta, float *C, int ldc, Prefetch *pf);
/* C = alpha A B + beta C (A n x K, B K x n) on C's diagonal blocks and left of them; pf as above */
void cpu_gemm_lower_result(int n, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, Prefetch *pf);
/* the end of the diagonal block holding row r */
static inline int triangle_block_end(int r, int n) {
    int end = (r / TRIANGLE_ROWS + 1) * TRIANGLE_ROWS;
    return end < n ? end : n;
}

/* decayed_products.c: P[r,j] = sum_d X_rd Y_jd exp(b_rd - b_jd) for j < r (j <= r when
 * inclusive), else 0; b is n x K (channel) or n; sub holds 3 * 16 * K + 3 * n * K floats */
void cpu_decayed_products(float *P, const float *X, const float *Y, const float *b, int n, int K, bool channel,
                          bool inclusive, float *sub);
/* adds dX, dY (may alias dX) and db given dP (zero where P is masked) and the forward P */
void cpu_decayed_products_backward(const float *dP, const float *P, const float *X, const float *Y,
                                   const float *b, float *dX, float *dY, float *db, float *tmp, float *sub, int n,
                                   int K, bool channel);

/* delta_rule.c */
size_t cpu_delta_rule_saved(const ScanShape *s);
size_t cpu_delta_rule_workspace(const ScanShape *s);
void cpu_delta_rule_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *g, const float *beta,
                            const float *initial_state, float *work);
void cpu_delta_rule_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *g, const float *beta, const float *saved,
                             float *work);
void cpu_delta_rule_step(const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,
                         const float *g, const float *beta);

/* normalizer.c */
void cpu_append_ones(float *y, const float *x, int rows, int D);
void cpu_normalize_by_last(float *o, const float *num, int rows, int D, float eps);
void cpu_normalize_by_last_backward(float *dnum, const float *dout, const float *num, int rows, int D, float eps);
