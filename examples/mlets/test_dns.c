/*
 * test_dns: the reference's example mlet of that name, in plain C (no libpktlab): a DNS
 * query for DOMAIN's A records sent from the endpoint over UDP, the answers printed.
 *
 *   pktlab xpmgr examples/mlets/test_dns [DOMAIN [IP[:PORT]]]
 *
 * Same arguments as the reference's test_dns (DOMAIN default www.example.com, the server
 * IP default 8.8.8.8), plus an optional :PORT (default 53). The mlet opens a UDP socket on
 * the endpoint (nopen), sends the query (nsend), waits up to 5 s for the reply (ndata),
 * prints `DOMAIN A ADDRESS` per A record (or the reply's rcode), and closes the socket.
 * Exit 0 when a reply with at least one A record arrived, 1 otherwise, 2 on a bad argument.
 *
 * Build: make (in this directory), or cc -O2 -Wall -o test_dns test_dns.c
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MLET_NAME "test_dns"
#include "pktframe.h"

enum { UDP = 17, QID = 0x5d1e };

/* DOMAIN as DNS labels at q; returns the length, 0 if it cannot be one. */
static size_t encode_name(const char *domain, uint8_t *q, size_t cap) {
    size_t n = 0;
    const char *p = domain;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len > 63 || n + len + 2 > cap) return 0;
        q[n++] = (uint8_t)len;
        memcpy(q + n, p, len);
        n += len;
        p += len + (dot ? 1 : 0);
        if (dot && !*p) break; /* a trailing dot */
    }
    q[n++] = 0;
    return n;
}

/* Skips the (possibly compressed) name at msg[off]; returns the offset after it, 0 on error. */
static size_t skip_name(const uint8_t *msg, size_t len, size_t off) {
    while (off < len) {
        uint8_t c = msg[off];
        if (c == 0) return off + 1;
        if ((c & 0xC0) == 0xC0) return off + 2 <= len ? off + 2 : 0;
        off += 1 + c;
    }
    return 0;
}

/* Prints the A records of the reply; returns how many. */
static int print_answers(const char *domain, const uint8_t *msg, size_t len) {
    if (len < 12 || (msg[0] << 8 | msg[1]) != QID) {
        fprintf(stderr, MLET_NAME ": a reply that is not ours\n");
        return 0;
    }
    int rcode = msg[3] & 0x0F, qd = msg[4] << 8 | msg[5], an = msg[6] << 8 | msg[7];
    if (rcode) printf("%s rcode %d\n", domain, rcode);
    size_t off = 12;
    for (int i = 0; i < qd && off; i++) off = skip_name(msg, len, off) + 4;
    int found = 0;
    for (int i = 0; i < an && off && off < len; i++) {
        off = skip_name(msg, len, off);
        if (!off || off + 10 > len) break;
        int type = msg[off] << 8 | msg[off + 1];
        size_t rdlen = (size_t)(msg[off + 8] << 8 | msg[off + 9]);
        off += 10;
        if (off + rdlen > len) break;
        if (type == 1 && rdlen == 4) {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, msg + off, a, sizeof a);
            printf("%s A %s\n", domain, a);
            found++;
        }
        off += rdlen;
    }
    return found;
}

int main(int argc, char **argv) {
    if (argc > 3) {
        fprintf(stderr, "usage: test_dns [DOMAIN [IP[:PORT]]]\n");
        return 2;
    }
    const char *domain = argc > 1 ? argv[1] : "www.example.com";
    char server[64];
    snprintf(server, sizeof server, "%s", argc > 2 ? argv[2] : "8.8.8.8");
    int port = 53;
    char *colon = strchr(server, ':');
    if (colon) {
        *colon = 0;
        port = atoi(colon + 1);
    }
    struct in_addr ip;
    if (inet_pton(AF_INET, server, &ip) != 1 || port < 1 || port > 65535) {
        fprintf(stderr, MLET_NAME ": bad server %s (IPv4[:PORT])\n", argv[2]);
        return 2;
    }

    /* the query, first (nsend: sktid, family, proto, time u64, tag u16, raddr, rport, query) */
    uint8_t s[13 + 6 + 512];
    memset(s, 0, sizeof s);
    s[0] = 1; s[1] = 4; s[2] = UDP; s[12] = 1;
    memcpy(s + 13, &ip, 4);
    s[17] = (uint8_t)(port >> 8); s[18] = (uint8_t)port;
    uint8_t *q = s + 19;
    uint8_t header[12] = {QID >> 8, QID & 0xFF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(q, header, 12);
    size_t n = encode_name(domain, q + 12, 512 - 16);
    if (!n) {
        fprintf(stderr, MLET_NAME ": %s is not a domain name\n", domain);
        return 2;
    }
    uint8_t tail[4] = {0, 1, 0, 1}; /* A, IN */
    memcpy(q + 12 + n, tail, 4);

    /* nopen only now: a DOMAIN that cannot work exits 2 having sent nothing, which
       pktlab xpmgr takes as a usage error */
    uint8_t m[13] = {1, 4, UDP, 0, 1, 0, 0};
    uint32_t len;
    if (send_msg(NOPEN, m, sizeof m) || expect_result("nopen")) return 1;
    if (send_msg(NSEND, s, (uint32_t)(19 + 12 + n + 4)) || expect_result("nsend")) return 1;

    int found = -1;
    struct pollfd pfd = {0, POLLIN, 0};
    while (found < 0) {
        if (poll(&pfd, 1, 5000) <= 0) {
            fprintf(stderr, MLET_NAME ": no reply from %s within 5 s\n", server);
            break;
        }
        int t = recv_msg(&len);
        if (t < 0) return 1;
        if (t == NDATA && len > 17 && body[0] == 1) found = print_answers(domain, body + 17, len - 17);
    }
    fflush(stdout);
    uint8_t c = 1;
    send_msg(NCLOSE, &c, 1);
    expect_result("nclose");
    return found > 0 ? 0 : 1;
}
