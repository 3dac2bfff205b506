/* Whether a finished run learned its task: a run that did not is marked in its summary and in a
 * sweep's tables, and never ranked (core/lab/sweep_select.c). */
#pragma once
#include <stddef.h>

#include "core/config/config.h"
#include "core/io/results.h"
#include "core/task.h"

/* A task on which a model that learned nothing still gets some answers right is judged against
 * what such a model scores:
 * - scored by a share of answers right in full (TaskOps.answer_share_metric, needle): learned
 *   from LEARNED_ANSWER_SHARE on;
 * - scored on answers (mqar, palindrome, stack): a final validation accuracy above
 *   LEARNED_CHANCE_FACTOR times chance (a uniform guess over the answer alphabet) and at least
 *   LEARNED_ACCURACY_FLOOR. The floor matters where chance is tiny: at 4,096 answers, 7 right of
 *   8,192 is twice chance, and a model on the ln 4096 plateau (the delta-rule MQAR plateau of
 *   synthetic-t256) scores that now and then. The loss cannot stand in for the floor: a model
 *   that answers a quarter right, overconfident in the rest, can have a loss above ln 4096
 *   (mqar-zoology-t64);
 * - scored by loss alone (lm): a final validation loss below LEARNED_PLATEAU_FRACTION times its
 *   first plateau (the entropy of the held-out tokens' own frequencies, below which only a model
 *   that uses context can go).
 * Returns LEARNED_NOT_JUDGED when the task gives none of these or the numbers are missing; writes
 * the reason (one line) into reason otherwise. `task` may be NULL for a task without plateau_loss. */
Learned learned_judge(const Summary *s, const TaskOps *ops, const Config *cfg, const Task *task, char *reason,
                      size_t len);

enum { LEARNED_CHANCE_FACTOR = 2, LEARNED_REASON_LEN = 320 /* room for the reason */ };
#define LEARNED_ACCURACY_FLOOR 0.01
#define LEARNED_PLATEAU_FRACTION 0.95
