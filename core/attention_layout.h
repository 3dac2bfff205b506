/* The attention's key and value layouts (AttnShape: keys and values at head strides of their
 * own, trailing key columns shared by every head) for backends whose kernels read only heads side
 * by side: the keys and values gathered into that plain layout before the kernels, their
 * gradients scattered back after (the shared columns' gradient summed over the heads). The GPU's
 * tensor-core kernels read and write the layout in place instead. Also which columns of that
 * layout RoPE rotates, and whether the backend rotates them inside the attention. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "rope_table.h"

/* the copy_heads op of the backend that runs the attention */
typedef void CopyHeadsFn(float *dst, long dst_stride, long dst_head_stride, const float *src, long src_stride,
                         long src_head_stride, int rows, int heads, int cols, bool accumulate);

/* kv head g's keys at column g attn_key_head(s) of k's rows, values at g attn_value_head(s); by
 * default each head's own columns right after the last head's */
static inline long attn_key_head(const AttnShape *s) { return s->k_head ? s->k_head : s->Dk - s->k_shared; }
static inline long attn_value_head(const AttnShape *s) { return s->v_head ? s->v_head : s->Dv; }

/* the columns RoPE rotates at the end of each query and key head (AttnShape's rope_cos): the
 * shared key columns where there are any (MLA's decoupled key, and the query columns that meet
 * it), else all Dk */
static inline int attn_rotated(const AttnShape *s) { return s->k_shared ? s->k_shared : s->Dk; }

/* the shape with the layer's RoPE tables (cos, sin: [T, attn_rotated / 2]) where the backend
 * rotates inside its attention (attention_rotates), else the shape as it is; rope NULL: NoPE */
AttnShape attn_rotating_shape(const Backend *be, AttnShape shape, const RopeTable *rope);

/* whether the layer rotates q and k itself around the attention: RoPE, and a shape without tables */
static inline bool attn_layer_rotates(const AttnShape *s, const RopeTable *rope) { return rope && !s->rope_cos; }

/* whether keys and values are heads side by side, nothing shared */
bool attn_layout_plain(const AttnShape *s);

/* the shape of the gathered copies: keys [B T, Hkv Dk], values [B T, Hkv Dv] */
AttnShape attn_gathered_shape(const AttnShape *s);

/* floats of the gathered keys and values (0 for a plain layout) */
size_t attn_gathered_floats(const AttnShape *s);

/* The gathered keys kg and values vg at `at`, and after them (backward) their gradients dkg, dvg:
 * 2 attn_gathered_floats(s) floats in all (dkg, dvg may be NULL for a forward) */
void attn_gathered_buffers(const AttnShape *s, float *at, float **kg, float **vg, float **dkg, float **dvg);

/* k, k_shared and v into kg and vg (attn_gathered_shape's layout; vg follows kg in the workspace) */
void attn_gather(CopyHeadsFn *copy, const AttnShape *s, float *kg, float *vg, const float *k, const float *k_shared,
                 const float *v);

/* the gathered gradients dkg, dvg into the caller's layout: dk, dk_shared (the sum of every
 * head's shared columns) and dv */
void attn_scatter_grads(CopyHeadsFn *copy, const AttnShape *s, float *dk, float *dk_shared, float *dv,
                        const float *dkg, const float *dvg);

/* dst[r, c] = sum over the heads h of src[r, h src_head + c] (rows of dst_stride and src_stride),
 * the heads added in order: the shared key columns' gradient from every head's */
void attn_sum_shared_grads(CopyHeadsFn *copy, float *dst, long dst_stride, const float *src, long src_stride,
                           long src_head, int rows, int heads, int cols);

/* dies unless the layout is one the kernels can read: head strides that keep a row's heads
 * apart, shared columns fewer than Dk, and a shared copy (and, in a backward, a place for its
 * gradient: dk_shared, or pass k_shared again in a forward) where there are shared columns */
void attn_check_layout(const AttnShape *s, const float *k_shared, const float *dk_shared);

/* dies unless keys and values are heads side by side (decode reads its caches only so) */
void attn_check_plain(const AttnShape *s, const char *what);
