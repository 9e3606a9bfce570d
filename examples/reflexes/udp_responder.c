/* udp_responder.c - answer every datagram at the endpoint, within microseconds.
 *
 * The reply is the datagram with its first 4 bytes replaced by a checksum of the rest
 * (a computed payload, not a plain echo), sent back to the sender with tag 1, so the
 * controller gets an ntag with the kernel's TX stamp. Parameters: params[0] bit 0 = also
 * deliver each datagram to the controller (its ndata carries the kernel's RX stamp).
 * State: the number of replies (u32, big-endian) at state[0..4).
 */
#include "pktlab_reflex.h"

PKTLAB_REFLEX_PACKET {
    uint32_t sum = 0;
    for (uint32_t i = 4; i < len; i++) sum = sum * 31u + data[i];
    if (len >= 4) pktlab_put32(data, sum);
    reflex_send(sktid, data, len, raddr, raddrlen, rport, 0, 1);
    uint8_t *state = PKTLAB_STATE(ctx);
    pktlab_put32(state, pktlab_get32(state) + 1);
    return PKTLAB_PARAMS(ctx)[0] & PKTLAB_REFLEX_PASS;
}
