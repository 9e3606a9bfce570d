/*
 * pktframe.h: the few pieces an mlet in plain C needs (no libpktlab): PacketLab frames
 * (type u8, body length u24 big-endian, body; PROTOCOL.md section 1) on fd 0, where the
 * experiment manager hands over a started session. Shared by the example mlets here.
 *
 * Reading is as robust as libpktlab's: a frame may come in any number of short reads, a
 * notification may sit between a request and its reply (one FIFO, section 1.1), and a
 * frame of a type we do not know is skipped. Requests wait for their reply with
 * expect_result()/expect_mdata(); the notifications read meanwhile go to on_note (when an
 * mlet sets it), so none is lost. Writing is one write() per message, as libpktlab sends
 * a message (the manager forwards each as one TLS record).
 */
#ifndef PKTFRAME_H
#define PKTFRAME_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MLET_NAME
#define MLET_NAME "mlet" /* how its error lines start */
#endif

enum { RESULT = 0x40, MDATA = 0x41, NTAG = 0x60, NSTAT = 0x61, NDATA = 0x62 };
enum { MREAD = 0x28, NOPEN = 0x2A, NCLOSE = 0x2B, NSEND = 0x2C, NCAP = 0x2D };
enum { FRAME_EOF = -1, FRAME_TIMEOUT = -2 };
#define MAXBODY (1 << 20) /* ndata carries at most 64 KiB; a larger frame is skipped */

static uint8_t body[MAXBODY];

/* Big-endian fields (section 1.1: every multi-byte integer). */
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static int write_all(const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(0, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(uint8_t *p, size_t n) {
    while (n) {
        ssize_t r = read(0, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One message, one write: header and body in one buffer (requests are small). */
static int send_msg(uint8_t type, const uint8_t *b, uint32_t len) {
    static uint8_t msg[4 + 65536];
    if (len > sizeof msg - 4) {
        fprintf(stderr, MLET_NAME ": a request of %u bytes: this helper sends at most %u\n", len,
                (unsigned)(sizeof msg - 4));
        return -1;
    }
    msg[0] = type;
    msg[1] = (uint8_t)(len >> 16); msg[2] = (uint8_t)(len >> 8); msg[3] = (uint8_t)len;
    if (len) memcpy(msg + 4, b, len);
    return write_all(msg, 4 + (size_t)len);
}

/* Next frame into body; returns its type, FRAME_EOF at EOF or a read error. A frame
   larger than body is read to its end and skipped (a line on stderr says so). */
static int recv_msg(uint32_t *len) {
    for (;;) {
        uint8_t hdr[4];
        if (read_all(hdr, 4)) return FRAME_EOF;
        *len = (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (*len <= MAXBODY) return read_all(body, *len) ? FRAME_EOF : hdr[0];
        fprintf(stderr, MLET_NAME ": skipping a frame of type 0x%02x, %u bytes\n", hdr[0], *len);
        for (uint32_t left = *len; left;) {
            uint32_t n = left < MAXBODY ? left : MAXBODY;
            if (read_all(body, n)) return FRAME_EOF;
            left -= n;
        }
    }
}

static inline int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* recv_msg, or FRAME_TIMEOUT when no frame starts before the monotonic time deadline_ms. */
static inline int recv_msg_until(int64_t deadline_ms, uint32_t *len) {
    struct pollfd pfd = {0, POLLIN, 0};
    for (;;) {
        int64_t left = deadline_ms - mono_ms();
        if (left < 0) left = 0;
        int r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0) return recv_msg(len);
        if (r < 0 && errno != EINTR) return FRAME_EOF;
        if (r == 0 && left == 0) return FRAME_TIMEOUT;
    }
}

/* Where notifications read while waiting for a reply go (NULL: dropped). type is the
   frame type, which may be one we do not know: a handler ignores those. */
typedef void (*note_fn)(int type, const uint8_t *b, uint32_t len);
static note_fn on_note;

static inline void pass_note(int t, uint32_t len) {
    if (t >= 0x60 && t <= 0x7F && on_note) on_note(t, body, len);
}

/* The name of a status code (PROTOCOL.md section 1.3), "?" for one we do not know. */
static inline const char *status_name(unsigned code) {
    static const struct { unsigned code; const char *name; } names[] = {
        {0x10, "ECTLBADMSG"}, {0x11, "ECTLNOTSUP"}, {0x12, "ECTLMONREJ"}, {0x13, "ECTLMONUKN"},
        {0x20, "ECRTBADHDAT"}, {0x21, "ECRTNOHDAT"}, {0x24, "ECRTBADHINT"},
        {0x30, "ESYSNOBUFS"}, {0x31, "ESYSNOPERM"}, {0x32, "ESKTINUSE"}, {0x33, "ESKTNOTOPEN"},
        {0x34, "ESKTNOPRFAM"}, {0x35, "ESKTNOPROTO"}, {0x36, "ESKTNOADDR"}, {0x37, "ESKTNOMATCH"},
        {0x38, "ESKTBADFILT"}, {0x39, "ESKTPKTDENY"}, {0x3A, "ESKTOPNDENY"}, {0x40, "ETCPNOPORT"},
        {0x41, "EPKTNOTSENT"}, {0x42, "EUDPNOPORT"}, {0x43, "EPKTTRUNC"}, {0x44, "ENORES"},
        {0x48, "EMEMBADADR"}, {0xFFFF, "EUNKFAULT"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == code) return names[i].name;
    return "?";
}

/* Waits for the reply to the last request: 0 for result(SUCCESS); -1 otherwise, with a
   line naming `what` and the status (section 1.3). */
static int expect_result(const char *what) {
    uint32_t len;
    for (;;) {
        int t = recv_msg(&len);
        if (t < 0) { fprintf(stderr, MLET_NAME ": EOF waiting for the result of %s\n", what); return -1; }
        if (t == RESULT) {
            if (len == 0) return 0;
            if (len < 2) { fprintf(stderr, MLET_NAME ": %s: malformed result\n", what); return -1; }
            fprintf(stderr, MLET_NAME ": %s refused: %s (0x%04x)\n", what, status_name(get16(body)),
                    get16(body));
            return -1;
        }
        if (t == MDATA) { fprintf(stderr, MLET_NAME ": %s answered with mdata\n", what); return -1; }
        pass_note(t, len);
    }
}

/* mread of n bytes at addr into out (section 2): 0, or -1 with a line. */
static inline int mread_into(uint32_t addr, uint16_t n, uint8_t *out) {
    uint8_t m[6];
    uint32_t len;
    put32(m, addr);
    put16(m + 4, n);
    if (send_msg(MREAD, m, 6)) return -1;
    for (;;) {
        int t = recv_msg(&len);
        if (t < 0) { fprintf(stderr, MLET_NAME ": EOF waiting for mdata of 0x%08x\n", addr); return -1; }
        if (t == MDATA) {
            if (len != 4u + n || get32(body) != addr) {
                fprintf(stderr, MLET_NAME ": mdata for 0x%08x has %u bytes at 0x%08x\n", addr,
                        len >= 4 ? len - 4 : 0, len >= 4 ? get32(body) : 0);
                return -1;
            }
            memcpy(out, body + 4, n);
            return 0;
        }
        if (t == RESULT) {
            unsigned code = len >= 2 ? get16(body) : 0;
            fprintf(stderr, MLET_NAME ": mread 0x%08x refused: %s (0x%04x)\n", addr,
                    status_name(code), code);
            return -1;
        }
        pass_note(t, len);
    }
}

/* Virtual memory addresses (section 2.2) the mlets here read. */
#define VM_TIME 0x10010000u               /* u64 endpoint clock, ns */
#define VM_SKT(sktid) (0x20000000u + (uint32_t)(sktid) * 0x400u)
#define VM_SKT_LADDR(sktid) (VM_SKT(sktid) + 0x10u)

static inline int mread_time(uint64_t *ns) {
    uint8_t b[8];
    if (mread_into(VM_TIME, 8, b)) return -1;
    *ns = get64(b);
    return 0;
}

/* One eBPF instruction in PacketLab's encoding (section 3.4): opcode, dst<<4|src (dst in
   the HIGH nibble), offset u16 BE, imm u32 BE. */
static inline uint8_t *ebpf(uint8_t *p, uint8_t op, int dst, int src, int16_t off, int32_t imm) {
    p[0] = op;
    p[1] = (uint8_t)(dst << 4 | src);
    put16(p + 2, (uint16_t)off);
    put32(p + 4, (uint32_t)imm);
    return p + 8;
}

/* The opcodes those filters use (linux/bpf.h values). */
enum {
    EBPF_MOV64_X = 0xbf, EBPF_MOV64_K = 0xb7, EBPF_AND64_K = 0x57, EBPF_LSH64_K = 0x67,
    EBPF_ADD64_X = 0x0f, EBPF_ADD64_K = 0x07,
    EBPF_LDABS_B = 0x30, EBPF_LDABS_H = 0x28, EBPF_LDIND_B = 0x50, EBPF_LDIND_H = 0x48,
    EBPF_LDIND_W = 0x40, EBPF_JEQ_K = 0x15, EBPF_JNE_K = 0x55, EBPF_JA = 0x05, EBPF_EXIT = 0x95,
};

/* The Internet checksum (RFC 1071) of n bytes. */
static inline uint16_t inet_cksum(const uint8_t *p, size_t n) {
    uint32_t s = 0;
    for (; n > 1; p += 2, n -= 2) s += (uint32_t)(p[0] << 8 | p[1]);
    if (n) s += (uint32_t)p[0] << 8;
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)~s;
}

#endif
