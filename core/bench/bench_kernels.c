/* `attnlab bench kernels`: forward and forward+backward time of each mixer's core (the registry's
 * mixers with an op core) on random inputs of a given shape, the chunkwise against the recurrent
 * form, as a table and a CSV file. Medians over repeated runs after a warm-up run. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/mixer.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"

typedef struct {
    const char *core, *form; /* the mixer whose core it is; chunk, recurrent or flash */
    OpCore kind;
    int chunk;
} KernelCase;

/* every mixer's core: a linear-time one in its chunkwise form, then its recurrent form */
static int kernel_cases(KernelCase *cases, int cap) {
    int n = 0;
    for (int i = 0; i < mixer_count() && n + 2 <= cap; i++) {
        const MixerOps *ops = mixer_at(i);
        if (ops->op_core == OP_CORE_NONE) continue;
        if (ops->op_core == OP_CORE_SOFTMAX) {
            cases[n++] = (KernelCase){ops->name, "flash", ops->op_core, 0};
        } else {
            cases[n++] = (KernelCase){ops->name, "chunk", ops->op_core, 64};
            cases[n++] = (KernelCase){ops->name, "recurrent", ops->op_core, 0};
        }
    }
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *random_buffer(const Backend *be, size_t n, float scale, float offset, Rng *rng) {
    float *h = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) h[i] = offset + scale * (float)rng_normal(rng);
    float *d = be->alloc(sizeof(float) * n);
    be->upload(d, h, sizeof(float) * n);
    free(h);
    return d;
}

/* Nominal forward FLOPs, the same for both forms so times compare directly: the recurrence's
 * decay, read, write and output over the K x V state per token and head (4 K V multiply-adds; dplr
 * 5: its read through a, a decay, two writes, the output), and causal attention's two products
 * over the visible keys (2 T^2 D multiply-adds per head, halved). */
static double nominal_flops(OpCore kind, const KernelShape *s) {
    double tokens = (double)s->B * s->T * s->H, D = s->D;
    if (kind == OP_CORE_SOFTMAX) return 2.0 * 2.0 * D * (s->T + 1) / 2.0 * tokens;
    if (kind == OP_CORE_LINEAR) return 2.0 * 2.0 * D * D * tokens;
    if (kind == OP_CORE_DPLR) return 2.0 * 5.0 * D * D * tokens;
    return 2.0 * 4.0 * D * D * tokens;
}

/* Times one case: medians of the forward and of forward + backward, in milliseconds. */
static void time_case(const Backend *be, const KernelCase *kc, const KernelShape *sh, int reps, double *fwd_ms,
                      double *fwdbwd_ms) {
    Rng rng;
    rng_seed(&rng, 7);
    int B = sh->B, T = sh->T, H = sh->H, D = sh->D;
    size_t n = (size_t)B * T * H * D, nh = (size_t)B * T * H;
    bool dplr = kc->kind == OP_CORE_DPLR;
    bool channel = kc->kind == OP_CORE_DELTA_CHANNEL_GATE, delta = channel || kc->kind == OP_CORE_DELTA_HEAD_GATE;
    float *q = random_buffer(be, n, 0.125f, 0, &rng), *k = random_buffer(be, n, 0.125f, 0, &rng);
    float *v = random_buffer(be, n, 1.0f, 0, &rng), *o = be->alloc(sizeof(float) * n), *d_o = random_buffer(be, n, 1.0f, 0, &rng);
    float *dq = be->alloc(sizeof(float) * n), *dk = be->alloc(sizeof(float) * n), *dv = be->alloc(sizeof(float) * n);
    float *g = NULL, *beta = NULL, *dg = NULL, *dbeta = NULL, *saved = NULL, *lse = NULL, *work = NULL;
    void *att_saved = NULL;
    float *a = NULL, *bw = NULL, *da = NULL, *db = NULL;
    ScanShape ss = {B, T, H, D, D, 1.0f / sqrtf((float)D), kc->chunk, channel || dplr};
    AttnShape as = {.B = B, .T = T, .H = H, .Hkv = H, .Dk = D, .Dv = D,
                    .q_stride = (long)H * D, .k_stride = (long)H * D, .v_stride = (long)H * D, .o_stride = (long)H * D,
                    .scale = 1.0f / sqrtf((float)D)};
    if (delta) {
        size_t ng = channel ? n : nh;
        g = random_buffer(be, ng, 0.02f, -0.05f, &rng); /* mild decays; their values do not change the work */
        beta = random_buffer(be, nh, 0.0f, 0.5f, &rng);
        dg = be->alloc(sizeof(float) * ng);
        dbeta = be->alloc(sizeof(float) * nh);
        saved = be->alloc(sizeof(float) * be->delta_rule_saved(&ss));
        work = be->alloc(be->delta_rule_workspace(&ss));
    } else if (dplr) { /* kda-like vectors: a read gate near exp(g) on k, a write of -0.5 k */
        g = random_buffer(be, n, 0.02f, -0.05f, &rng);
        a = random_buffer(be, n, 0.125f, 0, &rng);
        bw = random_buffer(be, n, 0.0625f, 0, &rng);
        dg = be->alloc(sizeof(float) * n);
        da = be->alloc(sizeof(float) * n);
        db = be->alloc(sizeof(float) * n);
        saved = be->alloc(sizeof(float) * be->dplr_saved(&ss));
        work = be->alloc(be->dplr_workspace(&ss));
    } else if (kc->kind == OP_CORE_LINEAR) {
        saved = be->alloc(sizeof(float) * be->linear_attn_saved(&ss));
        work = be->alloc(be->linear_attn_workspace(&ss));
    } else {
        lse = be->alloc(sizeof(float) * nh);
        att_saved = be->alloc(be->attention_saved(&as));
        work = be->alloc(be->attention_workspace(&as));
    }
    double *tf = xmalloc(sizeof(double) * (size_t)reps), *tb = xmalloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) { /* r = -1 warms up */
        be->sync();
        double t0 = now_seconds();
        if (delta) be->delta_rule_forward(&ss, o, NULL, saved, q, k, v, g, beta, NULL, work);
        else if (dplr) be->dplr_forward(&ss, o, NULL, saved, q, k, v, a, bw, g, NULL, work);
        else if (saved) be->linear_attn_forward(&ss, o, NULL, saved, q, k, v, NULL, work);
        else be->attention_forward(&as, o, lse, att_saved, q, k, NULL, v, work);
        be->sync();
        double t1 = now_seconds();
        if (delta) be->delta_rule_backward(&ss, dq, dk, dv, dg, dbeta, NULL, NULL, d_o, q, k, v, g, beta, saved, work);
        else if (dplr) be->dplr_backward(&ss, dq, dk, dv, da, db, dg, NULL, NULL, d_o, q, k, v, a, bw, g, saved, work);
        else if (saved) be->linear_attn_backward(&ss, dq, dk, dv, NULL, NULL, d_o, q, k, v, saved, work);
        else be->attention_backward(&as, dq, dk, NULL, dv, d_o, q, k, NULL, v, o, lse, att_saved, work);
        be->sync();
        double t2 = now_seconds();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t0;
        }
    }
    qsort(tf, (size_t)reps, sizeof(double), cmp_double);
    qsort(tb, (size_t)reps, sizeof(double), cmp_double);
    *fwd_ms = 1e3 * tf[reps / 2];
    *fwdbwd_ms = 1e3 * tb[reps / 2];
    void *bufs[] = {q, k, v, o, d_o, dq, dk, dv, g, beta, dg, dbeta, a, bw, da, db, saved, lse, att_saved, work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->release(bufs[i]);
    free(tf);
    free(tb);
}

int bench_kernels(const Backend *be, const KernelShape *shapes, int n_shapes, int reps, const char *only,
                  const char *csv_path) {
    FILE *csv = NULL;
    if (csv_path) {
        char *dir = path_dirname(csv_path);
        Error err;
        if (!mkdir_p(dir, &err)) die("%s", err.msg);
        free(dir);
        csv = fopen(csv_path, "w");
        if (!csv) die("cannot write '%s'", csv_path);
        fprintf(csv, "device,core,form,B,T,H,D,fwd_ms,fwd_bwd_ms,fwd_gflops,fwd_bwd_gflops,speedup_vs_recurrent\n");
    }
    printf("bench kernels on %s (median of %d runs; GFLOP/s from nominal FLOPs: 4 K V multiply-adds per\n"
           "token-head for the delta rule, 5 K V for dplr, 2 K V for linear attention, causal 2 T D for\n"
           "softmax; backward = 2x)\n",
           be->name, reps);
    if (strcmp(be->name, "cpu") == 0) printf("CPU threads: %d\n", backend_threads());
    else printf("softmax attention on %s kernels (GPU of compute capability %d)\n", backend_cuda_attention_kernels(),
                backend_cuda_compute_capability());
    printf("%-8s %-10s %-22s %10s %12s %10s %12s %10s\n", "core", "form", "B,T,H,D", "fwd ms", "fwd+bwd ms", "fwd GF/s",
           "f+b GF/s", "vs recur.");
    KernelCase cases[2 * MIXERS_MAX];
    int n_cases = kernel_cases(cases, 2 * MIXERS_MAX);
    for (int si = 0; si < n_shapes; si++) {
        const KernelShape *sh = &shapes[si];
        double recurrent_fb = NAN;
        for (int ci = 0; ci < n_cases; ci++) {
            const KernelCase *kc = &cases[ci];
            if (only && strcmp(only, kc->core) != 0) continue;
            /* the recurrent row of a core comes right after its chunk row: time it first */
            double f, fb;
            if (strcmp(kc->form, "chunk") == 0) {
                double rf, rfb;
                time_case(be, &cases[ci + 1], sh, reps, &rf, &rfb);
                recurrent_fb = rfb;
                time_case(be, kc, sh, reps, &f, &fb);
                double flops = nominal_flops(kc->kind, sh);
                char shape[48];
                snprintf(shape, sizeof shape, "%d,%d,%d,%d", sh->B, sh->T, sh->H, sh->D);
                printf("%-8s %-10s %-22s %10.2f %12.2f %10.1f %12.1f %9.2fx\n", kc->core, kc->form, shape, f, fb,
                       flops / f / 1e6, 3 * flops / fb / 1e6, recurrent_fb / fb);
                printf("%-8s %-10s %-22s %10.2f %12.2f %10.1f %12.1f %10s\n", kc->core, "recurrent", shape, rf, rfb,
                       flops / rf / 1e6, 3 * flops / rfb / 1e6, "1.00x");
                if (csv) {
                    fprintf(csv, "%s,%s,chunk%d,%d,%d,%d,%d,%.4f,%.4f,%.2f,%.2f,%.3f\n", be->name, kc->core, kc->chunk, sh->B,
                            sh->T, sh->H, sh->D, f, fb, flops / f / 1e6, 3 * flops / fb / 1e6, recurrent_fb / fb);
                    fprintf(csv, "%s,%s,recurrent,%d,%d,%d,%d,%.4f,%.4f,%.2f,%.2f,1\n", be->name, kc->core, sh->B, sh->T,
                            sh->H, sh->D, rf, rfb, flops / rf / 1e6, 3 * flops / rfb / 1e6);
                }
                ci++; /* the recurrent row is done */
                continue;
            }
            time_case(be, kc, sh, reps, &f, &fb);
            double flops = nominal_flops(kc->kind, sh);
            char shape[48];
            snprintf(shape, sizeof shape, "%d,%d,%d,%d", sh->B, sh->T, sh->H, sh->D);
            printf("%-8s %-10s %-22s %10.2f %12.2f %10.1f %12.1f %10s\n", kc->core, kc->form, shape, f, fb,
                   flops / f / 1e6, 3 * flops / fb / 1e6, "");
            if (csv)
                fprintf(csv, "%s,%s,%s,%d,%d,%d,%d,%.4f,%.4f,%.2f,%.2f,\n", be->name, kc->core, kc->form, sh->B, sh->T, sh->H,
                        sh->D, f, fb, flops / f / 1e6, 3 * flops / fb / 1e6);
        }
    }
    if (csv) {
        fclose(csv);
        printf("wrote %s\n", csv_path);
    }
    return 0;
}
