/* http_only.c - web measurements only: TCP connections to port 80 or 443 (reason 1 for
 * any other nopen); everything else that is not on such a socket is refused (reason 2).
 * Build: pktlab monitor build examples/monitors/http_only.c -o http_only.wasm */
#include "pktlab_monitor.h"

PKTLAB_CHECK_NOPEN {
    if (proto != PKTLAB_TCP || rportlen != 2 || !rport)
        return 1; /* UDP, raw, or a TCP listen */
    uint16_t port = pktlab_port(rport);
    return port == 80 || port == 443 ? 0 : 1;
}
PKTLAB_CHECK_NCLOSE { return 0; }
PKTLAB_CHECK_NSEND { return proto == PKTLAB_TCP ? 0 : 2; }
PKTLAB_CHECK_NDATA { return 0; }
PKTLAB_CHECK_NCAP { return 2; }
