/* tcp_only.c - experiments may use TCP only: UDP and raw sockets cannot be opened
 * (reason 1) and nothing but TCP may be sent (reason 2) or captured (reason 3).
 * Build: pktlab monitor build examples/monitors/tcp_only.c -o tcp_only.wasm */
#include "pktlab_monitor.h"

PKTLAB_CHECK_NOPEN { return proto == PKTLAB_TCP ? 0 : 1; }
PKTLAB_CHECK_NCLOSE { return 0; }
PKTLAB_CHECK_NSEND { return proto == PKTLAB_TCP ? 0 : 2; }
PKTLAB_CHECK_NDATA { return 0; }
PKTLAB_CHECK_NCAP { return 3; }
