/*
 * test_pktif_traceroute: the reference's example mlet of that name, in plain C (no
 * libpktlab): UDP probes with rising TTL, hand-built IPv4 headers sent through an
 * endpoint raw socket, the ICMP errors they draw captured there with an ncap filter, one
 * line per hop as `traceroute -n -q 1` prints it.
 *
 *   pktlab xpmgr examples/mlets/test_pktif_traceroute IP [MAX_TTL]
 *
 * MAX_TTL default 30 (traceroute's). The endpoint needs raw sockets and CAP_NET_RAW plus
 * eBPF (PROTOCOL.md section 7.3).
 *
 * As Butskoy's traceroute (the native tool the PacketLab papers compare with): 60-byte
 * probes (20 IP + 8 UDP + 32 data), destination port 33434 + probe number, one source
 * port for the run; here one probe per hop, sent at once (nsend.time 0) with tag = TTL.
 * A hop's answer is an ICMP time-exceeded or destination-unreachable quoting our probe
 * (the filter checks the quoted protocol and source port; the mlet the quoted
 * destination and port). RTT = ndata time - ntag time, both endpoint (kernel) stamps.
 * A hop without an answer within 3 s is ` N  *`. The trace stops at the first
 * destination-unreachable (from the target: port unreachable, the end; otherwise
 * !N, !H, !P, !F, !S, !X, !V, !C or !<code> after the RTT, as traceroute marks it) or
 * at MAX_TTL.
 * Exit 0 when the target answered, 1 otherwise, 2 on a bad argument.
 *
 * Build: make (in this directory), or cc -O2 -Wall -o test_pktif_traceroute test_pktif_traceroute.c
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MLET_NAME "test_pktif_traceroute"
#include "pktframe.h"

enum { SKTID = 1, RAW = 0, ICMP = 1, UDP = 17, DATALEN = 32, BASE_PORT = 33434 };
enum { WAIT_MS = 3000, MAXTTL = 255 };

static struct hop {
    uint64_t sent, rcvd; /* endpoint times (ns); 0 = not yet */
    uint8_t from[4];
    int type, code;
} hops[MAXTTL + 1];
static uint16_t sport;
static int sent_ttl; /* the last probe sent: an answer quoting a later one is not ours */
static uint8_t target[4];

/* An ICMP error: the IPv4 packet of an ndata; it must quote one of our probes. */
static void on_icmp(const uint8_t *ip, uint32_t n, uint64_t when) {
    if (n < 20 || ip[0] >> 4 != 4 || ip[9] != ICMP) return;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0F) * 4;
    if (ihl < 20 || n < ihl + 8 + 20) return;
    const uint8_t *icmp = ip + ihl, *q = icmp + 8; /* the quoted probe */
    uint32_t qihl = (uint32_t)(q[0] & 0x0F) * 4;
    if (icmp[0] != 11 && icmp[0] != 3) return;
    if (qihl < 20 || n < ihl + 8 + qihl + 4 || q[9] != UDP || memcmp(q + 16, target, 4)) return;
    if (get16(q + qihl) != sport) return;
    int ttl = get16(q + qihl + 2) - BASE_PORT + 1;
    if (ttl < 1 || ttl > sent_ttl || hops[ttl].rcvd) return;
    hops[ttl].rcvd = when;
    memcpy(hops[ttl].from, ip + 12, 4);
    hops[ttl].type = icmp[0];
    hops[ttl].code = icmp[1];
}

/* Notifications, wherever they come (between a request and its result too). */
static void note(int type, const uint8_t *b, uint32_t len) {
    if (type == NTAG && (len == 11 || len == 13) && b[0] == SKTID) {
        int ttl = get16(b + 1);
        if (ttl < 1 || ttl > MAXTTL) return;
        if (len == 13 && get16(b + 11)) {
            fprintf(stderr, MLET_NAME ": probe ttl %d not sent: %s (0x%04x)\n", ttl,
                    status_name(get16(b + 11)), get16(b + 11));
            return;
        }
        hops[ttl].sent = get64(b + 3);
    } else if (type == NDATA && len >= 11 && b[0] == SKTID && b[2] == RAW) {
        on_icmp(b + 11, len - 11, get64(b + 3));
    } /* anything else (nstat, a type we do not know) is not ours to handle */
}

/* The eBPF filter: IPv4 ICMP time-exceeded (11) or destination-unreachable (3) quoting a
   UDP packet from our source port. LD_ABS/LD_IND load into r0 in host order, need the
   context in r6 and clobber r1-r5: the outer header length is kept in r7, the offset of
   the quoted UDP header in r8. */
static uint32_t trace_filter(uint8_t *f) {
    uint8_t *p = f;
    *p++ = 0x00; /* PKTLAB_EBPF */
    p = ebpf(p, EBPF_MOV64_X, 6, 1, 0, 0);       /* 0 */
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 0);       /* 1: version, IHL */
    p = ebpf(p, EBPF_MOV64_X, 7, 0, 0, 0);       /* 2 */
    p = ebpf(p, EBPF_AND64_K, 7, 0, 0, 0x0F);    /* 3 */
    p = ebpf(p, EBPF_LSH64_K, 7, 0, 0, 2);       /* 4: r7 = outer header length */
    p = ebpf(p, EBPF_AND64_K, 0, 0, 0, 0xF0);    /* 5 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 16, 0x40);     /* 6: not IPv4 -> 23 */
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 9);       /* 7 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 14, ICMP);     /* 8: -> 23 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 0);       /* 9: ICMP type */
    p = ebpf(p, EBPF_JEQ_K, 0, 0, 1, 11);        /* 10: time exceeded -> 12 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 11, 3);        /* 11: nor unreachable -> 23 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 8 + 9);   /* 12: quoted protocol */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 9, UDP);       /* 13: -> 23 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 8);       /* 14: quoted version, IHL */
    p = ebpf(p, EBPF_AND64_K, 0, 0, 0, 0x0F);    /* 15 */
    p = ebpf(p, EBPF_LSH64_K, 0, 0, 0, 2);       /* 16 */
    p = ebpf(p, EBPF_ADD64_X, 0, 7, 0, 0);       /* 17 */
    p = ebpf(p, EBPF_MOV64_X, 8, 0, 0, 0);       /* 18: r8 = quoted UDP header - 8 */
    p = ebpf(p, EBPF_LDIND_H, 0, 8, 0, 8);       /* 19: quoted source port */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 2, sport);     /* 20: -> 23 */
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0xFFFF);  /* 21: accept the whole packet */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);          /* 22 */
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0);       /* 23: drop */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);          /* 24 */
    return (uint32_t)(p - f);
}

static const char *mark(const struct hop *h, int at_target) {
    static char buf[16];
    if (h->type != 3 || (at_target && h->code == 3)) return "";
    switch (h->code) {
    case 0: return " !N";
    case 1: return " !H";
    case 2: return " !P";
    case 4: return " !F";
    case 5: return " !S";
    case 13: return " !X";
    case 14: return " !V";
    case 15: return " !C";
    }
    snprintf(buf, sizeof buf, " !<%d>", h->code);
    return buf;
}

int main(int argc, char **argv) {
    char *end = NULL;
    long max_ttl = argc > 2 ? strtol(argv[2], &end, 10) : 30;
    if (argc < 2 || argc > 3 || (end && *end) || max_ttl < 1 || max_ttl > MAXTTL ||
        inet_pton(AF_INET, argv[1], target) != 1) {
        fprintf(stderr, "usage: test_pktif_traceroute IPv4 [MAX_TTL (1..%d)]\n", MAXTTL);
        return 2;
    }
    sport = (uint16_t)(0x8000 | (getpid() & 0x7FFF));
    on_note = note;

    uint64_t t0;
    if (mread_time(&t0)) return 1;
    /* nopen: sktid, family 4, proto raw, rbufsz 64 KiB, laddr 0.0.0.0 (the first exported) */
    uint8_t m[11] = {SKTID, 4, RAW, 0, 1, 0, 0, 0, 0, 0, 0};
    if (send_msg(NOPEN, m, sizeof m) || expect_result("nopen raw")) return 1;
    uint8_t src[16];
    if (mread_into(VM_SKT_LADDR(SKTID), 16, src)) return 1;

    uint8_t c[11 + 1 + 25 * 8];
    c[0] = SKTID; c[1] = 4; c[2] = RAW;
    put64(c + 3, t0 + ((uint64_t)max_ttl * WAIT_MS + 30000) * 1000000); /* endtime */
    if (send_msg(NCAP, c, 11 + trace_filter(c + 11)) || expect_result("ncap")) return 1;

    printf("traceroute to %s (%s), %ld hops max, %d byte packets\n", argv[1], argv[1], max_ttl,
           20 + 8 + DATALEN);
    fflush(stdout);
    int reached = 0;
    for (int ttl = 1; ttl <= max_ttl; ttl++) {
        /* nsend: sktid, family, proto, time u64 (0 = now), tag u16, the whole IPv4 packet */
        uint8_t s[13 + 20 + 8 + DATALEN];
        memset(s, 0, sizeof s);
        s[0] = SKTID; s[1] = 4; s[2] = RAW;
        put16(s + 11, (uint16_t)ttl);
        uint8_t *ip = s + 13, *udp = ip + 20;
        ip[0] = 0x45;
        put16(ip + 2, 20 + 8 + DATALEN);  /* the kernel rewrites length and checksum */
        put16(ip + 4, (uint16_t)(getpid() + ttl));
        ip[8] = (uint8_t)ttl;
        ip[9] = UDP;
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, target, 4);
        put16(udp, sport);
        put16(udp + 2, (uint16_t)(BASE_PORT + ttl - 1));
        put16(udp + 4, 8 + DATALEN);
        for (int i = 0; i < DATALEN; i++) udp[8 + i] = (uint8_t)(0x40 + i);
        uint8_t pseudo[12 + 8 + DATALEN]; /* src, dst, 0, proto, UDP length, then UDP */
        memcpy(pseudo, src, 4);
        memcpy(pseudo + 4, target, 4);
        pseudo[8] = 0;
        pseudo[9] = UDP;
        put16(pseudo + 10, 8 + DATALEN);
        memcpy(pseudo + 12, udp, 8 + DATALEN);
        uint16_t sum = inet_cksum(pseudo, sizeof pseudo);
        put16(udp + 6, sum ? sum : 0xFFFF);
        sent_ttl = ttl;
        if (send_msg(NSEND, s, sizeof s) || expect_result("nsend")) return 1;

        struct hop *h = &hops[ttl];
        int64_t deadline = mono_ms() + WAIT_MS;
        uint32_t len;
        while (!(h->rcvd && h->sent)) {
            int t = recv_msg_until(deadline, &len);
            if (t == FRAME_TIMEOUT) break;
            if (t < 0) { fprintf(stderr, MLET_NAME ": the session ended\n"); return 1; }
            pass_note(t, len);
        }
        if (!h->rcvd) {
            printf("%2d  *\n", ttl);
        } else {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, h->from, a, sizeof a);
            int at_target = !memcmp(h->from, target, 4);
            if (h->sent)
                printf("%2d  %s  %.3f ms%s\n", ttl, a, ((double)h->rcvd - (double)h->sent) / 1e6,
                       mark(h, at_target));
            else
                printf("%2d  %s  (no send time)%s\n", ttl, a, mark(h, at_target));
            reached = at_target;
        }
        fflush(stdout);
        if (h->rcvd && h->type == 3) break;
    }
    uint8_t cl = SKTID;
    if (send_msg(NCLOSE, &cl, 1) || expect_result("nclose")) return 1;
    return reached ? 0 : 1;
}
