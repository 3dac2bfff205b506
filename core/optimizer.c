/* Learning-rate schedule, gradient clipping and AdamW over the parameter table. */
#include "optimizer.h"

#include <math.h>
#include <string.h>

double lr_at(const TrainConfig *t, int step) {
    if (step < t->warmup_steps) return t->lr * (step + 1) / t->warmup_steps;
    double lo = t->lr * t->lr_min_ratio;
    int span = t->steps - t->warmup_steps;
    double p = span > 1 ? (double)(step - t->warmup_steps) / (span - 1) : 1.0;
    if (p > 1.0) p = 1.0;
    if (strcmp(t->lr_schedule, "cosine") == 0) return lo + (t->lr - lo) * 0.5 * (1.0 + cos(M_PI * p));
    if (strcmp(t->lr_schedule, "linear") == 0) return t->lr - (t->lr - lo) * p;
    return t->lr;
}

double optimizer_step(ParamSet *ps, const TrainConfig *t, int step, double lr) {
    const Backend *be = ps->be;
    double norm = sqrt(be->sum_squares(ps->g, ps->total));
    if (!isfinite(norm)) return norm;
    float scale = t->grad_clip > 0 && norm > t->grad_clip ? (float)(t->grad_clip / norm) : 1.0f;
    for (int i = 0; i < ps->n; i++) {
        const ParamInfo *p = &ps->info[i];
        be->adamw(ps->w + p->offset, ps->g + p->offset, ps->m + p->offset, ps->v + p->offset, p->count, (float)lr,
                  (float)t->beta1, (float)t->beta2, (float)t->adam_eps, p->decay ? (float)t->weight_decay : 0.0f,
                  scale, step);
    }
    return norm;
}
