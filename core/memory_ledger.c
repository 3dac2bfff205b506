#include "memory_ledger.h"

#include "util.h"

struct LedgerEntry {
    const void *p;
    size_t bytes;
};

void ledger_add(MemoryLedger *l, const void *p, size_t bytes) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->entries = xrealloc(l->entries, sizeof(struct LedgerEntry) * l->cap);
    }
    l->entries[l->n++] = (struct LedgerEntry){p, bytes};
    l->bytes += bytes;
    if (l->bytes > l->peak) l->peak = l->bytes;
}

void ledger_remove(MemoryLedger *l, const void *p) {
    for (size_t i = l->n; i-- > 0;) /* the newest first: scratch is released soon after it is made */
        if (l->entries[i].p == p) {
            l->bytes -= l->entries[i].bytes;
            l->entries[i] = l->entries[--l->n];
            return;
        }
}
