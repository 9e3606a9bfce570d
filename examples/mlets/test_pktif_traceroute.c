/*
 * test_pktif_traceroute: the reference's example mlet of that name, in plain C (no
 * libpktlab): UDP probes with rising TTL, hand-built IPv4 headers sent through an
 * endpoint raw socket, the ICMP errors they draw captured there with an ncap filter, one
 * line per hop as `traceroute -n -q 1` prints it.
 *
 *   pktlab xpmgr examples/mlets/test_pktif_traceroute [-I] IP [MAX_TTL]
 *
 * MAX_TTL default 30 (traceroute's). The endpoint needs raw sockets and CAP_NET_RAW plus
 * eBPF (PROTOCOL.md section 7.3).
 *
 * As Butskoy's traceroute (the native tool the PacketLab papers compare with): 60-byte
 * probes (20 IP + 8 UDP + 32 data), destination port 33434 + probe number, one source
 * port for the run; with -I (as traceroute -I) ICMP echo requests instead, identifier
 * = our pid, sequence number = TTL. Here one probe per hop, sent at once (nsend.time 0)
 * with tag = TTL. A hop's answer is an ICMP time-exceeded or destination-unreachable
 * quoting our probe, or (-I) the target's echo reply (the filter checks the quoted
 * protocol and source port or identifier; the mlet the quoted destination and the probe
 * number). RTT = ndata time - ntag time, both endpoint (kernel) stamps.
 * A hop without an answer within 3 s is ` N  *`. The trace stops at an echo reply or at
 * the first destination-unreachable (from the target: port unreachable, the end; otherwise
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
static uint16_t sport; /* UDP: the source port; -I: the echo identifier */
static int icmp_probes;  /* -I */
static int sent_ttl; /* the last probe sent: an answer quoting a later one is not ours */
static uint8_t target[4];

/* The probe number (TTL) of a probe's first 8 bytes past its IP header, 0 if not ours. */
static int probe_ttl(const uint8_t *l4) {
    if (icmp_probes) return l4[0] == 8 && get16(l4 + 4) == sport ? get16(l4 + 6) : 0;
    return get16(l4) == sport ? get16(l4 + 2) - BASE_PORT + 1 : 0;
}

/* An answer: the IPv4 packet of an ndata; an ICMP error must quote one of our probes,
   an echo reply (-I) come from the target with our identifier. */
static void on_icmp(const uint8_t *ip, uint32_t n, uint64_t when) {
    if (n < 20 || ip[0] >> 4 != 4 || ip[9] != ICMP) return;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0F) * 4;
    if (ihl < 20 || n < ihl + 8) return;
    const uint8_t *icmp = ip + ihl, *q = icmp + 8; /* the quoted probe */
    int ttl;
    if (icmp[0] == 0 && icmp_probes) {
        if (memcmp(ip + 12, target, 4) || get16(icmp + 4) != sport) return;
        ttl = get16(icmp + 6);
    } else {
        if ((icmp[0] != 11 && icmp[0] != 3) || n < ihl + 8 + 20) return;
        uint32_t qihl = (uint32_t)(q[0] & 0x0F) * 4;
        if (qihl < 20 || n < ihl + 8 + qihl + 8 || memcmp(q + 16, target, 4)) return;
        if (q[9] != (icmp_probes ? ICMP : UDP)) return;
        ttl = probe_ttl(q + qihl);
    }
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
   probe of ours (its protocol; the UDP source port or the echo identifier, 16 bits at
   `key_off` past the quoted IP header), or an echo reply (0) with that identifier.
   LD_ABS/LD_IND load into r0 in host order, need the context in r6 and clobber r1-r5:
   the outer header length is kept in r7, the quoted header's end in r8 (less 8). */
static uint32_t trace_filter(uint8_t *f) {
    int proto = icmp_probes ? ICMP : UDP, key_off = icmp_probes ? 4 : 0;
    uint8_t *p = f;
    *p++ = 0x00; /* PKTLAB_EBPF */
    p = ebpf(p, EBPF_MOV64_X, 6, 1, 0, 0);          /* 0 */
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 0);          /* 1: version, IHL */
    p = ebpf(p, EBPF_MOV64_X, 7, 0, 0, 0);          /* 2 */
    p = ebpf(p, EBPF_AND64_K, 7, 0, 0, 0x0F);       /* 3 */
    p = ebpf(p, EBPF_LSH64_K, 7, 0, 0, 2);          /* 4: r7 = outer header length */
    p = ebpf(p, EBPF_AND64_K, 0, 0, 0, 0xF0);       /* 5 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 20, 0x40);        /* 6: not IPv4 -> 27 */
    p = ebpf(p, EBPF_LDABS_B, 0, 0, 0, 9);          /* 7 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 18, ICMP);        /* 8: -> 27 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 0);          /* 9: ICMP type */
    p = ebpf(p, EBPF_JEQ_K, 0, 0, 13, 0);           /* 10: echo reply -> 24 */
    p = ebpf(p, EBPF_JEQ_K, 0, 0, 1, 11);           /* 11: time exceeded -> 13 */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 14, 3);           /* 12: nor unreachable -> 27 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 8 + 9);      /* 13: quoted protocol */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 12, proto);       /* 14: -> 27 */
    p = ebpf(p, EBPF_LDIND_B, 0, 7, 0, 8);          /* 15: quoted version, IHL */
    p = ebpf(p, EBPF_AND64_K, 0, 0, 0, 0x0F);       /* 16 */
    p = ebpf(p, EBPF_LSH64_K, 0, 0, 0, 2);          /* 17 */
    p = ebpf(p, EBPF_ADD64_X, 0, 7, 0, 0);          /* 18 */
    p = ebpf(p, EBPF_MOV64_X, 8, 0, 0, 0);          /* 19: r8 = quoted header end - 8 */
    p = ebpf(p, EBPF_LDIND_H, 0, 8, 0, (int32_t)(8 + key_off)); /* 20: port or identifier */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 5, sport);        /* 21: -> 27 */
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0xFFFF);     /* 22: accept the whole packet */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);             /* 23 */
    p = ebpf(p, EBPF_LDIND_H, 0, 7, 0, 4);          /* 24: echo reply's identifier */
    p = ebpf(p, EBPF_JNE_K, 0, 0, 1, sport);        /* 25: -> 27 */
    p = ebpf(p, EBPF_JA, 0, 0, -5, 0);              /* 26: -> 22 */
    p = ebpf(p, EBPF_MOV64_K, 0, 0, 0, 0);          /* 27: drop */
    p = ebpf(p, EBPF_EXIT, 0, 0, 0, 0);             /* 28 */
    return (uint32_t)(p - f);
}

/* The probe past the IP header: an echo request (type 8, code 0, checksum, identifier,
   sequence = TTL), then 32 bytes of data. */
static void echo_probe(uint8_t *icmp, int ttl) {
    icmp[0] = 8;
    put16(icmp + 4, sport);
    put16(icmp + 6, (uint16_t)ttl);
    for (int i = 0; i < DATALEN; i++) icmp[8 + i] = (uint8_t)(0x40 + i);
    put16(icmp + 2, inet_cksum(icmp, 8 + DATALEN));
}

/* Or a UDP header to port 33434 + TTL - 1 with its checksum (over the pseudo-header:
   source, destination, 0, protocol, UDP length), then 32 bytes of data. */
static void udp_probe(uint8_t *udp, int ttl, const uint8_t *src) {
    put16(udp, sport);
    put16(udp + 2, (uint16_t)(BASE_PORT + ttl - 1));
    put16(udp + 4, 8 + DATALEN);
    for (int i = 0; i < DATALEN; i++) udp[8 + i] = (uint8_t)(0x40 + i);
    uint8_t pseudo[12 + 8 + DATALEN];
    memcpy(pseudo, src, 4);
    memcpy(pseudo + 4, target, 4);
    pseudo[8] = 0;
    pseudo[9] = UDP;
    put16(pseudo + 10, 8 + DATALEN);
    memcpy(pseudo + 12, udp, 8 + DATALEN);
    uint16_t sum = inet_cksum(pseudo, sizeof pseudo);
    put16(udp + 6, sum ? sum : 0xFFFF);
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
    icmp_probes = argc > 1 && !strcmp(argv[1], "-I");
    argv += icmp_probes;
    argc -= icmp_probes;
    long max_ttl = argc > 2 ? strtol(argv[2], &end, 10) : 30;
    if (argc < 2 || argc > 3 || (end && *end) || max_ttl < 1 || max_ttl > MAXTTL ||
        inet_pton(AF_INET, argv[1], target) != 1) {
        fprintf(stderr, "usage: test_pktif_traceroute [-I] IPv4 [MAX_TTL (1..%d)]\n", MAXTTL);
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

    uint8_t c[11 + 1 + 29 * 8];
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
        uint8_t *ip = s + 13;
        ip[0] = 0x45;
        put16(ip + 2, 20 + 8 + DATALEN);  /* the kernel rewrites length and checksum */
        put16(ip + 4, (uint16_t)(getpid() + ttl));
        ip[8] = (uint8_t)ttl;
        ip[9] = icmp_probes ? ICMP : UDP;
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, target, 4);
        if (icmp_probes)
            echo_probe(ip + 20, ttl);
        else
            udp_probe(ip + 20, ttl, src);
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
        if (h->rcvd && (h->type == 3 || h->type == 0)) break;
    }
    uint8_t cl = SKTID;
    if (send_msg(NCLOSE, &cl, 1) || expect_result("nclose")) return 1;
    return reached ? 0 : 1;
}
