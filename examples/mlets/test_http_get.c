/*
 * test_http_get: the reference's example mlet of that name, in plain C (no libpktlab):
 * an HTTP/1.0 GET through the endpoint, the whole response printed on stdout.
 *
 *   pktlab xpmgr examples/mlets/test_http_get [DOMAIN[:PORT] [PATH]]
 *
 * Same arguments as the reference's test_http_get (DOMAIN default www.example.com, PATH
 * default /), plus an optional :PORT (default 80). DOMAIN is resolved here, on the
 * manager's host (IPv4: the endpoint is asked for an IPv4 TCP socket). The mlet opens a
 * TCP socket on the endpoint (nopen), waits for ESTABLISHED (nstat), sends the request
 * (nsend), writes each ndata to stdout as it comes until the server closes, and closes the
 * socket (nclose). Exit 0 when a response arrived, 1 otherwise, 2 on a bad argument.
 *
 * Build: make (in this directory), or cc -O2 -Wall -o test_http_get test_http_get.c
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MLET_NAME "test_http_get"
#include "pktframe.h"

int main(int argc, char **argv) {
    if (argc > 3) {
        fprintf(stderr, "usage: test_http_get [DOMAIN[:PORT] [PATH]]\n");
        return 2;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", argc > 1 ? argv[1] : "www.example.com");
    const char *path = argc > 2 ? argv[2] : "/";
    const char *port = "80";
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int err = getaddrinfo(host, port, &hints, &ai);
    if (err) {
        fprintf(stderr, MLET_NAME ": cannot resolve %s port %s: %s\n", host, port, gai_strerror(err));
        return 2;
    }
    struct sockaddr_in sin;
    memcpy(&sin, ai->ai_addr, sizeof sin);
    freeaddrinfo(ai);

    /* The request is built before the first message: an argument that cannot work
       exits 2 having sent nothing, which pktlab xpmgr takes as a usage error. */
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    if (n < 0 || n >= (int)sizeof req) {
        fprintf(stderr, MLET_NAME ": request too long (PATH of %zu characters)\n", strlen(path));
        return 2;
    }

    /* nopen sktid 1, IPv4, TCP, rbufsz 64 KiB, laddr 0.0.0.0:0, raddr */
    uint8_t m[19];
    uint32_t len;
    int t;
    memset(m, 0, sizeof m);
    m[0] = 1; m[1] = 4; m[2] = 6;
    m[4] = 1;
    memcpy(m + 13, &sin.sin_addr, 4);
    memcpy(m + 17, &sin.sin_port, 2);
    if (send_msg(NOPEN, m, sizeof m) || expect_result("nopen")) return 1;
    for (;;) {
        t = recv_msg(&len);
        if (t < 0) return 1;
        if (t == NSTAT && len == 12) {
            fprintf(stderr, MLET_NAME ": connect to %s failed (nstat code %d)\n", host, body[11]);
            return 1;
        }
        if (t == NSTAT) break; /* ESTABLISHED carries the peer's address */
    }

    /* nsend: sktid, family, proto, time u64 (0 = now), tag u16, data (built above) */
    uint8_t s[13 + sizeof req];
    memset(s, 0, 13);
    s[0] = 1; s[1] = 4; s[2] = 6; s[12] = 1;
    memcpy(s + 13, req, (size_t)n);
    if (send_msg(NSEND, s, 13 + (uint32_t)n) || expect_result("nsend")) return 1;

    size_t total = 0;
    for (;;) {
        t = recv_msg(&len);
        if (t < 0) break;
        if (t == NDATA && len > 11 && body[0] == 1) {
            fwrite(body + 11, 1, len - 11, stdout);
            total += len - 11;
        }
        if (t == NSTAT && len == 12 && body[0] == 1) break; /* peer closed (or reset) */
    }
    fflush(stdout);
    uint8_t c = 1;
    send_msg(NCLOSE, &c, 1);
    expect_result("nclose");
    if (!total) fprintf(stderr, MLET_NAME ": no response from %s\n", host);
    return total ? 0 : 1;
}
