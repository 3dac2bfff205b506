/* One allocation per run for activations and scratch, carved into named slots. Modules first
 * declare what they need (arena_floats records where to put the pointer), then arena_bind
 * allocates once and fills every pointer: nothing is allocated inside a training step.
 * Scratch that is only live inside one layer's backward can be shared by all layers:
 * take a mark, declare a layer's scratch, rewind to the mark; the arena keeps the peak. */
#pragma once
#include <stddef.h>

#include "backend.h"

typedef struct {
    void *slot; /* address of the pointer to fill (a float ** or int **) */
    size_t offset;
} ArenaSlot;

typedef struct {
    ArenaSlot *slots;
    int n_slots, cap_slots;
    size_t top, peak; /* bytes */
    void *base;
    const Backend *be;
} Arena;

void arena_declare(Arena *a, void *slot, size_t bytes);
#define arena_floats(a, slot, count) arena_declare((a), (slot), sizeof(float) * (size_t)(count))
#define arena_ints(a, slot, count) arena_declare((a), (slot), sizeof(int) * (size_t)(count))
size_t arena_mark(const Arena *a);
void arena_rewind(Arena *a, size_t mark);
/* Allocates the peak size on the backend and resolves every declared slot. */
void arena_bind(Arena *a, const Backend *be);
void arena_free(Arena *a);
