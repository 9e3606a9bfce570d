/* rate_echo.c - a UDP echo limited by a token bucket that a timer refills.
 *
 * Each datagram is echoed to its sender (tag 1: the controller gets the reply's kernel
 * TX stamp) while the bucket has a token; past that it is consumed unanswered and
 * counted. reflex_timer adds one token every `interval` and stops once the bucket is
 * full, so an idle reflex arms no timer. A timer runs late on a busy endpoint (`now` is
 * the clock when it ran): the refill counts the intervals from when it was due, so a
 * late run does not lose tokens.
 * Parameters (big-endian): params[0..4) the bucket's size (0: 4), params[4..8) the
 * refill interval in microseconds (0: 1000).
 * State (big-endian): state[0..4) echoed, state[4..8) dropped, state[8..12) tokens,
 * state[12] 1 while the refill timer is armed, state[16..24) when it is due (ns).
 */
#include "pktlab_reflex.h"

static uint64_t get64(const uint8_t *p) {
    return (uint64_t)pktlab_get32(p) << 32 | pktlab_get32(p + 4);
}

static void put64(uint8_t *p, uint64_t v) {
    pktlab_put32(p, (uint32_t)(v >> 32));
    pktlab_put32(p + 4, (uint32_t)v);
}

static uint32_t burst(uint8_t *ctx) {
    uint32_t b = pktlab_get32(PKTLAB_PARAMS(ctx));
    return b ? b : 4;
}

static uint64_t interval_ns(uint8_t *ctx) {
    uint32_t us = pktlab_get32(PKTLAB_PARAMS(ctx) + 4);
    return (uint64_t)(us ? us : 1000) * 1000;
}

PKTLAB_REFLEX_INIT {
    pktlab_put32(PKTLAB_STATE(ctx) + 8, burst(ctx)); /* start full */
    return 0;
}

PKTLAB_REFLEX_PACKET {
    uint8_t *state = PKTLAB_STATE(ctx);
    uint32_t tokens = pktlab_get32(state + 8);
    if (tokens == 0) {
        pktlab_put32(state + 4, pktlab_get32(state + 4) + 1);
        return 0;
    }
    if (reflex_send(sktid, data, len, raddr, raddrlen, rport, 0, 1) == 0) {
        pktlab_put32(state, pktlab_get32(state) + 1);
        pktlab_put32(state + 8, tokens - 1);
    }
    if (!state[12]) { /* start refilling */
        state[12] = 1;
        uint64_t due = reflex_now() + interval_ns(ctx);
        put64(state + 16, due);
        reflex_timer_at(due);
    }
    return 0;
}

PKTLAB_REFLEX_TIMER {
    uint8_t *state = PKTLAB_STATE(ctx);
    uint64_t due = get64(state + 16), step = interval_ns(ctx);
    uint64_t k = 1 + (now > due ? (now - due) / step : 0); /* intervals elapsed */
    uint64_t tokens = pktlab_get32(state + 8) + k;
    if (tokens >= burst(ctx)) {
        pktlab_put32(state + 8, burst(ctx));
        state[12] = 0;
        return 0;
    }
    pktlab_put32(state + 8, (uint32_t)tokens);
    put64(state + 16, due + k * step);
    reflex_timer_at(due + k * step);
    return 0;
}
