/* alloc_stress.c - pktmon style, a test of the malloc/free/realloc that pktmon mode links
 * in: check_pktlab_message_nopen runs `rbufsz` pseudo-random operations over 64 slots
 * (malloc, calloc, realloc, free of 1..6000 bytes), each live block filled with its own
 * byte and checked before it is freed or grown. It returns 0, or 2 when a block was
 * overwritten (overlapping blocks), 3 when calloc's memory was not zero, 9 when malloc
 * failed. Everything is freed at the end, so the next nopen starts from an empty heap. */
#include "monitor_helper.h"
#include "pktlab.h"
#include "stdlib.h"
#include "string.h"

#define SLOTS 64

static uint32_t seed = 12345;
static uint32_t next(void) {
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
}

static int intact(const uint8_t *p, uint32_t n, uint8_t v) {
    for (uint32_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

int32_t check_pktlab_message_nopen(uint8_t sktid, uint8_t family, uint8_t proto,
                                   uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                   uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                   const void *lportptr, const void *raddrptr,
                                   const void *rportptr, void *persistent_memory,
                                   uint32_t persistent_memory_len) {
    uint8_t *ptr[SLOTS] = {0};
    uint32_t len[SLOTS] = {0};
    int32_t rv = 0;
    for (uint32_t op = 0; op < rbufsz && rv == 0; op++) {
        uint32_t s = next() % SLOTS, n = 1 + next() % 6000;
        uint8_t v = (uint8_t)(s + 1);
        if (ptr[s] && !intact(ptr[s], len[s], v)) {
            rv = 2;
        } else if (ptr[s] && next() % 2) {
            free(ptr[s]);
            ptr[s] = 0;
        } else if (ptr[s]) {
            uint8_t *q = realloc(ptr[s], n);
            if (!q) {
                rv = 9;
            } else {
                if (!intact(q, len[s] < n ? len[s] : n, v))
                    rv = 2;
                memset(q, v, n);
                ptr[s] = q;
                len[s] = n;
            }
        } else {
            uint8_t *q = next() % 2 ? malloc(n) : calloc(n, 1);
            if (!q) {
                rv = 9;
            } else {
                ptr[s] = q;
                len[s] = n;
                memset(q, v, n);
            }
        }
    }
    for (int s = 0; s < SLOTS; s++) {
        if (ptr[s] && rv == 0 && !intact(ptr[s], len[s], (uint8_t)(s + 1)))
            rv = 2;
        free(ptr[s]);
    }
    /* after freeing everything, calloc must hand back zeroed memory that was dirty */
    uint8_t *z = calloc(50000, 1);
    if (!z)
        return rv ? rv : 9;
    if (rv == 0 && !intact(z, 50000, 0))
        rv = 3;
    free(z);
    return rv;
}
