/* A connect to an address whose SYNs are dropped (a blackhole), and what the program
 * sees once it has timed out: how long connect() itself blocked, poll's revents, then
 * read / write / SO_ERROR in the order argv[3] gives ("r" read, "w" write, "R" recv,
 * "S" send, "e" SO_ERROR, "p" poll, "c" connect again, "u" close it and send on a unix
 * socket given the same number, whose peer is gone). Printed, to compare a native run with a wrapped one.
 * argv: address port order [flags: "b" a blocking socket, "n" no TCP_SYNCNT]. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *name(int e)
{
    switch (e) {
    case 0: return "0";
    case EINPROGRESS: return "EINPROGRESS";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EISCONN: return "EISCONN";
    case EALREADY: return "EALREADY";
    case ENOTCONN: return "ENOTCONN";
    case EPIPE: return "EPIPE";
    case ECONNABORTED: return "ECONNABORTED";
    default: return strerror(e);
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void revents(int s)
{
    struct pollfd p = {s, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    printf(" revents%s%s%s%s", p.revents & POLLIN ? " IN" : "", p.revents & POLLOUT ? " OUT" : "",
           p.revents & POLLERR ? " ERR" : "", p.revents & POLLHUP ? " HUP" : "");
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    const char *flags = argc > 4 ? argv[4] : "";
    int blocking = strchr(flags, 'b') != NULL;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    int once = 1; /* one SYN retry: natively the connect times out after ~3 s, not 127 */
    if (strchr(flags, 'n') == NULL)
        setsockopt(s, IPPROTO_TCP, TCP_SYNCNT, &once, sizeof once);
    double t0 = now();
    int rc = connect(s, (struct sockaddr *)&to, sizeof to);
    int e = errno;
    double blocked = now() - t0;
    /* a bucket, not the time: under load the figures vary, the order of magnitude not */
    printf("connect %s %s", rc ? name(e) : "0", blocked < 0.5 ? "at-once" : "blocked");
    fprintf(stderr, "connect blocked %.6f s\n", blocked);
    if (!blocking && rc != 0 && e == EINPROGRESS) {
        struct pollfd p = {s, POLLOUT, 0};
        int n = poll(&p, 1, 60000);
        printf(" poll %d", n);
        fprintf(stderr, "ready after %.6f s\n", now() - t0);
    }
    for (const char *o = argv[3]; *o; o++) {
        char b[4];
        int err = -1;
        socklen_t l = sizeof err;
        ssize_t n;
        switch (*o) {
        case 'r':
            n = read(s, b, sizeof b);
            printf(" read %s", n < 0 ? name(errno) : n == 0 ? "EOF" : "data");
            break;
        case 'w':
            n = write(s, "x", 1);
            printf(" write %s", n < 0 ? name(errno) : "sent");
            break;
        case 'R':
            n = recv(s, b, sizeof b, 0);
            printf(" recv %s", n < 0 ? name(errno) : n == 0 ? "EOF" : "data");
            break;
        case 'S':
            n = send(s, "x", 1, MSG_NOSIGNAL);
            printf(" send %s", n < 0 ? name(errno) : "sent");
            break;
        case 'e':
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &l);
            printf(" SO_ERROR %s", name(err));
            break;
        case 'p':
            revents(s);
            break;
        case 'u': {
            int pair[2];
            close(s);
            if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) != 0 || (pair[0] != s && pair[1] != s))
                return 3;
            close(pair[0] == s ? pair[1] : pair[0]);
            n = send(s, "x", 1, 0);
            printf(" unix send %s", n < 0 ? name(errno) : "sent");
            break;
        }
        case 'c':
            rc = connect(s, (struct sockaddr *)&to, sizeof to);
            printf(" connect %s", rc ? name(errno) : "0");
            break;
        }
    }
    printf("\n");
    return 0;
}
