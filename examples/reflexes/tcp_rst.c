/* tcp_rst.c - answer TCP SYNs with a RST, as a kernel does for a port nobody listens on.
 *
 * Attach it to a raw IPv4 socket capturing the SYNs (ncap, e.g. "tcp[tcpflags] ==
 * tcp-syn and dst port 9"). Each SYN gets RST|ACK, seq 0, ack = its seq + 1, window 0
 * (RFC 9293 3.10.7.1; what Linux sends), IP DF, TTL 64, tag 1 (the controller gets the
 * RST's kernel TX stamp). A raw socket's packets are whole IP packets both ways; the
 * kernel fills the IP total length, id and header checksum (IP4HDRMOD), the TCP
 * checksum is the reflex's. Anything not a SYN is passed on to the controller.
 * State (big-endian): state[0..4) RSTs sent.
 */
#include "pktlab_reflex.h"

static uint8_t rst[40];

static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

PKTLAB_REFLEX_PACKET {
    if (len < 20 || (data[0] >> 4) != 4 || data[9] != 6) return PKTLAB_REFLEX_PASS;
    uint32_t ihl = (uint32_t)(data[0] & 15) * 4;
    if (ihl < 20 || len < ihl + 20) return PKTLAB_REFLEX_PASS;
    const uint8_t *syn = data + ihl;
    if ((syn[13] & 0x17) != 0x02) return PKTLAB_REFLEX_PASS; /* SYN alone (no ACK/RST/FIN) */
    uint32_t seglen = get16(data + 2) - ihl - (uint32_t)(syn[12] >> 4) * 4;
    for (int i = 0; i < 40; i++) rst[i] = 0;
    rst[0] = 0x45; put16(rst + 2, 40); rst[6] = 0x40; rst[8] = 64; rst[9] = 6;
    for (int i = 0; i < 4; i++) { rst[12 + i] = data[16 + i]; rst[16 + i] = data[12 + i]; }
    uint8_t *t = rst + 20;
    put16(t, get16(syn + 2)); put16(t + 2, get16(syn)); /* ports swapped */
    pktlab_put32(t + 8, pktlab_get32(syn + 4) + 1 + seglen); /* ack: SYN's seq + 1 */
    t[12] = 5 << 4; t[13] = 0x14; /* RST|ACK, window 0, seq 0 */
    uint32_t s = 6 + 20; /* pseudo header: proto, TCP length; then addresses and segment */
    for (int i = 12; i < 20; i += 2) s += get16(rst + i);
    for (int i = 0; i < 20; i += 2) s += get16(t + i);
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    put16(t + 16, ~s & 0xFFFF);
    if (reflex_send(sktid, rst, 40, 0, 0, 0, 0, 1) == 0) {
        uint8_t *state = PKTLAB_STATE(ctx);
        pktlab_put32(state, pktlab_get32(state) + 1);
    }
    return 0;
}
