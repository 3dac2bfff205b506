// The GPU backend's operations (signatures as in core/backend.h), defined in the .cu files.
#pragma once
#include "cuda_common.cuh"

extern "C" {

void cuda_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C);
void cuda_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C);

void cuda_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void cuda_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C);

void cuda_swiglu_forward(float *out, const float *gate_up, int N, int F);
void cuda_swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int N, int F);

void cuda_rope_forward(float *x, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                      const float *cos, const float *sin, int pos0);
void cuda_rope_backward(float *dx, int B, int T, int H, int head_stride, long stride, int offset, int rot,
                       const float *cos, const float *sin, int pos0);

size_t cuda_attention_workspace(const AttnShape *s);
void cuda_attention_forward(const AttnShape *s, float *o, float *lse, const float *q, const float *k,
                           const float *v, float *work);
void cuda_attention_backward(const AttnShape *s, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, const float *o, const float *lse,
                            float *work);

size_t cuda_lm_head_xent_workspace(int N, int C, int V);
XentStats cuda_lm_head_xent(float *dx, float *dW, const float *x, const float *W, const int *targets, int N,
                           int C, int V, float grad_scale, float *work);

double cuda_sum_squares(const float *x, size_t n);
void cuda_adamw(float *w, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, int step);

size_t cuda_attention_decode_workspace(const AttnShape *s);
void cuda_attention_decode(const AttnShape *s, long kv_seq_stride, float *o, const float *q, const float *k,
                          const float *v, float *work);

/* activations.c */
void cuda_silu_forward(float *y, const float *x, size_t n);
void cuda_silu_backward(float *dx, const float *dy, const float *x, size_t n);
void cuda_sigmoid_forward(float *y, const float *x, size_t n);
void cuda_sigmoid_backward(float *dx, const float *dy, const float *y, size_t n);
void cuda_gate_forward(float *y, const float *a, const float *z, size_t n, GateAct act);
void cuda_gate_backward(float *da, float *dz, const float *dy, const float *a, const float *z, size_t n, GateAct act);
void cuda_feature_map_forward(float *y, const float *x, size_t n, FeatureMap f);
void cuda_feature_map_backward(float *dx, const float *dy, const float *x, size_t n, FeatureMap f);

/* tensor_ops.c */
void cuda_bias_forward(float *y, const float *bias, int rows, int C);
void cuda_bias_backward(float *dbias, const float *dy, int rows, int C);
void cuda_copy_rows(float *dst, long dst_stride, const float *src, long src_stride, int rows, int cols,
                   bool accumulate);

/* conv1d.c */
void cuda_conv1d_forward(float *y, const float *x, const float *w, int B, int T, int C, int W);
void cuda_conv1d_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int B, int T, int C,
                         int W);
void cuda_conv1d_step(float *y, float *state, const float *x, const float *w, int B, int C, int W);

/* l2norm.c */
void cuda_l2norm_forward(float *y, float *rnorm, const float *x, int rows, int D, float eps);
void cuda_l2norm_backward(float *dx, const float *dy, const float *y, const float *rnorm, int rows, int D);

/* decay_gate.c */
void cuda_decay_gate_forward(float *g, const float *a, const float *A_log, const float *dt_bias, int N, int H, int D);
void cuda_decay_gate_backward(float *da, float *dA_log, float *ddt_bias, const float *dg, const float *a,
                             const float *A_log, const float *dt_bias, int N, int H, int D);

/* linear_attn.c */
size_t cuda_linear_attn_saved(const ScanShape *s);
size_t cuda_linear_attn_workspace(const ScanShape *s);
void cuda_linear_attn_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                             const float *k, const float *v, const float *initial_state, float *work);
void cuda_linear_attn_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dinitial_state,
                              const float *dfinal_state, const float *dout, const float *q, const float *k,
                              const float *v, const float *saved, float *work);
void cuda_linear_attn_step(const ScanShape *s, float *state, float *o, const float *q, const float *k,
                          const float *v);

/* delta_rule.c */
size_t cuda_delta_rule_saved(const ScanShape *s);
size_t cuda_delta_rule_workspace(const ScanShape *s);
void cuda_delta_rule_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *g, const float *beta,
                            const float *initial_state, float *work);
void cuda_delta_rule_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *g, const float *beta, const float *saved,
                             float *work);
void cuda_delta_rule_step(const ScanShape *s, float *state, float *o, const float *q, const float *k, const float *v,
                         const float *g, const float *beta);

/* normalizer.c */
void cuda_append_ones(float *y, const float *x, int rows, int D);
void cuda_normalize_by_last(float *o, const float *num, int rows, int D, float eps);
void cuda_normalize_by_last_backward(float *dnum, const float *dout, const float *num, int rows, int D, float eps);

}
