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

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS, INIT_CUSTOM } ParamInit;

typedef struct {
    char name[96];
    int ndim;
    long shape[4];
    size_t count, offset; /* floats */
    bool decay;           /* weight decay applies (matrices); not to norms, gains, biases */
    ParamInit init;
    float init_std;
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

void params_bind(ParamSet *ps, const Backend *be);
/* Fills every parameter whose init is not INIT_CUSTOM, in table order, from one RNG. */
void params_init(ParamSet *ps, Rng *rng);
void params_zero_grad(ParamSet *ps);
const ParamInfo *params_find(const ParamSet *ps, const char *name);
void params_free(ParamSet *ps);
