/* Validation passes (see evaluate.h). */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

EvalSums evaluate_share(Model *m, Task *t, int B, int T, int max_batches, int rank, int world) {
    long windows = t->ops->eval_windows(t, T);
    if (windows <= 0) die("the validation set has no window of %d tokens", T);
    if (B > windows) B = (int)windows; /* a small validation set: one batch of every window */
    /* a fixed held-out set is scored whole (a last, smaller batch takes the rest); a long text's
     * validation split up to max_batches full batches */
    long total = t->eval_every_window ? windows : (windows / B < max_batches ? windows / B : max_batches) * B;
    int share = (B + world - 1) / world; /* this rank's batch */
    ModelShape before = model_shape(m);
    model_reshape_forward(m, share, T);
    int *inputs = xmalloc(sizeof(int) * (size_t)share * T), *targets = xmalloc(sizeof(int) * (size_t)share * T);
    EvalSums s = {0};
    for (long first = (long)rank * share; first < total; first += (long)world * share) {
        int nb = total - first < share ? (int)(total - first) : share;
        if (nb != m->B) model_reshape_forward(m, nb, T);
        for (int b = 0; b < nb; b++)
            t->ops->eval_window(t, first + b, T, inputs + (size_t)b * T, targets + (size_t)b * T);
        XentStats st = model_forward(m, inputs, targets, 0.0f);
        s.loss_sum += st.loss_sum;
        s.targets += (double)st.n_targets;
        s.correct += (double)st.n_correct;
        s.windows += nb;
    }
    free(inputs);
    free(targets);
    model_restore_shape(m, before);
    return s;
}

EvalResult eval_result(const EvalSums *s, bool byte_tokens) {
    EvalResult r;
    r.windows = (long)s->windows;
    r.targets = (long)s->targets;
    r.loss = s->targets > 0 ? s->loss_sum / s->targets : NAN;
    r.accuracy = s->targets > 0 ? s->correct / s->targets : NAN;
    r.perplexity = exp(r.loss);
    r.bits_per_byte = byte_tokens ? r.loss / log(2.0) : NAN;
    return r;
}

EvalResult evaluate(Model *m, Task *t, int B, int T, int max_batches) {
    EvalSums s = evaluate_share(m, t, B, T, max_batches, 0, 1);
    return eval_result(&s, t->byte_tokens);
}
