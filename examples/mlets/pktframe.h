/*
 * pktframe.h: the few pieces an mlet in plain C needs (no libpktlab): PacketLab frames
 * (type u8, body length u24 big-endian, body; PROTOCOL.md section 1) on fd 0, where the
 * experiment manager hands over a started session. Shared by the example mlets here.
 */
#ifndef PKTFRAME_H
#define PKTFRAME_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#ifndef MLET_NAME
#define MLET_NAME "mlet" /* how its error lines start */
#endif

enum { RESULT = 0x40, MDATA = 0x41, NTAG = 0x60, NSTAT = 0x61, NDATA = 0x62 };
enum { MREAD = 0x28, NOPEN = 0x2A, NCLOSE = 0x2B, NSEND = 0x2C };
#define MAXBODY (1 << 20)

static uint8_t body[MAXBODY];

static int write_all(const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(0, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(uint8_t *p, size_t n) {
    while (n) {
        ssize_t r = read(0, p, n);
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_msg(uint8_t type, const uint8_t *b, uint32_t len) {
    uint8_t hdr[4] = {type, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    return write_all(hdr, 4) || write_all(b, len) ? -1 : 0;
}

/* Next frame into body; returns its type, -1 on EOF or an oversized frame. */
static int recv_msg(uint32_t *len) {
    uint8_t hdr[4];
    if (read_all(hdr, 4)) return -1;
    *len = (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (*len > MAXBODY || read_all(body, *len)) return -1;
    return hdr[0];
}

static int expect_result(const char *what) {
    uint32_t len;
    for (;;) {
        int t = recv_msg(&len);
        if (t < 0) { fprintf(stderr, MLET_NAME ": EOF waiting for the result of %s\n", what); return -1; }
        if (t == RESULT) {
            if (len == 0) return 0;
            fprintf(stderr, MLET_NAME ": %s refused: error 0x%02x%02x\n", what, body[0], body[1]);
            return -1;
        }
    }
}

#endif
