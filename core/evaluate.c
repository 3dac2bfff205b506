/* Validation passes (see evaluate.h). */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

EvalResult evaluate(Model *m, Task *t, int B, int T, int max_batches) {
    long windows = t->ops->eval_windows(t, T);
    if (windows <= 0) die("the validation set has no window of %d tokens", T);
    if (B > windows) B = (int)windows; /* a small validation set: one batch of every window */
    /* a fixed held-out set is scored whole (a last, smaller batch takes the rest); a long text's
     * validation split up to max_batches full batches */
    long total = t->eval_every_window ? windows : (windows / B < max_batches ? windows / B : max_batches) * B;
    int prev_B = m->B, prev_T = m->T;
    model_reshape(m, B, T);
    int *inputs = xmalloc(sizeof(int) * (size_t)B * T), *targets = xmalloc(sizeof(int) * (size_t)B * T);
    double loss = 0;
    long n = 0, correct = 0;
    for (long first = 0; first < total; first += B) {
        int nb = total - first < B ? (int)(total - first) : B;
        if (nb != m->B) model_reshape(m, nb, T);
        for (int b = 0; b < nb; b++)
            t->ops->eval_window(t, first + b, T, inputs + (size_t)b * T, targets + (size_t)b * T);
        XentStats st = model_forward(m, inputs, targets, 0.0f);
        loss += st.loss_sum;
        n += st.n_targets;
        correct += st.n_correct;
    }
    free(inputs);
    free(targets);
    if (prev_B) model_reshape(m, prev_B, prev_T);
    EvalResult r;
    r.windows = total;
    r.targets = n;
    r.loss = n ? loss / n : NAN;
    r.accuracy = n ? (double)correct / n : NAN;
    r.perplexity = exp(r.loss);
    r.bits_per_byte = t->byte_tokens ? r.loss / log(2.0) : NAN;
    return r;
}
