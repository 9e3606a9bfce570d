/*
 * http_get: a PacketLab mlet in plain C (no libpktlab): HTTP/1.0 GET through the endpoint.
 *
 *   pktlab xpmgr -c xpmgr.conf ./http_get IPV4 PORT [PATH]
 *
 * The experiment manager hands over a started session on fd 0 (unencrypted PacketLab
 * frames: type u8, body length u24 big-endian, body) and the endpoint's address in
 * EPADDR. This mlet reads the endpoint's HostID (mread), opens a TCP socket to IPV4:PORT
 * (nopen), waits for ESTABLISHED (nstat), sends the request (nsend), collects ndata until
 * the server closes (nstat PEERCLOSED), closes the socket (nclose) and prints the status
 * line and byte count. Exit 0 when a response arrived, 1 otherwise.
 *
 * Build: cc -O2 -Wall -o http_get http_get.c   (or: make, in this directory)
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MLET_NAME "http_get"
#include "pktframe.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: http_get IPV4 PORT [PATH]\n");
        return 2;
    }
    struct in_addr ip;
    if (inet_pton(AF_INET, argv[1], &ip) != 1) { fprintf(stderr, "http_get: bad IPv4 %s\n", argv[1]); return 2; }
    int port = atoi(argv[2]);
    const char *path = argc > 3 ? argv[3] : "/";
    const char *ep = getenv("EPADDR");
    uint8_t m[64];
    uint32_t len;
    int t;

    /* mread HostID: addr 0x10030000, 256 bytes */
    uint8_t mr[6] = {0x10, 0x03, 0x00, 0x00, 0x01, 0x00};
    if (send_msg(MREAD, mr, 6)) return 1;
    while ((t = recv_msg(&len)) != MDATA)
        if (t < 0 || t == RESULT) { fprintf(stderr, "http_get: mread failed\n"); return 1; }
    printf("endpoint %s hostid %.*s\n", ep ? ep : "?", (int)strnlen((char *)body + 4, len - 4), body + 4);

    /* nopen sktid 1, IPv4, TCP, rbufsz 64 KiB, laddr 0.0.0.0:0, raddr ip:port */
    memset(m, 0, sizeof m);
    m[0] = 1; m[1] = 4; m[2] = 6;
    m[3] = 0; m[4] = 1; m[5] = 0; m[6] = 0;
    memcpy(m + 13, &ip, 4);
    m[17] = (uint8_t)(port >> 8); m[18] = (uint8_t)port;
    if (send_msg(NOPEN, m, 19) || expect_result("nopen")) return 1;
    for (;;) {
        t = recv_msg(&len);
        if (t < 0) return 1;
        if (t == NSTAT && len == 12) { fprintf(stderr, "http_get: connect failed (nstat code %d)\n", body[11]); return 1; }
        if (t == NSTAT) break; /* ESTABLISHED carries the peer's address */
    }

    /* nsend: sktid, family, proto, time u64 (0 = now), tag u16, data */
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: packetlab-c-mlet\r\n\r\n", path, argv[1]);
    uint8_t *s = malloc(13 + (size_t)n);
    memset(s, 0, 13);
    s[0] = 1; s[1] = 4; s[2] = 6; s[12] = 1;
    memcpy(s + 13, req, (size_t)n);
    if (send_msg(NSEND, s, 13 + (uint32_t)n) || expect_result("nsend")) return 1;
    free(s);

    size_t total = 0;
    char first[256] = "";
    for (;;) {
        t = recv_msg(&len);
        if (t < 0) break;
        if (t == NDATA && len > 11 && body[0] == 1) {
            if (!total) snprintf(first, sizeof first, "%.*s", (int)(len - 11), body + 11);
            total += len - 11;
        }
        if (t == NSTAT && len == 12 && body[0] == 1) break; /* peer closed (or reset) */
    }
    uint8_t c = 1;
    send_msg(NCLOSE, &c, 1);
    expect_result("nclose");
    first[strcspn(first, "\r\n")] = 0;
    printf("%s (%zu bytes)\n", total ? first : "(no response)", total);
    return total ? 0 : 1;
}
