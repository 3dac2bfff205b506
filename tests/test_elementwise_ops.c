/* Gradient and forward checks of the small ops of the linear-time mixers: activations, gate,
 * feature maps, bias, strided row copy, short conv (and its decode step), L2 norm, decay gate. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/util.h"
#include "gradcheck.h"
#include "test.h"

/* Values that exercise the tails (saturation, underflow of exp) next to ordinary ones. */
static const float EXTREMES[] = {-100.0f, -40.0f, -12.0f, 12.0f, 40.0f, 100.0f};
enum { N_EXTREMES = sizeof EXTREMES / sizeof EXTREMES[0] };

/* N(0, std^2) with the first entries replaced by EXTREMES. */
static float *inputs_with_extremes(size_t n, float std, Rng *rng) {
    float *x = new_normal(n, std, rng);
    for (size_t i = 0; i < n && i < N_EXTREMES; i++) x[i] = EXTREMES[i];
    return x;
}

/* Moves entries out of (-margin, margin), so a finite difference never straddles a kink at 0. */
static void push_from_zero(float *x, size_t n, float margin) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < margin) x[i] = x[i] < 0 ? x[i] - margin : x[i] + margin;
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- unary activations (silu, sigmoid, feature maps): one case type, the op chosen by tag ---- */

typedef enum { OP_SILU, OP_SIGMOID, OP_FEATURE } UnaryOp;

typedef struct {
    const Backend *be;
    UnaryOp op;
    FeatureMap fm;
    size_t n;
    float *x, *y, *R;
} UnaryCase;

static void unary_forward(UnaryCase *c) {
    switch (c->op) {
    case OP_SILU: c->be->silu_forward(c->y, c->x, c->n); break;
    case OP_SIGMOID: c->be->sigmoid_forward(c->y, c->x, c->n); break;
    case OP_FEATURE: c->be->feature_map_forward(c->y, c->x, c->n, c->fm); break;
    }
}

static double unary_loss(void *p) {
    UnaryCase *c = p;
    unary_forward(c);
    return dot_loss(c->y, c->R, c->n);
}

/* The gradient from the backward, written over garbage (backwards of activations write dx). */
static float *unary_gradient(UnaryCase *c, Rng *rng) {
    float *dx = new_normal(c->n, 5.0f, rng);
    unary_forward(c);
    switch (c->op) {
    case OP_SILU: c->be->silu_backward(dx, c->R, c->x, c->n); break;
    case OP_SIGMOID: c->be->sigmoid_backward(dx, c->R, c->y, c->n); break; /* from the output */
    case OP_FEATURE: c->be->feature_map_backward(dx, c->R, c->x, c->n, c->fm); break;
    }
    return dx;
}

static UnaryCase unary_case(UnaryOp op, FeatureMap fm, size_t n, float std, Rng *rng) {
    UnaryCase c = {backend_cpu(), op, fm, n, NULL, NULL, NULL};
    c.x = inputs_with_extremes(n, std, rng);
    c.y = new_zeros(n);
    c.R = new_normal(n, 1.0f, rng);
    return c;
}

TEST(test_silu_forward_and_gradient) {
    Rng rng;
    rng_seed(&rng, 101);
    UnaryCase c = unary_case(OP_SILU, FEATURE_IDENTITY, 300, 3.0f, &rng);
    unary_forward(&c);
    for (size_t i = 0; i < c.n; i++) {
        double x = c.x[i], ref = x * sigmoid_d(x);
        CHECK_NEAR(c.y[i], ref, 1e-6 * (1 + fabs(ref)), "silu value");
    }
    float *dx = unary_gradient(&c, &rng);
    double e = gradcheck(unary_loss, &c, c.x, dx, c.n, 300, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "silu relative error %.2e", e);
}

TEST(test_sigmoid_forward_and_gradient_from_output) {
    Rng rng;
    rng_seed(&rng, 102);
    UnaryCase c = unary_case(OP_SIGMOID, FEATURE_IDENTITY, 300, 3.0f, &rng);
    unary_forward(&c);
    for (size_t i = 0; i < c.n; i++) CHECK_NEAR(c.y[i], sigmoid_d(c.x[i]), 1e-6, "sigmoid value");
    float *dx = unary_gradient(&c, &rng);
    double e = gradcheck(unary_loss, &c, c.x, dx, c.n, 300, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "sigmoid relative error %.2e", e);
}

static double feature_ref(FeatureMap f, double x) {
    switch (f) {
    case FEATURE_IDENTITY: return x;
    case FEATURE_ELU1: return x > 0 ? x + 1 : exp(x);
    case FEATURE_RELU: return x > 0 ? x : 0;
    }
    return NAN;
}

TEST(test_feature_maps_forward_and_gradient) {
    const FeatureMap maps[] = {FEATURE_IDENTITY, FEATURE_ELU1, FEATURE_RELU};
    const char *names[] = {"identity", "elu+1", "relu"};
    for (int m = 0; m < 3; m++) {
        Rng rng;
        rng_seed(&rng, 103 + m);
        /* half the inputs negative, where elu+1 is exp(x) and relu is flat */
        UnaryCase c = unary_case(OP_FEATURE, maps[m], 400, 2.0f, &rng);
        push_from_zero(c.x, c.n, 0.05f);
        unary_forward(&c);
        int negative = 0;
        for (size_t i = 0; i < c.n; i++) {
            double ref = feature_ref(maps[m], c.x[i]);
            CHECK_NEAR(c.y[i], ref, 1e-6 * (1 + fabs(ref)), names[m]);
            negative += c.x[i] < 0;
        }
        CHECK(negative > 100, "only %d negative inputs", negative);
        float *dx = unary_gradient(&c, &rng);
        double e = gradcheck(unary_loss, &c, c.x, dx, c.n, 400, 1e-2f, &rng);
        CHECK(e < GRAD_TOL, "feature map %s relative error %.2e", names[m], e);
        /* only negative inputs: elu+1's exp branch alone (relu's gradient there is exactly 0) */
        for (size_t i = 0; i < c.n; i++) c.x[i] = -fabsf(c.x[i]);
        dx = unary_gradient(&c, &rng);
        if (maps[m] == FEATURE_RELU) {
            for (size_t i = 0; i < c.n; i++) CHECK(dx[i] == 0.0f, "relu gradient %g at x = %g", dx[i], c.x[i]);
        } else {
            e = gradcheck(unary_loss, &c, c.x, dx, c.n, 400, 1e-2f, &rng);
            CHECK(e < GRAD_TOL, "feature map %s on negatives relative error %.2e", names[m], e);
        }
    }
}

/* ---- gate: y = a * act(z) ---- */

typedef struct {
    const Backend *be;
    GateAct act;
    size_t n;
    float *a, *z, *y, *R;
} GateCase;

static double gate_loss(void *p) {
    GateCase *c = p;
    c->be->gate_forward(c->y, c->a, c->z, c->n, c->act);
    return dot_loss(c->y, c->R, c->n);
}

TEST(test_gate_silu_and_sigmoid_gradients) {
    const GateAct acts[] = {ACT_SILU, ACT_SIGMOID};
    for (int k = 0; k < 2; k++) {
        Rng rng;
        rng_seed(&rng, 110 + k);
        GateCase c = {backend_cpu(), acts[k], 250, NULL, NULL, NULL, NULL};
        c.a = new_normal(c.n, 1.5f, &rng);
        c.z = inputs_with_extremes(c.n, 3.0f, &rng);
        c.y = new_zeros(c.n);
        c.R = new_normal(c.n, 1.0f, &rng);
        gate_loss(&c);
        for (size_t i = 0; i < c.n; i++) {
            double z = c.z[i], act = acts[k] == ACT_SILU ? z * sigmoid_d(z) : sigmoid_d(z);
            double ref = c.a[i] * act;
            CHECK_NEAR(c.y[i], ref, 1e-6 * (1 + fabs(ref)), "gate value");
        }
        float *da = new_normal(c.n, 5.0f, &rng), *dz = new_normal(c.n, 5.0f, &rng); /* overwritten */
        c.be->gate_backward(da, dz, c.R, c.a, c.z, c.n, c.act);
        double ea = gradcheck(gate_loss, &c, c.a, da, c.n, 250, 1e-2f, &rng);
        double ez = gradcheck(gate_loss, &c, c.z, dz, c.n, 250, 1e-2f, &rng);
        CHECK(ea < GRAD_TOL, "gate (%s) da relative error %.2e", k ? "sigmoid" : "silu", ea);
        CHECK(ez < GRAD_TOL, "gate (%s) dz relative error %.2e", k ? "sigmoid" : "silu", ez);
    }
}

/* backend.h allows y == x for the activations; in place must give the out-of-place bits. */
TEST(test_activations_in_place) {
    Rng rng;
    rng_seed(&rng, 115);
    const Backend *be = backend_cpu();
    size_t n = 100003; /* large enough to run threaded */
    float *x = inputs_with_extremes(n, 3.0f, &rng), *z = new_normal(n, 2.0f, &rng), *dy = new_normal(n, 1.0f, &rng);
    float *want = new_zeros(n), *want2 = new_zeros(n), *buf = new_zeros(n), *buf2 = new_zeros(n);
#define SAME(a, b, what)                                                                                  \
    for (size_t i = 0; i < n; i++) CHECK(a[i] == b[i], "%s in place differs at %zu", what, i)
    be->silu_forward(want, x, n);
    memcpy(buf, x, sizeof(float) * n);
    be->silu_forward(buf, buf, n);
    SAME(buf, want, "silu");
    be->silu_backward(want, dy, x, n);
    memcpy(buf, dy, sizeof(float) * n);
    be->silu_backward(buf, buf, x, n); /* dx == dy */
    SAME(buf, want, "silu backward");
    be->sigmoid_forward(want, x, n);
    memcpy(buf, x, sizeof(float) * n);
    be->sigmoid_forward(buf, buf, n);
    SAME(buf, want, "sigmoid");
    be->sigmoid_backward(want2, dy, want, n);
    be->sigmoid_backward(buf, dy, buf, n); /* dx == y */
    SAME(buf, want2, "sigmoid backward");
    for (int f = FEATURE_IDENTITY; f <= FEATURE_RELU; f++) {
        be->feature_map_forward(want, x, n, (FeatureMap)f);
        memcpy(buf, x, sizeof(float) * n);
        be->feature_map_forward(buf, buf, n, (FeatureMap)f);
        SAME(buf, want, "feature map");
        be->feature_map_backward(want, dy, x, n, (FeatureMap)f);
        memcpy(buf, dy, sizeof(float) * n);
        be->feature_map_backward(buf, buf, x, n, (FeatureMap)f);
        SAME(buf, want, "feature map backward");
    }
    for (int act = ACT_SILU; act <= ACT_SIGMOID; act++) {
        be->gate_forward(want, x, z, n, (GateAct)act);
        memcpy(buf, x, sizeof(float) * n);
        be->gate_forward(buf, buf, z, n, (GateAct)act); /* y == a */
        SAME(buf, want, "gate");
        be->gate_backward(want, want2, dy, x, z, n, (GateAct)act);
        memcpy(buf, dy, sizeof(float) * n);
        be->gate_backward(buf, buf2, buf, x, z, n, (GateAct)act); /* da == dy */
        SAME(buf, want, "gate backward da");
        SAME(buf2, want2, "gate backward dz");
        memcpy(buf2, dy, sizeof(float) * n);
        be->gate_backward(buf, buf2, buf2, x, z, n, (GateAct)act); /* dz == dy */
        SAME(buf, want, "gate backward da (dz in place)");
        SAME(buf2, want2, "gate backward dz in place");
    }
#undef SAME
}

/* ---- bias ---- */

typedef struct {
    const Backend *be;
    int rows, C;
    float *y0, *y, *bias, *R;
} BiasCase;

static double bias_loss(void *p) {
    BiasCase *c = p;
    size_t n = (size_t)c->rows * c->C;
    memcpy(c->y, c->y0, sizeof(float) * n);
    c->be->bias_forward(c->y, c->bias, c->rows, c->C);
    return dot_loss(c->y, c->R, n);
}

TEST(test_bias_forward_and_accumulating_backward) {
    Rng rng;
    rng_seed(&rng, 120);
    BiasCase c = {backend_cpu(), 9, 13, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.rows * c.C;
    c.y0 = new_normal(n, 1.0f, &rng);
    c.y = new_zeros(n);
    c.bias = new_normal(c.C, 1.0f, &rng);
    c.R = new_normal(n, 1.0f, &rng);
    bias_loss(&c);
    for (int r = 0; r < c.rows; r++)
        for (int j = 0; j < c.C; j++)
            CHECK(c.y[r * c.C + j] == c.y0[r * c.C + j] + c.bias[j], "bias added at (%d, %d)", r, j);
    float *db = new_zeros(c.C);
    c.be->bias_backward(db, c.R, c.rows, c.C);
    double e = gradcheck(bias_loss, &c, c.bias, db, c.C, 100, 1e-2f, &rng);
    CHECK(e < GRAD_TOL, "bias relative error %.2e", e);
    /* the backward adds to what dbias holds */
    float *db2 = new_normal(c.C, 1.0f, &rng), *before = new_zeros(c.C);
    memcpy(before, db2, sizeof(float) * c.C);
    c.be->bias_backward(db2, c.R, c.rows, c.C);
    for (int j = 0; j < c.C; j++) CHECK_NEAR(db2[j], before[j] + db[j], 1e-5, "dbias accumulated");
}

/* ---- strided row copy ---- */

/* y = alpha s x row by row; the backward adds alpha dy . x to ds and writes or adds alpha s dy,
 * also in place (dx == dy), as dplr's layer scales its written key and values by beta */
TEST(test_row_scale_forward_backward_accumulate_and_in_place) {
    Rng rng;
    rng_seed(&rng, 125);
    const Backend *be = backend_cpu();
    const int rows = 7, D = 11;
    const float alpha = -0.75f;
    size_t n = (size_t)rows * D;
    float *x = new_normal(n, 1.0f, &rng), *s = new_normal(rows, 1.0f, &rng), *dy = new_normal(n, 1.0f, &rng);
    float *y = new_zeros(n), *dx = new_normal(n, 1.0f, &rng), *dx0 = new_zeros(n), *ds = new_normal(rows, 1.0f, &rng);
    float *ds0 = new_zeros(rows), *inplace = new_zeros(n);
    memcpy(dx0, dx, sizeof(float) * n);
    memcpy(ds0, ds, sizeof(float) * rows);
    memcpy(inplace, dy, sizeof(float) * n);
    be->row_scale_forward(y, x, s, rows, D, alpha);
    be->row_scale_backward(dx, ds, dy, x, s, rows, D, alpha, true);
    for (int r = 0; r < rows; r++) {
        double dot = 0;
        for (int j = 0; j < D; j++) {
            size_t i = (size_t)r * D + j;
            dot += (double)dy[i] * x[i];
            CHECK_NEAR(y[i], alpha * s[r] * x[i], 1e-6, "row_scale forward");
            CHECK_NEAR(dx[i], dx0[i] + alpha * s[r] * dy[i], 1e-5, "row_scale dx accumulated");
        }
        CHECK_NEAR(ds[r], ds0[r] + alpha * dot, 1e-5, "row_scale ds added");
    }
    memcpy(ds, ds0, sizeof(float) * rows);
    be->row_scale_backward(inplace, ds, inplace, x, s, rows, D, alpha, false);
    for (size_t i = 0; i < n; i++) CHECK_NEAR(inplace[i], alpha * s[i / D] * dy[i], 1e-6, "row_scale dx in place");
    for (int r = 0; r < rows; r++) {
        double dot = 0;
        for (int j = 0; j < D; j++) dot += (double)dy[(size_t)r * D + j] * x[(size_t)r * D + j];
        CHECK_NEAR(ds[r], ds0[r] + alpha * dot, 1e-5, "row_scale ds in place");
    }
}

TEST(test_copy_rows_strided_copy_and_accumulate) {
    Rng rng;
    rng_seed(&rng, 130);
    const Backend *be = backend_cpu();
    int rows = 5, cols = 6;
    long ss = 9, ds = 14; /* both wider than cols, and different */
    float *src = new_normal(rows * ss, 1.0f, &rng), *dst = new_normal(rows * ds, 1.0f, &rng);
    float *orig = new_zeros(rows * ds);
    memcpy(orig, dst, sizeof(float) * rows * ds);
    /* the block starts at an offset inside each row: column 3 of src, column 5 of dst */
    be->copy_rows(dst + 5, ds, src + 3, ss, rows, cols, false);
    for (int r = 0; r < rows; r++)
        for (long j = 0; j < ds; j++) {
            float want = j >= 5 && j < 5 + cols ? src[r * ss + 3 + (j - 5)] : orig[r * ds + j];
            CHECK(dst[r * ds + j] == want, "copy: dst(%d, %ld) = %g, want %g", r, j, dst[r * ds + j], want);
        }
    memcpy(dst, orig, sizeof(float) * rows * ds);
    be->copy_rows(dst + 5, ds, src + 3, ss, rows, cols, true);
    for (int r = 0; r < rows; r++)
        for (long j = 0; j < ds; j++) {
            float want = j >= 5 && j < 5 + cols ? orig[r * ds + j] + src[r * ss + 3 + (j - 5)] : orig[r * ds + j];
            CHECK(dst[r * ds + j] == want, "accumulate: dst(%d, %ld) = %g, want %g", r, j, dst[r * ds + j], want);
        }
}

/* copy_heads against its definition in three uses (MLA's): per-head blocks copied side by side,
 * one block copied into every head (src head stride 0), and heads summed into one block (dst head
 * stride 0 with accumulate), the sum in head order */
TEST(test_copy_heads_blocks_broadcast_and_sum) {
    Rng rng;
    rng_seed(&rng, 131);
    const Backend *be = backend_cpu();
    enum { R = 4, H = 3, W = 5 };
    long ss = 20, ds = 23; /* rows wider than H heads of W */
    float *src = new_normal(R * ss, 1.0f, &rng), *dst = new_normal(R * ds, 1.0f, &rng);
    float *orig = new_zeros(R * ds);
    memcpy(orig, dst, sizeof(float) * R * ds);
    /* blocks: head h of src at column 1 + 6 h, of dst at column 2 + 7 h */
    be->copy_heads(dst + 2, ds, 7, src + 1, ss, 6, R, H, W, false);
    for (int r = 0; r < R; r++)
        for (long j = 0; j < ds; j++) {
            long h = (j - 2) / 7, c = (j - 2) % 7;
            bool inside = j >= 2 && h < H && c < W;
            float want = inside ? src[r * ss + 1 + 6 * h + c] : orig[r * ds + j];
            CHECK(dst[r * ds + j] == want, "blocks: dst(%d, %ld) = %g, want %g", r, j, dst[r * ds + j], want);
        }
    memcpy(dst, orig, sizeof(float) * R * ds);
    be->copy_heads(dst, ds, W, src + 4, ss, 0, R, H, W, false);
    for (int r = 0; r < R; r++)
        for (long j = 0; j < ds; j++) {
            float want = j < H * W ? src[r * ss + 4 + j % W] : orig[r * ds + j];
            CHECK(dst[r * ds + j] == want, "broadcast: dst(%d, %ld) = %g, want %g", r, j, dst[r * ds + j], want);
        }
    memcpy(dst, orig, sizeof(float) * R * ds);
    be->copy_heads(dst + 3, ds, 0, src, ss, W, R, H, W, true);
    for (int r = 0; r < R; r++)
        for (long j = 0; j < ds; j++) {
            float want = orig[r * ds + j];
            if (j >= 3 && j < 3 + W)
                for (int h = 0; h < H; h++) want += src[r * ss + h * W + (j - 3)];
            CHECK(dst[r * ds + j] == want, "sum: dst(%d, %ld) = %g, want %g", r, j, dst[r * ds + j], want);
        }
}

/* gemm_batched: each product is the gemm of its own strided operands, bit for bit */
TEST(test_gemm_batched_is_each_product) {
    Rng rng;
    rng_seed(&rng, 132);
    const Backend *be = backend_cpu();
    enum { M = 3, N = 4, K = 5, COUNT = 3 };
    long long sa = 2 * K + 1, sb = K * N + 3, sc = N + 2; /* heads interleaved in wider rows */
    int lda = (int)(COUNT * sa), ldc = (int)(COUNT * sc);
    float *A = new_normal((size_t)M * lda, 1.0f, &rng), *Bm = new_normal((size_t)COUNT * sb, 1.0f, &rng);
    float *C = new_normal((size_t)M * ldc, 1.0f, &rng), *want = new_zeros((size_t)M * ldc);
    memcpy(want, C, sizeof(float) * M * ldc);
    for (int i = 0; i < COUNT; i++)
        be->gemm(false, true, M, N, K, 0.5f, A + i * sa, lda, Bm + i * sb, K, 1.0f, want + i * sc, ldc);
    be->gemm_batched(false, true, M, N, K, 0.5f, A, lda, sa, Bm, K, sb, 1.0f, C, ldc, sc, COUNT);
    for (int i = 0; i < M * ldc; i++) CHECK(C[i] == want[i], "C[%d] = %g, want %g", i, C[i], want[i]);
    /* a hand-computed entry guards against both sides being wrong the same way */
    double d = 0.0;
    for (int k = 0; k < K; k++) d += (double)A[1 * lda + 2 * sa + k] * Bm[2 * sb + 3 * K + k];
    be->gemm_batched(false, true, M, N, K, 1.0f, A, lda, sa, Bm, K, sb, 0.0f, C, ldc, sc, COUNT);
    CHECK(fabs(C[1 * ldc + 2 * sc + 3] - d) < 1e-5, "entry (1, 3) of product 2: %g, want %g", C[1 * ldc + 2 * sc + 3],
          d);
}

/* linear_backward: dW += dy^T x and dx = dy W (or +=, or skipped), against sums done here */
TEST(test_linear_backward_is_both_products) {
    Rng rng;
    rng_seed(&rng, 133);
    const Backend *be = backend_cpu();
    enum { N = 5, IN = 4, OUT = 3 };
    float *dy = new_normal(N * OUT, 1.0f, &rng), *x = new_normal(N * IN, 1.0f, &rng), *W = new_normal(OUT * IN, 1.0f, &rng);
    for (int mode = 0; mode < 3; mode++) { /* dx = ..., dx += ..., no dx */
        float *dW = new_normal(OUT * IN, 1.0f, &rng), *dx = new_normal(N * IN, 1.0f, &rng);
        float dW0[OUT * IN], dx0[N * IN];
        memcpy(dW0, dW, sizeof dW0), memcpy(dx0, dx, sizeof dx0);
        be->linear_backward(mode < 2 ? dx : NULL, dW, dy, x, W, N, IN, OUT, mode == 1);
        for (int o = 0; o < OUT; o++)
            for (int i = 0; i < IN; i++) {
                double want = dW0[o * IN + i];
                for (int n = 0; n < N; n++) want += (double)dy[n * OUT + o] * x[n * IN + i];
                CHECK(fabs(dW[o * IN + i] - want) < 1e-5, "mode %d: dW(%d, %d) = %g, want %g", mode, o, i,
                      dW[o * IN + i], want);
            }
        for (int n = 0; n < N; n++)
            for (int i = 0; i < IN; i++) {
                double want = mode == 0 ? 0.0 : dx0[n * IN + i];
                if (mode < 2)
                    for (int o = 0; o < OUT; o++) want += (double)dy[n * OUT + o] * W[o * IN + i];
                CHECK(fabs(dx[n * IN + i] - want) < 1e-5, "mode %d: dx(%d, %d) = %g, want %g", mode, n, i,
                      dx[n * IN + i], want);
            }
        free(dW), free(dx);
    }
    free(dy), free(x), free(W);
}

/* linear_group_backward: each dW += dy_i^T x, and dx = sum_i dy_i W_i (or +=), against sums done
 * here; and bit for bit what linear_backward of each layer in turn makes (the CPU's results, and
 * so its reference runs, unchanged where a layer's backward became one group) */
TEST(test_linear_group_backward_is_each_layer_in_turn) {
    Rng rng;
    rng_seed(&rng, 134);
    const Backend *be = backend_cpu();
    enum { N = 5, IN = 4, LAYERS = 3, WIDEST = 6 };
    const int outs[LAYERS] = {3, 1, WIDEST};
    float *x = new_normal(N * IN, 1.0f, &rng), *dy[LAYERS], *W[LAYERS];
    for (int i = 0; i < LAYERS; i++) {
        dy[i] = new_normal(N * outs[i], 1.0f, &rng);
        W[i] = new_normal(outs[i] * IN, 1.0f, &rng);
    }
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        float *dx = new_normal(N * IN, 1.0f, &rng), dx0[N * IN], dx_turns[N * IN];
        float dW[LAYERS][WIDEST * IN], dW0[LAYERS][WIDEST * IN], dW_turns[LAYERS][WIDEST * IN];
        memcpy(dx0, dx, sizeof dx0), memcpy(dx_turns, dx, sizeof dx0);
        LinearGrad grads[LAYERS];
        for (int i = 0; i < LAYERS; i++) {
            for (int k = 0; k < outs[i] * IN; k++) dW[i][k] = dW0[i][k] = dW_turns[i][k] = (float)rng_normal(&rng);
            grads[i] = (LinearGrad){W[i], dW[i], dy[i], outs[i]};
        }
        be->linear_group_backward(dx, x, N, IN, LAYERS, grads, accumulate);
        for (int i = 0; i < LAYERS; i++)
            be->linear_backward(dx_turns, dW_turns[i], dy[i], x, W[i], N, IN, outs[i], accumulate || i > 0);
        CHECK(memcmp(dx, dx_turns, sizeof dx_turns) == 0, "accumulate %d: dx is not linear_backward's in turn",
              accumulate);
        for (int i = 0; i < LAYERS; i++) {
            CHECK(memcmp(dW[i], dW_turns[i], sizeof(float) * outs[i] * IN) == 0,
                  "accumulate %d: dW of layer %d is not linear_backward's", accumulate, i);
            for (int o = 0; o < outs[i]; o++)
                for (int k = 0; k < IN; k++) {
                    double want = dW0[i][o * IN + k];
                    for (int n = 0; n < N; n++) want += (double)dy[i][n * outs[i] + o] * x[n * IN + k];
                    CHECK(fabs(dW[i][o * IN + k] - want) < 1e-5, "accumulate %d: dW%d(%d, %d) = %g, want %g",
                          accumulate, i, o, k, dW[i][o * IN + k], want);
                }
        }
        for (int n = 0; n < N; n++)
            for (int k = 0; k < IN; k++) {
                double want = accumulate ? dx0[n * IN + k] : 0.0;
                for (int i = 0; i < LAYERS; i++)
                    for (int o = 0; o < outs[i]; o++) want += (double)dy[i][n * outs[i] + o] * W[i][o * IN + k];
                CHECK(fabs(dx[n * IN + k] - want) < 1e-5, "accumulate %d: dx(%d, %d) = %g, want %g", accumulate, n, k,
                      dx[n * IN + k], want);
            }
        free(dx);
    }
    for (int i = 0; i < LAYERS; i++) free(dy[i]), free(W[i]);
    free(x);
}

/* ---- causal depthwise conv1d ---- */

typedef struct {
    const Backend *be;
    int B, T, C, W;
    float *x, *w, *y, *R;
} ConvCase;

static double conv_loss(void *p) {
    ConvCase *c = p;
    c->be->conv1d_forward(c->y, c->x, c->w, c->B, c->T, c->C, c->W);
    return dot_loss(c->y, c->R, (size_t)c->B * c->T * c->C);
}

static ConvCase conv_case(int B, int T, int C, int W, Rng *rng) {
    ConvCase c = {backend_cpu(), B, T, C, W, NULL, NULL, NULL, NULL};
    size_t n = (size_t)B * T * C;
    c.x = new_normal(n, 1.0f, rng);
    c.w = new_normal((size_t)C * W, 0.7f, rng);
    c.y = new_zeros(n);
    c.R = new_normal(n, 1.0f, rng);
    return c;
}

/* The output from the definition, in double; *mag gets the sum of |terms|, which bounds the
 * fp32 rounding of a long window. */
static double conv_ref(const ConvCase *c, int b, int t, int ch, double *mag) {
    double s = 0;
    *mag = 0;
    for (int i = 0; i < c->W; i++) {
        int src = t - c->W + 1 + i;
        if (src < 0) continue;
        double term = (double)c->w[ch * c->W + i] * c->x[((size_t)b * c->T + src) * c->C + ch];
        s += term;
        *mag += fabs(term);
    }
    return s;
}

static void check_conv1d(int B, int T, int C, int W, size_t coords, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    ConvCase c = conv_case(B, T, C, W, &rng);
    size_t n = (size_t)B * T * C;
    conv_loss(&c);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int ch = 0; ch < C; ch++) {
                double mag, ref = conv_ref(&c, b, t, ch, &mag);
                CHECK_NEAR(c.y[((size_t)b * T + t) * C + ch], ref, 1e-6 * (1 + mag), "conv1d value");
            }
    float *dx = new_normal(n, 5.0f, &rng); /* garbage: the backward writes dx */
    float *dw = new_zeros((size_t)C * W);
    c.be->conv1d_backward(dx, dw, c.R, c.x, c.w, B, T, C, W);
    double ex = gradcheck(conv_loss, &c, c.x, dx, n, coords, 1e-2f, &rng);
    double ew = gradcheck(conv_loss, &c, c.w, dw, (size_t)C * W, coords, 1e-2f, &rng);
    CHECK(ex < GRAD_TOL, "conv1d (B%d T%d C%d W%d) dx relative error %.2e", B, T, C, W, ex);
    CHECK(ew < GRAD_TOL, "conv1d (B%d T%d C%d W%d) dw relative error %.2e", B, T, C, W, ew);
    /* dw is added to */
    float *dw2 = new_normal((size_t)C * W, 1.0f, &rng), *before = new_zeros((size_t)C * W);
    memcpy(before, dw2, sizeof(float) * C * W);
    c.be->conv1d_backward(dx, dw2, c.R, c.x, c.w, B, T, C, W);
    for (int i = 0; i < C * W; i++) CHECK_NEAR(dw2[i], before[i] + dw[i], 1e-5 * (1 + fabs(dw[i])), "dw accumulated");
}

TEST(test_conv1d_forward_and_gradient) { check_conv1d(2, 9, 5, 4, 500, 140); }
/* a window longer than the sequence: every output sees the zero padding */
TEST(test_conv1d_window_longer_than_sequence_gradient) { check_conv1d(1, 3, 3, 5, 500, 141); }
TEST(test_conv1d_single_tap_gradient) { check_conv1d(2, 4, 6, 1, 500, 142); }
/* more taps than the backward's accumulator tile holds: dw is reduced in several tiles */
TEST(test_conv1d_very_long_window_gradient) { check_conv1d(1, 1100, 2, 1030, 40, 143); }

/* conv1d_silu_forward and _backward are the ops they stand for (silu of conv1d_forward, then
 * l2norm_forward where it normalizes; and
 * conv1d_backward of silu_backward at conv1d_forward's output, dw added to), to the bit; and the
 * loss sum R silu(conv1d(x, w)) has the gradients conv1d_silu_backward gives. */
static double conv_silu_loss(void *p) {
    ConvCase *c = p;
    c->be->conv1d_silu_forward(c->y, NULL, c->x, c->w, c->B, c->T, c->C, c->W, 0, 0.0f);
    return dot_loss(c->y, c->R, (size_t)c->B * c->T * c->C);
}

static void check_conv1d_silu(int B, int T, int C, int W, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    ConvCase c = conv_case(B, T, C, W, &rng);
    size_t n = (size_t)B * T * C;
    float *conv = new_zeros(n), *want = new_zeros(n), *dc = new_zeros(n);
    c.be->conv1d_forward(conv, c.x, c.w, B, T, C, W);
    c.be->silu_forward(want, conv, n);
    conv_silu_loss(&c);
    CHECK(memcmp(c.y, want, sizeof(float) * n) == 0, "conv1d_silu_forward is not silu(conv1d_forward) to the bit");
    if (C % 2 == 0) { /* with the norm: heads of 2 channels through l2norm_forward */
        int heads = B * T * C / 2;
        float *normed = new_zeros(n), *want_normed = new_zeros(n), *rn = new_zeros((size_t)heads);
        float *want_rn = new_zeros((size_t)heads);
        c.be->l2norm_forward(want_normed, want_rn, want, heads, 2, 1e-6f);
        c.be->conv1d_silu_forward(normed, rn, c.x, c.w, B, T, C, W, 2, 1e-6f);
        CHECK(memcmp(normed, want_normed, sizeof(float) * n) == 0 && memcmp(rn, want_rn, sizeof(float) * heads) == 0,
              "conv1d_silu_forward with the norm is not l2norm_forward of its output to the bit");
        free(normed), free(want_normed), free(rn), free(want_rn);
    }
    float *want_dx = new_zeros(n), *want_dw = new_zeros((size_t)C * W), *dx = new_zeros(n);
    float *dw = new_zeros((size_t)C * W);
    for (size_t i = 0; i < (size_t)C * W; i++) want_dw[i] = dw[i] = 0.25f * (float)i; /* dw is added to */
    c.be->silu_backward(dc, c.R, conv, n);
    c.be->conv1d_backward(want_dx, want_dw, dc, c.x, c.w, B, T, C, W);
    float *dy = xmalloc(sizeof(float) * n); /* the op's scratch */
    memcpy(dy, c.R, sizeof(float) * n);
    c.be->conv1d_silu_backward(dx, dw, dy, c.x, c.w, B, T, C, W);
    CHECK(memcmp(dx, want_dx, sizeof(float) * n) == 0 && memcmp(dw, want_dw, sizeof(float) * C * W) == 0,
          "conv1d_silu_backward is not conv1d_backward of silu_backward at the conv to the bit");
    memset(dw, 0, sizeof(float) * C * W);
    memcpy(dy, c.R, sizeof(float) * n);
    c.be->conv1d_silu_backward(dx, dw, dy, c.x, c.w, B, T, C, W);
    double ex = gradcheck(conv_silu_loss, &c, c.x, dx, n, 300, 1e-2f, &rng);
    double ew = gradcheck(conv_silu_loss, &c, c.w, dw, (size_t)C * W, 300, 1e-2f, &rng);
    CHECK(ex < GRAD_TOL, "conv1d_silu (B%d T%d C%d W%d) dx relative error %.2e", B, T, C, W, ex);
    CHECK(ew < GRAD_TOL, "conv1d_silu (B%d T%d C%d W%d) dw relative error %.2e", B, T, C, W, ew);
    free(conv), free(want), free(dc), free(want_dx), free(want_dw), free(dx), free(dw), free(dy);
}

TEST(test_conv1d_silu_is_its_ops_and_has_their_gradient) {
    check_conv1d_silu(2, 9, 5, 4, 144);
    check_conv1d_silu(1, 3, 3, 5, 145); /* a window longer than the sequence */
    check_conv1d_silu(2, 7, 6, 3, 146); /* heads of 2 channels for the norm */
}

/* Decoding token by token from an empty state reproduces the training forward at every position,
 * and a state filled from a prompt's last W-1 inputs (oldest first) continues that prompt. */
static void check_conv1d_step(int B, int T, int C, int W, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    ConvCase c = conv_case(B, T, C, W, &rng);
    conv_loss(&c);
    size_t sn = (size_t)B * (W - 1) * C;
    float *state = new_zeros(sn), *xt = new_zeros((size_t)B * C), *yt = new_zeros((size_t)B * C);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) memcpy(xt + b * C, c.x + ((size_t)b * T + t) * C, sizeof(float) * C);
        c.be->conv1d_step(yt, state, xt, c.w, B, C, W);
        for (int b = 0; b < B; b++)
            for (int ch = 0; ch < C; ch++) {
                float full = c.y[((size_t)b * T + t) * C + ch];
                CHECK_NEAR(yt[b * C + ch], full, 1e-6 * (1 + fabsf(full)), "conv1d step vs forward");
            }
        /* the state holds the last W-1 inputs, oldest first, zero before position 0 */
        for (int b = 0; b < B; b++)
            for (int i = 0; i < W - 1; i++) {
                int src = t - (W - 2) + i;
                for (int ch = 0; ch < C; ch++) {
                    float want = src >= 0 ? c.x[((size_t)b * T + src) * C + ch] : 0.0f;
                    CHECK(state[((size_t)b * (W - 1) + i) * C + ch] == want, "state slot %d after step %d", i, t);
                }
            }
    }
    /* prefill: state from the inputs before position P, then decode the rest */
    int P = T / 2;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < W - 1; i++) {
            int src = P - (W - 1) + i;
            for (int ch = 0; ch < C; ch++)
                state[((size_t)b * (W - 1) + i) * C + ch] = src >= 0 ? c.x[((size_t)b * T + src) * C + ch] : 0.0f;
        }
    for (int t = P; t < T; t++) {
        for (int b = 0; b < B; b++) memcpy(xt + b * C, c.x + ((size_t)b * T + t) * C, sizeof(float) * C);
        c.be->conv1d_step(yt, state, xt, c.w, B, C, W);
        for (int b = 0; b < B; b++)
            for (int ch = 0; ch < C; ch++) {
                float full = c.y[((size_t)b * T + t) * C + ch];
                CHECK_NEAR(yt[b * C + ch], full, 1e-6 * (1 + fabsf(full)), "conv1d step after prefill");
            }
    }
}

TEST(test_conv1d_step_matches_forward_at_every_position) {
    check_conv1d_step(2, 11, 7, 4, 150);
    if (test_failed()) return;
    check_conv1d_step(1, 3, 4, 5, 151); /* window longer than the sequence */
    if (test_failed()) return;
    check_conv1d_step(3, 5, 2, 1, 152); /* no state at all */
}

/* ---- L2 norm ---- */

typedef struct {
    const Backend *be;
    int rows, D;
    float eps;
    float *x, *y, *rnorm, *R;
} L2Case;

static double l2_loss(void *p) {
    L2Case *c = p;
    c->be->l2norm_forward(c->y, c->rnorm, c->x, c->rows, c->D, c->eps);
    return dot_loss(c->y, c->R, (size_t)c->rows * c->D);
}

TEST(test_l2norm_forward_and_gradient) {
    Rng rng;
    rng_seed(&rng, 160);
    L2Case c = {backend_cpu(), 7, 16, 1e-6f, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.rows * c.D;
    c.x = new_normal(n, 1.0f, &rng);
    for (int d = 0; d < c.D; d++) c.x[2 * c.D + d] *= 30.0f; /* rows of different scales */
    for (int d = 0; d < c.D; d++) c.x[4 * c.D + d] *= 0.2f;
    c.y = new_zeros(n);
    c.rnorm = new_zeros(c.rows);
    c.R = new_normal(n, 1.0f, &rng);
    l2_loss(&c);
    for (int r = 0; r < c.rows; r++) {
        double ss = 0;
        for (int d = 0; d < c.D; d++) ss += (double)c.x[r * c.D + d] * c.x[r * c.D + d];
        double rn = 1 / sqrt(ss + c.eps);
        CHECK_NEAR(c.rnorm[r], rn, 1e-6 * rn, "rnorm");
        for (int d = 0; d < c.D; d++) CHECK_NEAR(c.y[r * c.D + d], c.x[r * c.D + d] * rn, 1e-6, "l2norm value");
    }
    float *dx = new_normal(n, 5.0f, &rng); /* garbage: the backward writes dx */
    c.be->l2norm_backward(dx, c.R, c.y, c.rnorm, c.rows, c.D);
    double e = gradcheck(l2_loss, &c, c.x, dx, n, 300, 1e-3f, &rng);
    CHECK(e < GRAD_TOL, "l2norm relative error %.2e", e);
    /* a zero row stays finite: eps keeps the norm away from 0 */
    float zero[8] = {0}, y0[8], rn0;
    c.be->l2norm_forward(y0, &rn0, zero, 1, 8, c.eps);
    for (int d = 0; d < 8; d++) CHECK(y0[d] == 0.0f, "zero row normalized to %g", y0[d]);
    CHECK_NEAR(rn0, 1 / sqrt(c.eps), 1e-6 / sqrt(c.eps), "rnorm of a zero row");
}

/* ---- decay gate ---- */

typedef struct {
    const Backend *be;
    int N, H, D;
    float *a, *A_log, *dt_bias, *g, *R;
} DecayCase;

static double decay_loss(void *p) {
    DecayCase *c = p;
    c->be->decay_gate_forward(c->g, c->a, c->A_log, c->dt_bias, c->N, c->H, c->D);
    return dot_loss(c->g, c->R, (size_t)c->N * c->H * c->D);
}

static double softplus_d(double x) { return x > 30 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* a + dt_bias around `center`: 0 is the usual range; +-30 are the tails where a naive
 * log(1 + exp(x)) overflows to inf or rounds to 0. */
static DecayCase decay_case(int N, int H, int D, float center, float spread, Rng *rng) {
    DecayCase c = {backend_cpu(), N, H, D, NULL, NULL, NULL, NULL, NULL};
    size_t n = (size_t)N * H * D;
    c.a = new_normal(n, spread, rng);
    for (size_t i = 0; i < n; i++) c.a[i] += center;
    c.A_log = new_normal(H, 1.0f, rng);
    c.dt_bias = new_normal((size_t)H * D, 0.5f, rng);
    c.g = new_zeros(n);
    c.R = new_normal(n, 1.0f, rng);
    return c;
}

static void check_decay_gate(int N, int H, int D, float center, float spread, unsigned seed) {
    Rng rng;
    rng_seed(&rng, seed);
    DecayCase c = decay_case(N, H, D, center, spread, &rng);
    size_t n = (size_t)N * H * D;
    decay_loss(&c);
    for (int t = 0; t < N; t++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++) {
                size_t i = ((size_t)t * H + h) * D + d;
                double ref = -exp((double)c.A_log[h]) * softplus_d((double)c.a[i] + c.dt_bias[h * D + d]);
                /* relative: in the negative tail g is ~1e-13 and must not round to 0 */
                CHECK(fabs(c.g[i] - ref) <= 1e-5 * fabs(ref) + 1e-30, "g = %.9g, want %.9g (x = %g)", c.g[i], ref,
                      c.a[i] + c.dt_bias[h * D + d]);
            }
    float *da = new_normal(n, 5.0f, &rng); /* garbage: the backward writes da */
    float *dA = new_zeros(H), *db = new_zeros((size_t)H * D);
    c.be->decay_gate_backward(da, dA, db, c.R, c.a, c.A_log, c.dt_bias, N, H, D);
    double ea = gradcheck(decay_loss, &c, c.a, da, n, 400, 1e-2f, &rng);
    double eA = gradcheck(decay_loss, &c, c.A_log, dA, H, 100, 1e-2f, &rng);
    double eb = gradcheck(decay_loss, &c, c.dt_bias, db, (size_t)H * D, 400, 1e-2f, &rng);
    CHECK(ea < GRAD_TOL, "decay gate (center %g) da relative error %.2e", center, ea);
    CHECK(eA < GRAD_TOL, "decay gate (center %g) dA_log relative error %.2e", center, eA);
    CHECK(eb < GRAD_TOL, "decay gate (center %g) ddt_bias relative error %.2e", center, eb);
    /* the parameter gradients are added to */
    float *dA2 = new_normal(H, 1.0f, &rng), *db2 = new_normal((size_t)H * D, 1.0f, &rng);
    float *dA_before = new_zeros(H), *db_before = new_zeros((size_t)H * D);
    memcpy(dA_before, dA2, sizeof(float) * H);
    memcpy(db_before, db2, sizeof(float) * H * D);
    c.be->decay_gate_backward(da, dA2, db2, c.R, c.a, c.A_log, c.dt_bias, N, H, D);
    for (int h = 0; h < H; h++) CHECK_NEAR(dA2[h], dA_before[h] + dA[h], 1e-5 * (1 + fabs(dA[h])), "dA_log added");
    for (int j = 0; j < H * D; j++)
        CHECK_NEAR(db2[j], db_before[j] + db[j], 1e-5 * (1 + fabs(db[j])), "ddt_bias added");
}

TEST(test_decay_gate_channelwise_gradient) { check_decay_gate(6, 3, 4, 0.0f, 2.0f, 170); }
TEST(test_decay_gate_per_head_gradient) { check_decay_gate(9, 4, 1, 0.0f, 2.0f, 171); } /* gdn: D = 1 */
TEST(test_decay_gate_large_arguments_gradient) { check_decay_gate(5, 2, 3, 30.0f, 5.0f, 172); }
TEST(test_decay_gate_very_negative_arguments_gradient) { check_decay_gate(5, 2, 3, -30.0f, 5.0f, 173); }

TEST(test_decay_gate_softplus_tails) {
    const Backend *be = backend_cpu();
    const float x[] = {200.0f, 100.0f, 50.0f, 20.5f, 19.5f, 0.0f, -19.5f, -20.5f, -50.0f, -80.0f};
    enum { K = sizeof x / sizeof x[0] };
    float A_log = 0.0f, dt_bias = 0.0f, g[K], da[K], dg[K], dA = 0.0f, db = 0.0f;
    be->decay_gate_forward(g, x, &A_log, &dt_bias, K, 1, 1);
    for (int i = 0; i < K; i++) {
        double ref = -softplus_d(x[i]);
        CHECK(isfinite(g[i]) && fabs(g[i] - ref) <= 1e-6 * fabs(ref), "softplus(%g): g = %.9g, want %.9g", x[i], g[i],
              ref);
        dg[i] = 1.0f;
    }
    be->decay_gate_backward(da, &dA, &db, dg, x, &A_log, &dt_bias, K, 1, 1);
    for (int i = 0; i < K; i++) {
        double ref = -sigmoid_d(x[i]);
        CHECK(isfinite(da[i]) && fabs(da[i] - ref) <= 1e-6 * fabs(ref), "d softplus(%g): %.9g, want %.9g", x[i], da[i],
              ref);
    }
}

/* ---- the reductions at sizes that take the parallel paths ---- */

/* Large enough that every op above runs threaded, with a thread count that does not divide the
 * work evenly; the reductions must match double references and repeat bit for bit. */
TEST(test_reductions_on_many_threads) {
    omp_set_num_threads(3);
    Rng rng;
    rng_seed(&rng, 180);
    const Backend *be = backend_cpu();

    /* more than one 256-column accumulator block per thread */
    int rows = 1001, C = 1100;
    float *dy = new_normal((size_t)rows * C, 1.0f, &rng), *db = new_zeros(C), *db2 = new_zeros(C);
    be->bias_backward(db, dy, rows, C);
    be->bias_backward(db2, dy, rows, C);
    for (int j = 0; j < C; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++) s += dy[(size_t)r * C + j];
        CHECK_NEAR(db[j], s, 1e-5 * (1 + fabs(s)), "threaded dbias");
        CHECK(db[j] == db2[j], "dbias differs between two identical calls");
    }

    ConvCase c = conv_case(3, 301, 29, 4, &rng);
    size_t n = (size_t)c.B * c.T * c.C;
    float *dx = new_zeros(n), *dw = new_zeros((size_t)c.C * c.W), *dw2 = new_zeros((size_t)c.C * c.W);
    conv_loss(&c);
    for (int probe = 0; probe < 200; probe++) {
        int b = (int)rng_below(&rng, c.B), t = (int)rng_below(&rng, c.T), ch = (int)rng_below(&rng, c.C);
        double mag, ref = conv_ref(&c, b, t, ch, &mag);
        CHECK_NEAR(c.y[((size_t)b * c.T + t) * c.C + ch], ref, 1e-6 * (1 + mag), "threaded conv1d value");
    }
    be->conv1d_backward(dx, dw, c.R, c.x, c.w, c.B, c.T, c.C, c.W);
    be->conv1d_backward(dx, dw2, c.R, c.x, c.w, c.B, c.T, c.C, c.W);
    for (int ch = 0; ch < c.C; ch++)
        for (int i = 0; i < c.W; i++) {
            double s = 0;
            for (int b = 0; b < c.B; b++)
                for (int t = c.W - 1 - i; t < c.T; t++)
                    s += (double)c.R[((size_t)b * c.T + t) * c.C + ch] *
                         c.x[((size_t)b * c.T + t - c.W + 1 + i) * c.C + ch];
            CHECK_NEAR(dw[ch * c.W + i], s, 1e-5 * (1 + fabs(s)), "threaded conv1d dw");
            CHECK(dw[ch * c.W + i] == dw2[ch * c.W + i], "conv1d dw differs between two identical calls");
        }
    for (int probe = 0; probe < 200; probe++) {
        int b = (int)rng_below(&rng, c.B), t = (int)rng_below(&rng, c.T), ch = (int)rng_below(&rng, c.C);
        double s = 0;
        for (int i = 0; i < c.W; i++) {
            int out = t + c.W - 1 - i;
            if (out < c.T) s += (double)c.w[ch * c.W + i] * c.R[((size_t)b * c.T + out) * c.C + ch];
        }
        CHECK_NEAR(dx[((size_t)b * c.T + t) * c.C + ch], s, 1e-5 * (1 + fabs(s)), "threaded conv1d dx");
    }

    DecayCase d = decay_case(701, 5, 8, 0.0f, 2.0f, &rng);
    size_t dn = (size_t)d.N * d.H * d.D;
    float *da = new_zeros(dn), *dA = new_zeros(d.H), *dA2 = new_zeros(d.H);
    float *dtb = new_zeros((size_t)d.H * d.D), *dtb2 = new_zeros((size_t)d.H * d.D);
    be->decay_gate_backward(da, dA, dtb, d.R, d.a, d.A_log, d.dt_bias, d.N, d.H, d.D);
    be->decay_gate_backward(da, dA2, dtb2, d.R, d.a, d.A_log, d.dt_bias, d.N, d.H, d.D);
    for (int h = 0; h < d.H; h++) {
        double sA = 0, A = exp((double)d.A_log[h]);
        for (int t = 0; t < d.N; t++)
            for (int k = 0; k < d.D; k++) {
                size_t i = ((size_t)t * d.H + h) * d.D + k;
                sA += d.R[i] * -A * softplus_d((double)d.a[i] + d.dt_bias[h * d.D + k]);
            }
        CHECK_NEAR(dA[h], sA, 1e-5 * (1 + fabs(sA)), "threaded dA_log");
        CHECK(dA[h] == dA2[h], "dA_log differs between two identical calls");
        for (int k = 0; k < d.D; k++) {
            double sb = 0;
            for (int t = 0; t < d.N; t++) {
                size_t i = ((size_t)t * d.H + h) * d.D + k;
                sb += d.R[i] * -A * sigmoid_d((double)d.a[i] + d.dt_bias[h * d.D + k]);
            }
            CHECK_NEAR(dtb[h * d.D + k], sb, 1e-5 * (1 + fabs(sb)), "threaded ddt_bias");
            CHECK(dtb[h * d.D + k] == dtb2[h * d.D + k], "ddt_bias differs between two identical calls");
        }
    }
}
