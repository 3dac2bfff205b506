/* The CPU reference backend's operations (signatures as in core/backend.h). */
#pragma once
#include <omp.h>

#include "../backend.h"

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
