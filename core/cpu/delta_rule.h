/* What the gated delta rule's two CPU forms share (delta_rule.c, delta_rule_recurrent.c). */
#pragma once
#include <stddef.h>

#include "chunked_scan.h"
#include "cpu_ops.h"

static inline int gate_width(const ScanShape *s) { return s->channel_gate ? s->K : 1; }

/* the recurrent form: its workspace per thread, forward and backward */
size_t delta_rule_recurrent_thread_floats(const ScanShape *s);
void delta_rule_recurrent_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                                  const float *k, const float *v, const float *g, const float *beta,
                                  const float *initial_state, float *work);
void delta_rule_recurrent_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *dg, float *dbeta,
                                   float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                                   const float *k, const float *v, const float *g, const float *beta,
                                   const float *saved, float *work);
