/* `attnlab describe`: a model's layer table, parameters and decode cache. */
#pragma once
#include <stdio.h>

#include "core/config/config.h"

void describe_model(const Config *cfg, long context, FILE *out);
