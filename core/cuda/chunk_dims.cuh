// The chunk layout's dimensions (chunks.cuh): a sequence of T tokens in n_chunks chunks of C, and
// chunk z = (b H + h) n_chunks + c. Apart from chunks.cuh's kernels, for the headers that need
// only the dimensions.
#pragma once
#include "core/backend.h"

struct ChunkDims {
    int B, T, H, C, nc, Tp; /* Tp = nc * C */
    long Z;                 /* chunks in all: B * H * nc */
};

static inline ChunkDims chunk_dims(const ScanShape *s) {
    ChunkDims d;
    d.B = s->B;
    d.T = s->T;
    d.H = s->H;
    d.C = s->chunk;
    d.nc = (s->T + s->chunk - 1) / s->chunk;
    d.Tp = d.nc * d.C;
    d.Z = (long)s->B * s->H * d.nc;
    return d;
}
