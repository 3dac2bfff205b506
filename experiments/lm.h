/* What other tasks built on lm's text (needle) use of it. */
#pragma once
#include "core/io/data.h"
#include "core/task.h"

/* The training and held-out tokens of an lm task (task_lm.create's result). */
extern const TaskOps task_lm;

const Dataset *lm_task_data(const Task *lm);
