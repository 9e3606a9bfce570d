/* tcp_handshake.c - a TCP three-way handshake from a raw socket, at the endpoint.
 *
 * Attach it to a raw IPv4 socket that captures the server's replies (ncap, e.g. "tcp and
 * src host SERVER and src port PORT"). reflex_init sends the SYN (MSS 1460, SACK
 * permitted, window scale 7; tag 1: the controller gets its kernel TX stamp); the
 * SYN-ACK is answered with the ACK at once (tag 2), and a record is reported:
 *
 *   synack_rx_ns:u64 (kernel RX stamp) server_isn:u32 window:u16 mss:u16 wscale:u8
 *   sack_ok:u8 timestamps:u8 flags:u8 (the SYN-ACK's TCP flags)
 *
 * A RST instead is reported with the same layout (flags 0x14). Everything else is passed
 * on to the controller. The kernel answers a SYN-ACK for a port it has no socket on
 * with a RST of its own: native SYN tools drop outgoing RSTs with a firewall rule;
 * benchmarks/bench_reflex_handshake.py instead sends from an address the endpoint
 * exports but its kernel does not own, so the kernel drops the SYN-ACK silently
 * (docs/reflexes.md, "a TCP three-way handshake").
 *
 * params (network order): saddr[4] daddr[4] sport:u16 dport:u16 isn:u32
 * state: state[0] = 1 SYN sent, 2 done
 */
#include "pktlab_reflex.h"

static uint8_t pkt[60];

static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t s) {
    for (uint32_t i = 0; i + 1 < n; i += 2) s += get16(p + i);
    if (n & 1) s += (uint32_t)p[n - 1] << 8;
    return s;
}

/* Build an IPv4+TCP packet in pkt; returns its length. The kernel fills the IP total
 * length, id and checksum (IP4HDRMOD); the TCP checksum is ours. */
static uint32_t build(const uint8_t *par, uint32_t seq, uint32_t ack, uint8_t flags,
                      int options) {
    uint32_t optlen = options ? 12 : 0, tcplen = 20 + optlen, len = 20 + tcplen;
    for (uint32_t i = 0; i < len; i++) pkt[i] = 0;
    pkt[0] = 0x45; put16(pkt + 2, len); pkt[6] = 0x40; pkt[8] = 64; pkt[9] = 6;
    for (int i = 0; i < 8; i++) pkt[12 + i] = par[i]; /* saddr, daddr */
    uint8_t *t = pkt + 20;
    put16(t, get16(par + 8)); put16(t + 2, get16(par + 10));
    pktlab_put32(t + 4, seq); pktlab_put32(t + 8, ack);
    t[12] = (uint8_t)((tcplen / 4) << 4); t[13] = flags; put16(t + 14, 64240);
    if (options) {
        uint8_t *o = t + 20;
        o[0] = 2; o[1] = 4; put16(o + 2, 1460);  /* MSS */
        o[4] = 4; o[5] = 2;                       /* SACK permitted */
        o[6] = 3; o[7] = 3; o[8] = 7;             /* window scale 7 */
        o[9] = 1; o[10] = 1; o[11] = 1;           /* NOPs */
    }
    uint32_t s = sum16(pkt + 12, 8, 0) + 6 + tcplen; /* pseudo-header */
    s = sum16(t, tcplen, s);
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    put16(t + 16, ~s & 0xFFFF);
    return len;
}

PKTLAB_REFLEX_INIT {
    uint8_t *par = PKTLAB_PARAMS(ctx);
    uint32_t n = build(par, pktlab_get32(par + 12), 0, 0x02, 1);
    PKTLAB_STATE(ctx)[0] = 1;
    return reflex_send(sktid, pkt, n, 0, 0, 0, 0, 1) == 0 ? 0 : 1;
}

PKTLAB_REFLEX_PACKET {
    uint8_t *par = PKTLAB_PARAMS(ctx);
    if (PKTLAB_STATE(ctx)[0] != 1 || len < 40 || (data[0] >> 4) != 4 || data[9] != 6)
        return PKTLAB_REFLEX_PASS;
    uint32_t ihl = (data[0] & 15u) * 4u;
    if (len < ihl + 20) return PKTLAB_REFLEX_PASS;
    const uint8_t *t = data + ihl;
    if (get16(t) != get16(par + 10) || get16(t + 2) != get16(par + 8))
        return PKTLAB_REFLEX_PASS; /* not our connection */
    uint8_t flags = t[13];
    uint32_t isn = pktlab_get32(par + 12);
    uint8_t rec[24];
    for (int i = 0; i < 24; i++) rec[i] = 0;
    pktlab_put32(rec, (uint32_t)(time >> 32)); pktlab_put32(rec + 4, (uint32_t)time);
    pktlab_put32(rec + 8, pktlab_get32(t + 4));
    put16(rec + 12, get16(t + 14));
    rec[19] = flags;
    if ((flags & 0x12) == 0x12) {
        uint32_t n = build(par, isn + 1, pktlab_get32(t + 4) + 1, 0x10, 0);
        reflex_send(sktid, pkt, n, 0, 0, 0, 0, 2); /* the ACK, at once */
        uint32_t off = (uint32_t)(t[12] >> 4) * 4u, i = 20;
        while (i < off && ihl + i < len) { /* options */
            uint8_t kind = t[i];
            if (kind == 0) break;
            if (kind == 1) { i++; continue; }
            if (i + 1 >= off) break;
            uint8_t olen = t[i + 1];
            if (olen < 2) break;
            if (kind == 2 && olen == 4) put16(rec + 14, get16(t + i + 2));
            if (kind == 3 && olen == 3) rec[16] = t[i + 2];
            if (kind == 4) rec[17] = 1;
            if (kind == 8) rec[18] = 1;
            i += olen;
        }
    } else if (!(flags & 0x04)) {
        return PKTLAB_REFLEX_PASS;
    }
    PKTLAB_STATE(ctx)[0] = 2;
    reflex_report(rec, 20);
    return 0;
}
