/* payload_check.c - reads what is sent (CURPKT_DATA): an nsend whose payload contains
 * the bytes "forbidden" is refused (reason 7), and received data containing them is
 * blocked (nblock 7). Shows reading a payload in chunks through read_vmem_region.
 * Build: pktlab monitor build examples/monitors/payload_check.c -o payload_check.wasm */
#include "pktlab_monitor.h"

static const char WORD[] = "forbidden";
#define WLEN (sizeof WORD - 1)
#define CHUNK 1024u

static uint8_t buf[CHUNK + WLEN];

static int32_t scan(uint32_t len) {
    /* chunks overlap by WLEN-1 bytes so a match across a boundary is found */
    for (uint32_t off = 0; off < len; off += CHUNK) {
        uint32_t n = len - off < CHUNK + WLEN - 1 ? len - off : CHUNK + WLEN - 1;
        read_vmem_region(PKTLAB_CURPKT_DATA + off, buf, n);
        for (uint32_t i = 0; i + WLEN <= n; i++) {
            uint32_t k = 0;
            while (k < WLEN && buf[i + k] == (uint8_t)WORD[k])
                k++;
            if (k == WLEN)
                return 7;
        }
    }
    return 0;
}

PKTLAB_CHECK_NOPEN { return 0; }
PKTLAB_CHECK_NCLOSE { return 0; }
PKTLAB_CHECK_NSEND { return scan(len); }
PKTLAB_CHECK_NDATA { return scan(len); }
PKTLAB_CHECK_NCAP { return 0; }
