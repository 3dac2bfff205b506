// The diagonal-plus-low-rank rule (dplr) on the GPU: not written yet; every entry point stops
// with a one-line error, so a GPU run of dplr says so instead of computing nothing.
#include "cuda_ops.cuh"

static void missing(void) { die("GPU dplr: not implemented yet (use device = 'cpu')"); }

extern "C" size_t cuda_dplr_saved(const ScanShape *) { return 1; }
extern "C" size_t cuda_dplr_workspace(const ScanShape *) { return 256; }
extern "C" void cuda_dplr_forward(const ScanShape *, float *, float *, float *, const float *, const float *,
                                  const float *, const float *, const float *, const float *, const float *, float *) {
    missing();
}
extern "C" void cuda_dplr_backward(const ScanShape *, float *, float *, float *, float *, float *, float *, float *,
                                   const float *, const float *, const float *, const float *, const float *,
                                   const float *, const float *, const float *, const float *, float *) {
    missing();
}
extern "C" void cuda_dplr_step(const ScanShape *, float *, float *, const float *, const float *, const float *,
                               const float *, const float *, const float *) {
    missing();
}
