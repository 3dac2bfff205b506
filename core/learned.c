#include "core/learned.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double metric_value(const Summary *s, const char *name) {
    for (int i = 0; name && i < s->n_metrics; i++)
        if (strcmp(s->metric_names[i], name) == 0) return s->metric_values[i];
    return NAN;
}

Learned learned_judge(const Summary *s, const TaskOps *ops, const Config *cfg, const Task *task, char *reason,
                      size_t len) {
    double share = metric_value(s, ops->answer_share_metric);
    if (isfinite(share)) {
        bool yes = share >= LEARNED_ANSWER_SHARE;
        snprintf(reason, len, "%s %.4f is %s %g, half the answers right in full", ops->answer_share_metric, share,
                 yes ? "at least" : "below", LEARNED_ANSWER_SHARE);
        return yes ? LEARNED_YES : LEARNED_NO;
    }
    if (ops->chance_accuracy && isfinite(s->val_accuracy)) {
        double chance = ops->chance_accuracy(cfg), bar = fmax(LEARNED_CHANCE_FACTOR * chance, LEARNED_ACCURACY_FLOOR);
        bool yes = s->val_accuracy > bar;
        snprintf(reason, len,
                 "val accuracy %.4f is %s %.4g, the larger of %d x the chance of a uniform guess over %.0f answers "
                 "and %g",
                 s->val_accuracy, yes ? "above" : "not above", bar, LEARNED_CHANCE_FACTOR, 1 / chance,
                 LEARNED_ACCURACY_FLOOR);
        return yes ? LEARNED_YES : LEARNED_NO;
    }
    if (ops->plateau_loss && task && isfinite(s->val_loss)) {
        double plateau = ops->plateau_loss(task), bar = LEARNED_PLATEAU_FRACTION * plateau;
        bool yes = s->val_loss < bar;
        snprintf(reason, len,
                 "val loss %.4f is %s %.2f x %.4f, the unigram entropy of the held-out tokens (the first plateau)",
                 s->val_loss, yes ? "below" : "not below", LEARNED_PLATEAU_FRACTION, plateau);
        return yes ? LEARNED_YES : LEARNED_NO;
    }
    return LEARNED_NOT_JUDGED;
}
