/* What a backend's allocations hold: bytes now and at most, kept by each backend's alloc and
 * release, for `bench train`'s peak memory (comparable to PyTorch's max_memory_allocated: the
 * tensors' memory, not the libraries' own workspaces or the CUDA context). */
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    struct LedgerEntry *entries; /* the live allocations */
    size_t n, cap;
    size_t bytes, peak;
} MemoryLedger;

void ledger_add(MemoryLedger *l, const void *p, size_t bytes);
/* forgets p (a pointer it never saw is ignored) */
void ledger_remove(MemoryLedger *l, const void *p);

#ifdef __cplusplus
}
#endif
