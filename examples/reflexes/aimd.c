/* aimd.c - an AIMD (additive increase, multiplicative decrease) UDP sender at the endpoint.
 *
 * Attach it to a UDP socket; reflex_init starts sending to the receiver in the
 * parameters. Every data packet carries `seq:u32, sent:u64` first; the receiver echoes
 * those 12 bytes back as the acknowledgement. Each ack grows the window by 1/cwnd
 * packets; a gap in the acknowledged sequence numbers (a loss: the path does not
 * reorder) halves it, once per window; no ack within the timeout sets it to one packet.
 *
 * params (big-endian): raddr[4] rport:u16 size:u16 total:u32 (0: no end) rto_us:u32
 * state (big-endian):  cwnd_milli:u32 next:u32 high:u32 acks:u32 halvings:u32
 *                      timeouts:u32 minrtt_us:u32 srtt_us:u32 maxqueue_us:u32
 *                      first_ns:u64 last_ack_ns:u64
 */
#include "pktlab_reflex.h"

#define P_RADDR 0
#define P_RPORT 4
#define P_SIZE 6
#define P_TOTAL 8
#define P_RTO 12

enum { S_CWND = 0, S_NEXT = 4, S_HIGH = 8, S_ACKS = 12, S_HALV = 16, S_TIMEOUTS = 20,
       S_MINRTT = 24, S_SRTT = 28, S_MAXQ = 32, S_FIRST = 36, S_LAST = 44, S_RECOVER = 52 };

static uint8_t pkt[1500];

static uint64_t get64(const uint8_t *p) { return (uint64_t)pktlab_get32(p) << 32 | pktlab_get32(p + 4); }
static void put64(uint8_t *p, uint64_t v) { pktlab_put32(p, (uint32_t)(v >> 32)); pktlab_put32(p + 4, (uint32_t)v); }
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

static uint32_t s32(uint8_t *ctx, int off) { return pktlab_get32(PKTLAB_STATE(ctx) + off); }
static void set32(uint8_t *ctx, int off, uint32_t v) { pktlab_put32(PKTLAB_STATE(ctx) + off, v); }

static void fill(uint32_t sktid, uint8_t *ctx) {
    uint8_t *par = PKTLAB_PARAMS(ctx);
    uint32_t size = get16(par + P_SIZE), total = pktlab_get32(par + P_TOTAL);
    uint32_t next = s32(ctx, S_NEXT), high = s32(ctx, S_HIGH);
    uint32_t cwnd = s32(ctx, S_CWND) / 1000;
    if (cwnd < 1) cwnd = 1;
    if (size < 12) size = 12;
    if (size > sizeof pkt) size = sizeof pkt;
    int sent = 0;
    uint64_t now = reflex_now();
    /* `high` is the highest acknowledged seq + 1: everything below it is acked or lost */
    while (next - high < cwnd && (total == 0 || next < total) && sent < 32) {
        pktlab_put32(pkt, next);
        put64(pkt + 4, now);
        if (reflex_send(sktid, pkt, size, par + P_RADDR, 4, get16(par + P_RPORT), 0, 0) != 0)
            break;
        next++;
        sent++;
    }
    set32(ctx, S_NEXT, next);
    if (!get64(PKTLAB_STATE(ctx) + S_FIRST)) put64(PKTLAB_STATE(ctx) + S_FIRST, now);
    uint32_t rto = pktlab_get32(par + P_RTO);
    reflex_timer_at(now + (uint64_t)(rto ? rto : 200000) * 1000u);
}

PKTLAB_REFLEX_INIT {
    for (int i = 0; i < PKTLAB_STATE_LEN; i++) PKTLAB_STATE(ctx)[i] = 0;
    set32(ctx, S_CWND, 1000);
    set32(ctx, S_MINRTT, 0xFFFFFFFFu);
    PKTLAB_STATE(ctx)[PKTLAB_STATE_LEN - 1] = (uint8_t)sktid; /* for reflex_timer */
    fill(sktid, ctx);
    return 0;
}

PKTLAB_REFLEX_PACKET {
    if (len < 12) return PKTLAB_REFLEX_PASS; /* not an ack: the controller's business */
    uint32_t seq = pktlab_get32(data);
    uint64_t now = reflex_now(), sent = get64(data + 4);
    uint32_t high = s32(ctx, S_HIGH), cwnd = s32(ctx, S_CWND);
    if (seq + 1 <= high) return 0; /* old */
    if (seq > high && seq >= s32(ctx, S_RECOVER)) { /* a gap: loss, halve once per window */
        cwnd /= 2;
        if (cwnd < 1000) cwnd = 1000;
        set32(ctx, S_HALV, s32(ctx, S_HALV) + 1);
        set32(ctx, S_RECOVER, s32(ctx, S_NEXT));
    } else {
        cwnd += 1000000u / cwnd; /* +1 packet per window */
    }
    set32(ctx, S_CWND, cwnd);
    set32(ctx, S_HIGH, seq + 1);
    set32(ctx, S_ACKS, s32(ctx, S_ACKS) + 1);
    put64(PKTLAB_STATE(ctx) + S_LAST, now);
    uint32_t rtt = now > sent ? (uint32_t)((now - sent) / 1000u) : 0;
    uint32_t minrtt = s32(ctx, S_MINRTT), srtt = s32(ctx, S_SRTT);
    if (rtt < minrtt) minrtt = rtt;
    srtt = srtt ? (srtt * 7 + rtt) / 8 : rtt;
    set32(ctx, S_MINRTT, minrtt);
    set32(ctx, S_SRTT, srtt);
    if (srtt - minrtt > s32(ctx, S_MAXQ)) set32(ctx, S_MAXQ, srtt - minrtt);
    fill(sktid, ctx);
    return 0;
}

PKTLAB_REFLEX_TIMER {
    /* no ack for a timeout: everything in flight is lost; one packet again */
    uint64_t last = get64(PKTLAB_STATE(ctx) + S_LAST);
    uint32_t rto = pktlab_get32(PKTLAB_PARAMS(ctx) + P_RTO);
    uint64_t limit = (uint64_t)(rto ? rto : 200000) * 1000u;
    uint32_t total = pktlab_get32(PKTLAB_PARAMS(ctx) + P_TOTAL);
    if (total && s32(ctx, S_HIGH) >= total) return 0; /* done */
    if (last && now - last < limit) {
        reflex_timer_at(last + limit);
        return 0;
    }
    set32(ctx, S_CWND, 1000);
    set32(ctx, S_TIMEOUTS, s32(ctx, S_TIMEOUTS) + 1);
    set32(ctx, S_HIGH, s32(ctx, S_NEXT));
    set32(ctx, S_RECOVER, s32(ctx, S_NEXT));
    put64(PKTLAB_STATE(ctx) + S_LAST, now);
    fill(PKTLAB_STATE(ctx)[PKTLAB_STATE_LEN - 1], ctx);
    return 0;
}
