/*
 * pktlab_reflex.h - the host ABI of PacketLab reflexes (docs/reflexes.md), for reflexes
 * written in C and built with `pktlab reflex build SRC.c -o OUT.wasm`.
 *
 * A reflex runs at the endpoint on every packet its socket receives (after the monitors
 * passed it). It may send on the session's sockets at once or at a time (every send
 * passes the same checks as an nsend from the controller), keep state, report small
 * records to the controller, arm a timer, and pass the packet on to the controller.
 *
 * The context `ctx` (2048 bytes) is the reflex's: ctx[0..1024) are the parameters the
 * controller attached it with and may rewrite (mwrite; reflex_configure runs then),
 * ctx[1024..2048) the state the controller may read (mread).
 */
#ifndef PKTLAB_REFLEX_H
#define PKTLAB_REFLEX_H

#include "pktlab_monitor.h" /* types, malloc/free, read_vmem_region, monitor_debug */

#define PKTLAB_REFLEX_PASS 1 /* reflex_packet's return bit: deliver the ndata too */
#define PKTLAB_PARAMS_LEN 1024
#define PKTLAB_STATE_LEN 1024
#define PKTLAB_PARAMS(ctx) ((uint8_t *)(ctx))
#define PKTLAB_STATE(ctx) ((uint8_t *)(ctx) + PKTLAB_PARAMS_LEN)

/* Queue a send on socket `sktid` (UDP: to raddr[raddrlen]:rport; TCP and raw: those are
 * ignored; raw: `data` is the whole IP packet) at endpoint time `time` (ns since the
 * epoch; 0 = now). At most 64 per call; 0 when queued, -1 when refused here (counted in
 * the socket's reflex block: refused). The endpoint's checks come after the call
 * returns: their refusals are counted there too (denied, lasterr). */
PKTLAB_IMPORT(reflex_send) int32_t reflex_send(uint32_t sktid, const void *data, uint32_t len,
    const uint8_t *raddr, uint32_t raddrlen, uint32_t rport, uint64_t time, uint32_t tag);
/* A record (<= 1024 bytes, at most 16 per call; -1 past that, counted in refused) for
 * the controller (rreport). */
PKTLAB_IMPORT(reflex_report) int32_t reflex_report(const void *data, uint32_t len);
/* The endpoint clock, ns since the epoch. */
PKTLAB_IMPORT(reflex_now) uint64_t reflex_now(void);
/* Call reflex_timer at `time` (replaces an armed timer); it may run late: its `now`
 * says when it ran. */
PKTLAB_IMPORT(reflex_timer_at) int32_t reflex_timer_at(uint64_t time);

/* reflex_packet (required): one received packet, `data[len]` (a copy: writable); UDP
 * sockets give the sender raddr[raddrlen]:rport. Returns PKTLAB_REFLEX_PASS to deliver
 * the packet to the controller too, 0 to consume it. */
#define PKTLAB_REFLEX_PACKET PKTLAB_EXPORT(reflex_packet) int32_t \
    reflex_packet(uint32_t sktid, uint32_t family, uint32_t proto, uint64_t time, \
        const uint8_t *raddr, uint32_t raddrlen, uint32_t rport, uint8_t *data, uint32_t len, \
        uint8_t *ctx)
/* optional: at attach; non-zero refuses the attach */
#define PKTLAB_REFLEX_INIT PKTLAB_EXPORT(reflex_init) int32_t \
    reflex_init(uint8_t *ctx, uint32_t sktid)
/* optional: after the controller wrote parameters */
#define PKTLAB_REFLEX_CONFIGURE PKTLAB_EXPORT(reflex_configure) int32_t \
    reflex_configure(uint8_t *ctx)
/* optional: the timer armed with reflex_timer_at */
#define PKTLAB_REFLEX_TIMER PKTLAB_EXPORT(reflex_timer) int32_t \
    reflex_timer(uint64_t now, uint8_t *ctx)

static inline uint32_t pktlab_get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void pktlab_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

#endif /* PKTLAB_REFLEX_H */
