// RoPE's rotation of one pair of channels, shared by the rope op (elementwise.cu) and the
// attention's in-op rotation (attention_mma.cu: as it packs q and k, and as it stores their
// gradients), so that both rotate alike.
#pragma once

// The pair (x, y) = (channel j, channel j + rot / 2) rotated by the angle of cosine c and sine s
// (half-split pairs; the rope_forward op's rotation, and with -s its inverse, rope_backward's).
__device__ __forceinline__ float2 rope_pair(float x, float y, float c, float s) {
    return make_float2(x * c - y * s, y * c + x * s);
}
