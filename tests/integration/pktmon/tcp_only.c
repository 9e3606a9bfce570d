/* tcp_only.c - pktmon style: TCP sockets only; anything else is rejected with the reason
 * 1 + proto (never 0: 0 would allow). The endpoint's answer to the last nopen the
 * monitor let through is kept by the optional pktlab_message_nopen_result callback in
 * pm[8] (the low byte of its errid) and reported by initialize() in the next session. */
#include "monitor_helper.h"
#include "pktlab.h"

#define NOT_TCP(proto) ((proto) == PKTLAB_TCP_PROTO ? 0 : 1 + (proto))

uint32_t initialize(void *info, void *persistent_memory, uint32_t persistent_memory_len) {
    ((uint8_t *)info)[0] = ((uint8_t *)persistent_memory)[8];
    return 1;
}

int32_t check_pktlab_message_nopen(uint8_t sktid, uint8_t family, uint8_t proto,
                                   uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                   uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                   const void *lportptr, const void *raddrptr,
                                   const void *rportptr, void *persistent_memory,
                                   uint32_t persistent_memory_len) {
    return NOT_TCP(proto);
}

void pktlab_message_nopen_result(uint8_t sktid, uint8_t family, uint8_t proto,
                                 uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                 uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                 const void *lportptr, const void *raddrptr,
                                 const void *rportptr, void *persistent_memory,
                                 uint32_t persistent_memory_len, enum pktlab_status errid) {
    ((uint8_t *)persistent_memory)[8] = (uint8_t)errid;
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
    return NOT_TCP(proto);
}

int32_t check_pktlab_message_ndata(uint8_t sktid, uint8_t family, uint8_t proto,
                                   pktlab_time_t time, uint8_t raddrlen, const void *raddrptr,
                                   uint8_t rportlen, const void *rportptr, uint32_t len,
                                   void *persistent_memory, uint32_t persistent_memory_len) {
    return NOT_TCP(proto);
}

int32_t check_pktlab_message_ncap(uint8_t sktid, uint8_t family, uint8_t proto,
                                  pktlab_time_t endtime, void *persistent_memory,
                                  uint32_t persistent_memory_len) {
    return NOT_TCP(proto);
}
