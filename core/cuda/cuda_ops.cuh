// The GPU backend's operations: cuda_NAME for every NAME of BACKEND_OPS (core/backend.h), defined
// in the .cu file of its concern.
#pragma once
#include "cuda_common.cuh"

extern "C" {
#define CUDA_OP_PROTOTYPE(ret, op, params) ret cuda_##op params;
BACKEND_OPS(CUDA_OP_PROTOTYPE)
#undef CUDA_OP_PROTOTYPE
}
