/* Non-blocking connects to a closed and to an open port, and how an event loop sees
 * them: connect's result, poll / select / epoll readiness, SO_ERROR, connect again,
 * read. Printed, to compare a native run with a wrapped one. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *name(int e)
{
    switch (e) {
    case 0: return "0";
    case EINPROGRESS: return "EINPROGRESS";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EISCONN: return "EISCONN";
    case EALREADY: return "EALREADY";
    case ENOTCONN: return "ENOTCONN";
    default: return strerror(e);
    }
}

static void bits(const char *what, int ev)
{
    printf(" %s%s%s%s%s", what, ev & POLLIN ? " IN" : "", ev & POLLOUT ? " OUT" : "",
           ev & POLLERR ? " ERR" : "", ev & POLLHUP ? " HUP" : "");
}

static void one(int family, const char *label, struct sockaddr_storage *to, int how)
{
    int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    int rc = connect(s, (struct sockaddr *)to, len);
    printf("%s %s connect %s", family == AF_INET ? "v4" : "v6", label, rc ? name(errno) : "0");
    if (how == 0) {
        struct pollfd p = {s, POLLIN | POLLOUT, 0};
        printf(" poll %d", poll(&p, 1, 5000));
        bits("revents", p.revents);
    } else if (how == 1) {
        fd_set r, w, x;
        FD_ZERO(&r); FD_ZERO(&w); FD_ZERO(&x);
        FD_SET(s, &r); FD_SET(s, &w); FD_SET(s, &x);
        struct timeval tv = {5, 0};
        int n = select(s + 1, &r, &w, &x, &tv);
        printf(" select %d r%d w%d x%d", n, FD_ISSET(s, &r), FD_ISSET(s, &w), FD_ISSET(s, &x));
    } else {
        int ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = 77}, out = {0};
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
        printf(" epoll %d", epoll_wait(ep, &out, 1, 5000));
        bits("events", (int)out.events);
        close(ep);
    }
    if (how == 0) { /* SO_ERROR, read once, then again */
        int e = -1, e2 = -1;
        socklen_t l = sizeof e;
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &l);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e2, &l);
        printf(" SO_ERROR %s then %s", name(e), name(e2));
    } else if (how == 1) { /* connect again: the outcome, then EISCONN or a new try */
        for (int i = 0; i < 2; i++) {
            rc = connect(s, (struct sockaddr *)to, len);
            printf(" again %s", rc ? name(errno) : "0");
        }
    } else { /* read: a refused socket's error, which SO_ERROR then no longer has */
        char b[4];
        ssize_t got = read(s, b, sizeof b);
        int e = -1;
        socklen_t l = sizeof e;
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &l);
        printf(" read %s SO_ERROR %s", got < 0 ? name(errno) : "data", name(e));
    }
    struct pollfd p = {s, POLLOUT, 0};
    poll(&p, 1, 0);
    bits("after", p.revents);
    printf("\n");
    close(s);
}

int main(int argc, char **argv)
{
    int family = argc > 1 && strcmp(argv[1], "6") == 0 ? AF_INET6 : AF_INET;
    struct sockaddr_storage open_at, closed_at;
    memset(&open_at, 0, sizeof open_at);
    open_at.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ((struct sockaddr_in *)&open_at)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        ((struct sockaddr_in6 *)&open_at)->sin6_addr = in6addr_loopback;
    closed_at = open_at;
    socklen_t len = sizeof open_at;
    int l = socket(family, SOCK_STREAM, 0), c = socket(family, SOCK_STREAM, 0);
    /* closed: a port bound and not listening, so nothing else takes it meanwhile */
    if (bind(l, (struct sockaddr *)&open_at, len) || listen(l, 64) ||
        getsockname(l, (struct sockaddr *)&open_at, &len) ||
        bind(c, (struct sockaddr *)&closed_at, len) ||
        getsockname(c, (struct sockaddr *)&closed_at, &len)) {
        perror("set-up");
        return 2;
    }
    for (int how = 0; how < 3; how++) {
        one(family, "closed", &closed_at, how);
        one(family, "open", &open_at, how);
    }
    return 0;
}
