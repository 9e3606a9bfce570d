/* allow_list.c - destinations from a list compiled into the module (the Marionette
 * paper's "top-1K sites" policy: generate ALLOWED from your list of site prefixes).
 * TCP connections, UDP datagrams and raw IPv4 packets may only go to these prefixes
 * (reason 1); IPv6 is refused (reason 2) unless you add an IPv6 list the same way.
 * Build: pktlab monitor build examples/monitors/allow_list.c -o allow_list.wasm */
#include "pktlab_monitor.h"

/* (network, prefix length); network in host byte order */
static const struct { uint32_t net; uint32_t len; } ALLOWED[] = {
    {0x7f000000u, 8},   /* 127.0.0.0/8 (loopback, for trying it out) */
    {0xc0000200u, 24},  /* 192.0.2.0/24 */
    {0xc6336400u, 24},  /* 198.51.100.0/24 */
};

static int allowed4(const uint8_t *a) {
    uint32_t ip = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    for (unsigned i = 0; i < sizeof ALLOWED / sizeof ALLOWED[0]; i++) {
        uint32_t mask = ALLOWED[i].len ? ~0u << (32 - ALLOWED[i].len) : 0;
        if ((ip & mask) == ALLOWED[i].net)
            return 1;
    }
    return 0;
}

static int32_t dest(uint32_t family, uint32_t alen, const uint8_t *a) {
    if (family != PKTLAB_IP4)
        return 2;
    return alen == 4 && a && allowed4(a) ? 0 : 1;
}

PKTLAB_CHECK_NOPEN {
    if (proto != PKTLAB_TCP || !raddr)
        return 0; /* UDP/raw sockets: checked per packet; a TCP listen has no peer */
    return dest(family, raddrlen, raddr);
}
PKTLAB_CHECK_NCLOSE { return 0; }
PKTLAB_CHECK_NSEND {
    if (proto == PKTLAB_UDP)
        return dest(family, raddrlen, raddr);
    if (proto == PKTLAB_RAW) { /* the IPv4 destination is in the packet's header */
        uint8_t hdr[20];
        if (family != PKTLAB_IP4 || len < 20)
            return 2;
        read_vmem_region(PKTLAB_CURPKT_DATA, hdr, sizeof hdr);
        return dest(family, 4, hdr + 16);
    }
    return 0; /* TCP: the connection was checked at nopen */
}
PKTLAB_CHECK_NDATA { return 0; }
PKTLAB_CHECK_NCAP { return 0; }
