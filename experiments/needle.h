/* needle (needle.c): RULER's needle in a haystack over data.path's text. */
#pragma once
#include <stdbool.h>

/* Whether every scored position of a sequence (targets[p] >= 0, T positions) has its target as
 * the argmax of its row of logits [T, V]: the answer greedy decoding would write (ties go to the
 * lower token). */
bool needle_answer_is_argmax(const float *logits, const int *targets, int T, int V);
