/* The op harness: one mixer core on tensors from a safetensors file (attnlab op). */
#pragma once
#include <stdbool.h>

#include "core/backend.h"
#include "core/util.h"

typedef struct {
    const Backend *backend;
    int chunk; /* linear-time cores: rows per chunk of the chunkwise form; 0: the recurrent form */
} OpOptions;

/* Runs op `name` (kda, gdn, dplr, linear, softmax) on in_path's tensors and writes out_path.
 * Inputs: q [B,T,H,K], k [B,T,H,K] (softmax: [B,T,Hkv,K]), v [B,T,H,V]; kda/gdn also g ([B,T,H,K] /
 * [B,T,H], log-space decays <= 0) and beta [B,T,H]; dplr a, b and gk [B,T,H,K] (gk <= 0); optional
 * initial_state [B,H,K,V] (not softmax), do [B,T,H,V] (then gradients are written), dfinal_state
 * [B,H,K,V], scale (one value; default 1/sqrt(K)). Outputs: o, final_state (not softmax), and
 * with do: dq, dk, dv, dg and dbeta (kda, gdn) or da, db and dgk (dplr), dinitial_state (when
 * initial_state was given). F32 in and out; BF16 and F16 accepted in. */
bool op_run(const char *name, const char *in_path, const char *out_path, const OpOptions *opt, Error *err);
const char *op_names(void);
