/* raw_limit.c - pktmon style (monitor_helper.h, pktlab.h, plain exported functions):
 * at most RAW_LIMIT raw-socket nsends per endpoint, ever. The count is a uint32_t at the
 * start of the persistent memory, so it carries over sessions and endpoint restarts;
 * initialize() reports it. Everything else is allowed. */
#include "monitor_helper.h"
#include "pktlab.h"
#include "string.h"

#define RAW_LIMIT 10

uint32_t initialize(void *info, void *persistent_memory, uint32_t persistent_memory_len) {
    memcpy(info, persistent_memory, sizeof(uint32_t));
    return sizeof(uint32_t);
}

int32_t check_pktlab_message_nopen(uint8_t sktid, uint8_t family, uint8_t proto,
                                   uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                   uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                   const void *lportptr, const void *raddrptr,
                                   const void *rportptr, void *persistent_memory,
                                   uint32_t persistent_memory_len) {
    return 0;
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
    if (proto != PKTLAB_RAW_PROTO)
        return 0;
    uint32_t count;
    memcpy(&count, persistent_memory, sizeof count);
    if (count >= RAW_LIMIT)
        return (int32_t)count;
    count++;
    memcpy(persistent_memory, &count, sizeof count);
    debug("raw nsend %u of %d", count, RAW_LIMIT);
    return persistent_memory_flush() == 0 ? 0 : 60000;
}

int32_t check_pktlab_message_ndata(uint8_t sktid, uint8_t family, uint8_t proto,
                                   pktlab_time_t time, uint8_t raddrlen, const void *raddrptr,
                                   uint8_t rportlen, const void *rportptr, uint32_t len,
                                   void *persistent_memory, uint32_t persistent_memory_len) {
    return 0;
}

int32_t check_pktlab_message_ncap(uint8_t sktid, uint8_t family, uint8_t proto,
                                  pktlab_time_t endtime, void *persistent_memory,
                                  uint32_t persistent_memory_len) {
    return 0;
}
