#include "attention_layout.h"

#include "util.h"

AttnShape attn_rotating_shape(const Backend *be, AttnShape shape, const RopeTable *rope) {
    if (!rope) return shape;
    AttnShape in_op = shape;
    in_op.rope_cos = rope->cos;
    in_op.rope_sin = rope->sin;
    return be->attention_rotates(&in_op) ? in_op : shape;
}

bool attn_layout_plain(const AttnShape *s) {
    return attn_key_head(s) == s->Dk && attn_value_head(s) == s->Dv && s->k_shared == 0;
}

AttnShape attn_gathered_shape(const AttnShape *s) {
    AttnShape g = *s;
    g.k_stride = (long)s->Hkv * s->Dk;
    g.v_stride = (long)s->Hkv * s->Dv;
    g.k_head = g.v_head = 0;
    g.k_shared = 0;
    g.k_shared_stride = 0;
    return g;
}

size_t attn_gathered_floats(const AttnShape *s) {
    if (attn_layout_plain(s)) return 0;
    return (size_t)s->B * s->T * s->Hkv * ((size_t)s->Dk + s->Dv);
}

void attn_gathered_buffers(const AttnShape *s, float *at, float **kg, float **vg, float **dkg, float **dvg) {
    size_t nk = (size_t)s->B * s->T * s->Hkv * s->Dk, n = attn_gathered_floats(s);
    *kg = at;
    *vg = at + nk;
    if (dkg) *dkg = at + n;
    if (dvg) *dvg = at + n + nk;
}

void attn_gather(CopyHeadsFn *copy, const AttnShape *s, float *kg, float *vg, const float *k, const float *k_shared,
                 const float *v) {
    const int N = s->B * s->T, own = s->Dk - s->k_shared;
    const long kw = (long)s->Hkv * s->Dk, vw = (long)s->Hkv * s->Dv;
    copy(kg, kw, s->Dk, k, s->k_stride, attn_key_head(s), N, s->Hkv, own, false);
    if (s->k_shared) copy(kg + own, kw, s->Dk, k_shared, s->k_shared_stride, 0, N, s->Hkv, s->k_shared, false);
    copy(vg, vw, s->Dv, v, s->v_stride, attn_value_head(s), N, s->Hkv, s->Dv, false);
}

void attn_scatter_grads(CopyHeadsFn *copy, const AttnShape *s, float *dk, float *dk_shared, float *dv,
                        const float *dkg, const float *dvg) {
    const int N = s->B * s->T, own = s->Dk - s->k_shared;
    const long kw = (long)s->Hkv * s->Dk, vw = (long)s->Hkv * s->Dv;
    copy(dk, s->k_stride, attn_key_head(s), dkg, kw, s->Dk, N, s->Hkv, own, false);
    if (s->k_shared)
        attn_sum_shared_grads(copy, dk_shared, s->k_shared_stride, dkg + own, kw, s->Dk, N, s->Hkv, s->k_shared);
    copy(dv, s->v_stride, attn_value_head(s), dvg, vw, s->Dv, N, s->Hkv, s->Dv, false);
}

void attn_sum_shared_grads(CopyHeadsFn *copy, float *dst, long dst_stride, const float *src, long src_stride,
                           long src_head, int rows, int heads, int cols) {
    copy(dst, dst_stride, 0, src, src_stride, src_head, rows, 1, cols, false); /* the first head, then the rest added */
    copy(dst, dst_stride, 0, src + src_head, src_stride, src_head, rows, heads - 1, cols, true);
}

void attn_check_layout(const AttnShape *s, const float *k_shared, const float *dk_shared) {
    if (s->k_shared < 0 || s->k_shared >= s->Dk)
        die("internal: attention with %d shared key columns of %d", s->k_shared, s->Dk);
    if (s->k_shared && (!k_shared || !dk_shared || s->k_shared_stride < s->k_shared))
        die("internal: attention's %d shared key columns without their copy or its gradient (row stride %ld)",
            s->k_shared, s->k_shared_stride);
    if (attn_key_head(s) < s->Dk - s->k_shared || attn_value_head(s) < s->Dv)
        die("internal: attention heads overlap (key head stride %ld for %d own columns, value %ld for %d)",
            attn_key_head(s), s->Dk - s->k_shared, attn_value_head(s), s->Dv);
}

void attn_check_plain(const AttnShape *s, const char *what) {
    if (!attn_layout_plain(s)) die("internal: %s reads keys and values as heads side by side only", what);
}
