/* The registry of tasks, looked up by the name used in configs (field `task`). */
#include <stddef.h>
#include <string.h>

#include "core/task.h"

extern const TaskOps task_lm, task_mqar, task_palindrome, task_stack, task_needle, task_efficiency;

static const TaskOps *const registry[] = {
    &task_lm, &task_mqar, &task_palindrome, &task_stack, &task_needle, &task_efficiency,
};

const TaskOps *task_lookup(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

double task_chance_accuracy(const Config *c) {
    const TaskOps *ops = task_lookup(c->task);
    return ops && ops->chance_accuracy ? ops->chance_accuracy(c) : 0;
}

Task *task_create(const Config *c, Error *err) {
    const TaskOps *ops = task_lookup(c->task);
    if (!ops) {
        error_set(err, "task: unknown task '%s'", c->task);
        return NULL;
    }
    Task *t = ops->create(c, err);
    if (t) t->ops = ops;
    return t;
}
