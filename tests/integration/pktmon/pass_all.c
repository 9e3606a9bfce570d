/* pass_all.c - pktmon style: allows everything. Each check also allocates and frees a
 * buffer of a size that varies with the message (the allocation pattern of monitors built
 * against wasi-libc), formats a debug line with snprintf, and returns 9 if malloc fails:
 * a long session must never run out of memory. */
#include "monitor_helper.h"
#include "pktlab.h"
#include "stdlib.h"
#include "string.h"

static int32_t churn(uint32_t n) {
    char *a = malloc(n), *b = calloc(1, n / 2 + 1);
    if (!a || !b)
        return 9;
    memset(a, 'x', n);
    a = realloc(a, n + 100);
    if (!a)
        return 9;
    free(b);
    free(a);
    return 0;
}

int32_t check_pktlab_message_nopen(uint8_t sktid, uint8_t family, uint8_t proto,
                                   uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                   uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                   const void *lportptr, const void *raddrptr,
                                   const void *rportptr, void *persistent_memory,
                                   uint32_t persistent_memory_len) {
    debug("nopen sktid=%u proto=%#x rbufsz=%lu %-4s|%05d|%s", sktid, proto,
          (unsigned long)rbufsz, "ok", -42, family == PKTLAB_IP4_PROTO ? "v4" : "v6");
    return churn(rbufsz);
}

int32_t check_pktlab_message_nclose(uint8_t sktid, void *persistent_memory,
                                    uint32_t persistent_memory_len) {
    return 0;
}

int32_t check_pktlab_message_nsend(uint8_t sktid, uint8_t family, uint8_t proto,
                                   pktlab_time_t time, uint16_t tag, uint8_t raddrlen,
                                   const void *raddrptr, uint8_t rportlen,
                                   const void *rportptr, uint32_t len,
                                   void *persistent_memory, uint32_t persistent_memory_len) {
    return churn(len * 1000u + tag * 8u);
}

int32_t check_pktlab_message_ndata(uint8_t sktid, uint8_t family, uint8_t proto,
                                   pktlab_time_t time, uint8_t raddrlen, const void *raddrptr,
                                   uint8_t rportlen, const void *rportptr, uint32_t len,
                                   void *persistent_memory, uint32_t persistent_memory_len) {
    return churn(len * 500u);
}

int32_t check_pktlab_message_ncap(uint8_t sktid, uint8_t family, uint8_t proto,
                                  pktlab_time_t endtime, void *persistent_memory,
                                  uint32_t persistent_memory_len) {
    return 0;
}
