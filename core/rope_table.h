/* Cosine and sine tables for rotary embeddings, shared by every layer that rotates the same
 * number of channels. Mixers request a table at build time; the model (re)fills the tables
 * whenever it is reshaped for a longer sequence. */
#pragma once
#include "backend.h"

typedef struct {
    int rot;       /* channels rotated (even) */
    int positions; /* rows the tables hold */
    float *cos, *sin; /* backend memory, [positions, rot / 2] */
    float *step_cos, *step_sin; /* backend memory, [rot / 2]: the row of a decode step (rope_cache_at) */
} RopeTable;

enum { ROPE_MAX_TABLES = 4 };

typedef struct {
    RopeTable tables[ROPE_MAX_TABLES];
    int n;
    double base;
    const Backend *be;
} RopeCache;

/* Returns the (stable) table for `rot` channels, creating an empty one if needed. */
const RopeTable *rope_cache_request(RopeCache *rc, int rot);
/* Makes every table cover positions [0, positions). */
void rope_cache_fill(RopeCache *rc, int positions);
/* Copies row pos of every table into its step row, for a decode step at pos: the step's rotation
 * then reads the same buffers at every position. */
void rope_cache_at(RopeCache *rc, long pos);
void rope_cache_free(RopeCache *rc);
