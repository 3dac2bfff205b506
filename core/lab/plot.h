/* `attnlab plot`: every figure an experiment's results support (see plot.c). */
#pragma once

/* where: an experiment name (results/<name>) or a path to its folder. Returns the exit status. */
int plot_experiment(const char *where);
