/* efficiency: a task that measures instead of training: prefill time, decode time per token and
 * decode cache bytes against context length, for any model config (core/bench/efficiency.c). */
#include "core/bench/efficiency.h"
#include "core/task.h"

const TaskOps task_efficiency = {
    .name = "efficiency",
    .check = efficiency_check,
    .measure = efficiency_run,
    .result_file = "efficiency.csv",
};
