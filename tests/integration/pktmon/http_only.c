/* http_only.c - pktmon style: TCP only, and a TCP payload must look like HTTP: a request
 * line starting with a known method followed by a space (nsend), or a status line
 * starting "HTTP/" (ndata). The payload is read through read_vmem_region from
 * PKTLAB_VMEMADDR_CURPKT_DATA into a malloc'd buffer (freed again: the host's malloc). */
#include "monitor_helper.h"
#include "pktlab.h"
#include "stdlib.h"
#include "string.h"

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"};

/* the first n (<= len) payload bytes, NUL-terminated, in a fresh buffer; 0 on failure */
static char *payload(uint32_t len, uint32_t n) {
    if (n > len)
        n = len;
    char *buf = malloc(n + 1);
    if (!buf)
        return 0;
    if (read_vmem_region(PKTLAB_VMEMADDR_CURPKT_DATA, buf, n) != 0) {
        free(buf);
        return 0;
    }
    buf[n] = 0;
    return buf;
}

int32_t check_pktlab_message_nopen(uint8_t sktid, uint8_t family, uint8_t proto,
                                   uint32_t rbufsz, uint8_t laddrlen, uint8_t lportlen,
                                   uint8_t raddrlen, uint8_t rportlen, const void *laddrptr,
                                   const void *lportptr, const void *raddrptr,
                                   const void *rportptr, void *persistent_memory,
                                   uint32_t persistent_memory_len) {
    if (proto != PKTLAB_TCP_PROTO)
        return 1 + proto;
    /* the remote port, network order, through the pointer the host placed */
    return rportlen == 2 && pktlab_get16(rportptr) == 80 ? 0 : 2;
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
    if (proto != PKTLAB_TCP_PROTO)
        return 1 + proto;
    char *line = payload(len, 8);
    if (!line)
        return -1;
    int32_t rv = 3;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        size_t n = strlen(methods[i]);
        if (strncmp(line, methods[i], n) == 0 && line[n] == ' ')
            rv = 0;
    }
    free(line);
    return rv;
}

int32_t check_pktlab_message_ndata(uint8_t sktid, uint8_t family, uint8_t proto,
                                   pktlab_time_t time, uint8_t raddrlen, const void *raddrptr,
                                   uint8_t rportlen, const void *rportptr, uint32_t len,
                                   void *persistent_memory, uint32_t persistent_memory_len) {
    if (proto != PKTLAB_TCP_PROTO)
        return 1 + proto;
    char *line = payload(len, 5);
    if (!line)
        return -1;
    int32_t rv = memcmp(line, "HTTP/", 5) == 0 ? 0 : 4;
    free(line);
    return rv;
}

int32_t check_pktlab_message_ncap(uint8_t sktid, uint8_t family, uint8_t proto,
                                  pktlab_time_t endtime, void *persistent_memory,
                                  uint32_t persistent_memory_len) {
    return 1 + proto; /* no captures */
}
