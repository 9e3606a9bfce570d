/* icmp_rate_limit.c - at most LIMIT ICMP echo requests per second from raw sockets
 * (reason 1 above it), with the total count kept in persistent memory across
 * sessions (flushed every 100 echo requests and at session end). initialize() reports
 * the total so far as 8 bytes (little-endian) of linfo.
 * Build: pktlab monitor build examples/monitors/icmp_rate_limit.c -o icmp_rate_limit.wasm */
#include "pktlab_monitor.h"

#define LIMIT 10u
#define SECOND 1000000000ull

struct state {          /* the first bytes of the 256 persistent ones */
    uint64_t total;     /* echo requests allowed, ever */
    uint64_t window;    /* start of the current one-second window, ns */
    uint32_t in_window; /* echo requests allowed in it */
};

static uint64_t now_ns(void) {
    uint8_t b[8];
    uint64_t t = 0;
    read_vmem_region(PKTLAB_SYS_TIME, b, 8); /* big-endian, like all of vmem */
    for (int i = 0; i < 8; i++)
        t = t << 8 | b[i];
    return t;
}

PKTLAB_INITIALIZE {
    struct state *s = (struct state *)pm;
    uint64_t t = s->total;
    for (int i = 0; i < 8; i++)
        info[i] = (uint8_t)(t >> (8 * i));
    return 8;
}

PKTLAB_CHECK_NOPEN { return 0; }
PKTLAB_CHECK_NCLOSE { return 0; }
PKTLAB_CHECK_NSEND {
    uint8_t h[24];
    if (proto != PKTLAB_RAW || family != PKTLAB_IP4 || len < 21)
        return 0;
    read_vmem_region(PKTLAB_CURPKT_DATA, h, sizeof h);
    uint32_t ihl = (h[0] & 0x0fu) * 4u;
    if (h[9] != 1 || ihl < 20 || len <= ihl)
        return 0; /* not ICMP */
    uint8_t type;
    read_vmem_region(PKTLAB_CURPKT_DATA + ihl, &type, 1);
    if (type != 8)
        return 0; /* not an echo request */
    struct state *s = (struct state *)pm;
    uint64_t t = time > now_ns() ? time : now_ns(); /* when it will be sent */
    if (t - s->window >= SECOND) {
        s->window = t;
        s->in_window = 0;
    }
    if (s->in_window >= LIMIT)
        return 1;
    s->in_window++;
    if (++s->total % 100 == 0)
        persistent_memory_flush();
    return 0;
}
PKTLAB_CHECK_NDATA { return 0; }
PKTLAB_CHECK_NCAP { return 0; }
