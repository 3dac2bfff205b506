/* Evaluation on a task's fixed validation windows: mean loss per target, accuracy of the argmax
 * prediction at the targets, and for byte tokens bits per byte and perplexity. */
#pragma once
#include "model.h"
#include "task.h"

typedef struct {
    double loss, accuracy, bits_per_byte, perplexity; /* bits_per_byte is NAN unless byte tokens */
    long targets, windows;
} EvalResult;

/* What one rank's share of the windows adds up to; summed over ranks, then eval_result. */
typedef struct {
    double loss_sum, targets, correct, windows;
} EvalSums;

/* Runs up to max_batches batches of at most B windows of T tokens, or every window of a task
 * whose held-out set is fixed (eval_every_window); the model is reshaped to the evaluation batch
 * (its buffers are reused when they fit). Dies if the task has no window. */
EvalResult evaluate(Model *m, Task *t, int B, int T, int max_batches);
/* The same windows shared by `world` ranks: rank r scores every world-th batch of B / world
 * (rounded up) windows. */
EvalSums evaluate_share(Model *m, Task *t, int B, int T, int max_batches, int rank, int world);
EvalResult eval_result(const EvalSums *s, bool byte_tokens);
