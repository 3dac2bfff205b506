/* The model's parameters: one buffer each for values, gradients and the two AdamW moments,
 * carved into named tensors by a table that checkpoints and the optimizer walk. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "rng.h"

/* What a module holds for one parameter tensor: its values and its gradient. */
typedef struct {
    float *w, *g;
} Param;

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS, INIT_FN } ParamInit;

/* A module's own initializer (INIT_FN): fills w[0..n) from rng with its two arguments. */
typedef void (*ParamInitFn)(float *w, size_t n, Rng *rng, float a, float b);

typedef struct {
    char name[96];
    int ndim;
    long shape[4];
    size_t count, offset; /* floats */
    bool decay;           /* weight decay applies (matrices); not to norms, gains, biases */
    ParamInit init;
    float init_std;
    ParamInitFn init_fn;
    float init_a, init_b;
    Param *slot;
} ParamInfo;

typedef struct {
    ParamInfo *info;
    int n, cap;
    size_t total; /* floats */
    float *w, *g, *m, *v;
    const Backend *be;
} ParamSet;

/* Declares a parameter; shape[ndim] in elements. Returns its index in the table. */
int params_add(ParamSet *ps, Param *slot, const char *name, int ndim, const long *shape, bool decay,
               ParamInit init, float init_std);
/* Shorthand for a matrix [rows, cols] initialized N(0, std^2), with weight decay. */
int params_matrix(ParamSet *ps, Param *slot, const char *name, long rows, long cols, float std);
/* Shorthand for a gain vector initialized to ones, without weight decay. */
int params_gain(ParamSet *ps, Param *slot, const char *name, long n);
/* A parameter filled by fn(w, n, rng, a, b). */
int params_custom(ParamSet *ps, Param *slot, const char *name, int ndim, const long *shape, bool decay, ParamInitFn fn,
                  float a, float b);

/* Initializers for params_custom: uniform in [a, b]; log of uniform in [a, b]. */
void init_log_uniform(float *w, size_t n, Rng *rng, float a, float b);

void params_bind(ParamSet *ps, const Backend *be);
/* Fills every parameter in table order from one RNG. */
void params_init(ParamSet *ps, Rng *rng);
void params_zero_grad(ParamSet *ps);
const ParamInfo *params_find(const ParamSet *ps, const char *name);
void params_free(ParamSet *ps);
