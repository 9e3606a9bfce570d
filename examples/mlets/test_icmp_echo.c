/*
 * test_icmp_echo: the reference's example mlet of that name, in plain C (no libpktlab):
 * ICMP echo requests sent by the endpoint through a raw socket, the replies captured
 * there with an ncap filter, one line per reply as ping prints it.
 *
 *   pktlab xpmgr examples/mlets/test_icmp_echo [IP [COUNT [INTERVAL_MS]]]
 *
 * IP default 8.8.8.8, COUNT default 4, INTERVAL_MS default 1000 (the reference takes
 * [TARGET]; COUNT and INTERVAL_MS are ours). The endpoint needs raw sockets
 * (TransprotoSup raw,...) and CAP_NET_RAW plus eBPF (PROTOCOL.md section 7.3).
 *
 * The mlet reads the endpoint's clock (mread TIME), opens raw socket 1 on the first
 * exported address (nopen, laddr 0.0.0.0) and reads which address that is (mread
 * LADDR), installs an eBPF filter that passes ICMP echo replies carrying our identifier
 * (ncap), then queues all COUNT echo requests at once, each with its send time
 * (nsend.time: endpoint clock + 100 ms + i * INTERVAL_MS) and tag = its sequence number.
 * The send time of a request is its ntag's time, the receive time of a reply its
 * ndata's time, both stamped by the endpoint (kernel timestamps on ours); RTT is their
 * difference. Replies and ntags are matched by sequence number in whatever order they
 * come. A reply line is printed when both are in; then the ping-style summary.
 * Exit 0 when at least one reply came, 1 otherwise, 2 on a bad argument.
 *
 * Build: make (in this directory), or cc -O2 -Wall -o test_icmp_echo test_icmp_echo.c
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MLET_NAME "test_icmp_echo"
#include "pktframe.h"

enum { SKTID = 1, RAW = 0, ICMP = 1, DATALEN = 56, MAXCOUNT = 1000 };
enum { LEAD_MS = 100, LINGER_MS = 3000 };

static struct probe {
    uint64_t sent, rcvd; /* endpoint times (ns); 0 = not yet */
    int ttl, bytes, printed, dup;
} probes[MAXCOUNT + 1];
static int count, received, tagged, unsent;
static uint16_t ident;
static uint8_t target[4];
static char target_s[INET_ADDRSTRLEN];
static double rtt_min = 1e18, rtt_max, rtt_sum, rtt_sum2;

/* sqrt by Newton's method: libm is not libc, and the mlets link nothing else. */
static double root(double v) {
    double r = v > 1 ? v : 1;
    for (int i = 0; i < 60; i++) r = (r + v / r) / 2;
    return r;
}

static void print_ready(int seq) {
    struct probe *p = &probes[seq];
    if (p->printed || !p->sent || !p->rcvd) return;
    p->printed = 1;
    double ms = ((double)p->rcvd - (double)p->sent) / 1e6;
    printf("%d bytes from %s: icmp_seq=%d ttl=%d time=%.3f ms\n", p->bytes, target_s, seq,
           p->ttl, ms);
    fflush(stdout);
    if (ms < rtt_min) rtt_min = ms;
    if (ms > rtt_max) rtt_max = ms;
    rtt_sum += ms;
    rtt_sum2 += ms * ms;
}

/* An echo reply: the IPv4 packet of an ndata. */
static void on_reply(const uint8_t *ip, uint32_t n, uint64_t when) {
    if (n < 20 || ip[0] >> 4 != 4) return;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0F) * 4;
    if (ihl < 20 || n < ihl + 8 || ip[9] != ICMP || memcmp(ip + 12, target, 4)) return;
    const uint8_t *icmp = ip + ihl;
    int seq = get16(icmp + 6);
    if (icmp[0] != 0 || get16(icmp + 4) != ident || seq < 1 || seq > count) return;
    struct probe *p = &probes[seq];
    if (p->rcvd) {
        p->dup++;
        printf("%u bytes from %s: icmp_seq=%d ttl=%d (DUP!)\n", n - ihl, target_s, seq, ip[8]);
        return;
    }
    p->rcvd = when;
    p->ttl = ip[8];
    p->bytes = (int)(n - ihl);
    received++;
    print_ready(seq);
}

/* Notifications, wherever they come (between a request and its result too). */
static void note(int type, const uint8_t *b, uint32_t len) {
    if (type == NTAG && (len == 11 || len == 13) && b[0] == SKTID) {
        int seq = get16(b + 1);
        if (seq < 1 || seq > count || probes[seq].sent) return;
        if (len == 13 && get16(b + 11)) {
            fprintf(stderr, MLET_NAME ": icmp_seq=%d not sent: %s (0x%04x)\n", seq,
                    status_name(get16(b + 11)), get16(b + 11));
            unsent++;
            return;
        }
        probes[seq].sent = get64(b + 3);
        tagged++;
        print_ready(seq);
    } else if (type == NDATA && len >= 11 && b[0] == SKTID && b[2] == RAW) {
        on_reply(b + 11, len - 11, get64(b + 3));
    } /* anything else (nstat, a type we do not know) is not ours to handle */
}

/* The eBPF filter: IPv4, ICMP, echo reply (type 0), identifier == ident. LD_ABS/LD_IND
   read the packet from the IP header (offset 0) into r0, in host order; they need the
   context in r6 and clobber r1-r5, so the header length is kept in r7. */
static uint32_t echo_filter(uint8_t *f) {
    uint8_t *p = f;
    *p++ = 0x00; /* PKTLAB_EBPF */
    p = ebpf(p, EBPF_MOV64_X, 6, 1, 0, 0);
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 0);      /* r0 = version, IHL */
    p = ebpf(p, EBPF_MOV64_X, 7, 0, 0, 0);
    p = ebpf(p, EBPF_AND64_K, 7, 0, 0, 0x0F);
    p = ebpf(p, EBPF_LSH64_K, 7, 0, 0, 2);      /* r7 = header length */
    p = ebpf(p, EBPF_AND64_K, 0, 0, 0, 0xF0);
    p = ebpf(p, EBPF_JNE_K, 0, 0, 8, 0x40);     /* not IPv4: drop */
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 9);
    p = ebpf(p, EBPF_JNE_K, 0, 0, 6, ICMP);
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 0);      /* ICMP type */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 4, 0);
    p = ebpf(p, EBPF_LDIND_H, 0, 7, 0, 4);      /* identifier */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 2, ident);
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0xFFFF); /* accept the whole packet */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0);      /* drop */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);
    return (uint32_t)(p - f);
}

static int positive(const char *s, int max) {
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 1 && v <= max ? (int)v : 0;
}

int main(int argc, char **argv) {
    snprintf(target_s, sizeof target_s, "%s", argc > 1 ? argv[1] : "8.8.8.8");
    count = argc > 2 ? positive(argv[2], MAXCOUNT) : 4;
    int interval = argc > 3 ? positive(argv[3], 60000) : 1000;
    if (argc > 4 || inet_pton(AF_INET, target_s, target) != 1 || !count || !interval) {
        fprintf(stderr, "usage: test_icmp_echo [IPv4 [COUNT (1..%d) [INTERVAL_MS (1..60000)]]]\n",
                MAXCOUNT);
        return 2;
    }
    ident = (uint16_t)(getpid() & 0xFFFF);
    on_note = note;

    uint64_t t0;
    if (mread_time(&t0)) return 1;
    /* nopen: sktid, family 4, proto raw, rbufsz 64 KiB, laddr 0.0.0.0 (the first exported) */
    uint8_t m[11] = {SKTID, 4, RAW, 0, 1, 0, 0, 0, 0, 0, 0};
    if (send_msg(NOPEN, m, sizeof m) || expect_result("nopen raw")) return 1;
    uint8_t src[16];
    if (mread_into(VM_SKT_LADDR(SKTID), 16, src)) return 1;

    uint64_t last = t0 + (uint64_t)LEAD_MS * 1000000 + (uint64_t)(count - 1) * interval * 1000000;
    uint8_t c[11 + 1 + 17 * 8];
    c[0] = SKTID; c[1] = 4; c[2] = RAW;
    put64(c + 3, last + (uint64_t)(LINGER_MS + 5000) * 1000000); /* endtime */
    if (send_msg(NCAP, c, 11 + echo_filter(c + 11)) || expect_result("ncap")) return 1;

    char src_s[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, src, src_s, sizeof src_s);
    printf("PING %s (%s) from %s: %d(%d) bytes of data.\n", target_s, target_s, src_s, DATALEN,
           DATALEN + 28);
    fflush(stdout);

    int64_t started = mono_ms();
    for (int seq = 1; seq <= count; seq++) {
        /* nsend: sktid, family, proto, time u64, tag u16, the whole IPv4 packet */
        uint8_t s[13 + 20 + 8 + DATALEN];
        memset(s, 0, sizeof s);
        s[0] = SKTID; s[1] = 4; s[2] = RAW;
        put64(s + 3, t0 + (uint64_t)LEAD_MS * 1000000 + (uint64_t)(seq - 1) * interval * 1000000);
        put16(s + 11, (uint16_t)seq);
        uint8_t *ip = s + 13, *icmp = ip + 20;
        ip[0] = 0x45;
        put16(ip + 2, 20 + 8 + DATALEN);  /* the kernel rewrites length and checksum */
        put16(ip + 6, 0x4000);            /* DF, as ping; ID 0: the kernel fills it */
        ip[8] = 64;
        ip[9] = ICMP;
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, target, 4);
        icmp[0] = 8;
        put16(icmp + 4, ident);
        put16(icmp + 6, (uint16_t)seq);
        for (int i = 0; i < DATALEN; i++) icmp[8 + i] = (uint8_t)(0x10 + i);
        put16(icmp + 2, inet_cksum(icmp, 8 + DATALEN));
        if (send_msg(NSEND, s, sizeof s) || expect_result("nsend")) return 1;
    }

    int64_t deadline = started + LEAD_MS + (int64_t)(count - 1) * interval + LINGER_MS;
    uint32_t len;
    while (received + unsent < count || tagged + unsent < count) { /* an unsent one gets no reply */
        int t = recv_msg_until(deadline, &len);
        if (t == FRAME_TIMEOUT) break;
        if (t < 0) { fprintf(stderr, MLET_NAME ": the session ended\n"); return 1; }
        pass_note(t, len);
    }
    /* nclose before the summary: a late duplicate read meanwhile prints above it */
    uint8_t cl = SKTID;
    int closed = send_msg(NCLOSE, &cl, 1) || expect_result("nclose") ? -1 : 0;
    int sent = count - unsent;
    printf("\n--- %s ping statistics ---\n", target_s);
    printf("%d packets transmitted, %d received, %d%% packet loss\n", sent, received,
           sent ? (sent - received) * 100 / sent : 0);
    int timed = 0;
    for (int seq = 1; seq <= count; seq++) timed += probes[seq].printed;
    if (timed) {
        double avg = rtt_sum / timed, var = rtt_sum2 / timed - avg * avg;
        printf("rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", rtt_min, avg, rtt_max,
               var > 0 ? root(var) : 0.0);
    }
    if (received > timed)
        fprintf(stderr, MLET_NAME ": %d replies without the send time of their request\n",
                received - timed);
    fflush(stdout);
    return received && !closed ? 0 : 1;
}
