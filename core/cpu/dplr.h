/* What the diagonal-plus-low-rank rule's two CPU forms share (dplr.c, the chunkwise form, and
 * dplr_recurrent.c, the recurrent reference and decode step). */
#pragma once
#include <stddef.h>

#include "chunked_scan.h"
#include "cpu_ops.h"

size_t dplr_recurrent_thread_floats(const ScanShape *s);
void dplr_recurrent_forward(const ScanShape *s, float *o, float *final_state, float *saved, const float *q,
                            const float *k, const float *v, const float *a, const float *b, const float *gk,
                            const float *initial_state, float *work);
void dplr_recurrent_backward(const ScanShape *s, float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                             float *dinitial_state, const float *dfinal_state, const float *dout, const float *q,
                             const float *k, const float *v, const float *a, const float *b, const float *gk,
                             const float *saved, float *work);
