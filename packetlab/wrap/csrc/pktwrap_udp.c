/* pktwrap_udp: LD_PRELOAD UDP redirection for `pktlab wrap`.
 *
 * proxychains-ng carries TCP only. This part of the shim sends a wrapped program's UDP
 * datagrams through the endpoint without touching their payload: a destination D is
 * replaced by a loopback relay address L that the wrapper opened for D (asked once over
 * the unix socket $PKTLAB_WRAP_UDP), and L is replaced by D again wherever the program
 * is told a peer address (recvfrom, recvmsg, recvmmsg, getpeername). Datagrams the
 * program sends to L leave the endpoint for D; D's answers come back from L.
 * Loopback destinations are relayed too (the endpoint's loopback is not ours).
 * Map request: family(1) port(2, network order) addr(4 or 16); answer: port(2), 0 = no.
 * The same hooks mark the virtual time of TCP connects and socket sends for --fidelity
 * (pktwrap_mark, pktwrap_clock.c).
 * Name lookups are pktwrap_names.c's. getsockname() shows the endpoint's end of a TCP
 * connection ("S") and of a UDP socket that talks through relay ports ("U").
 * IP_TTL on UDP sockets is refused: the endpoint's sockets have no TTL control.
 * Raw and ICMP sockets cannot go through the endpoint (it offers them only to pktlab
 * run's raw experiments): socket() refuses them, as the kernel refuses an unprivileged
 * user, instead of letting `ping` or `traceroute -I` measure from this host unnoticed.
 */
#include "pktwrap.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>

#define MAX_MAPS 512
#define MAX_TRACKED_FD 65536

void pktwrap_mark(int slot);
#define MARK_CONNECT 2
#define MARK_SEND 3

/* The failure of a non-blocking TCP connect, for SO_ERROR (session 28, wrap28): natively
 * such a connect is EINPROGRESS and its failure comes through SO_ERROR; proxychains
 * connects inside the call and failed it at once (ECONNREFUSED for a closed port, and
 * SO_ERROR then read 0), so a program that waits for writability and asks SO_ERROR, as
 * an event loop does, read a refused connect as made. Kept until read once. */
static int pending_err[MAX_TRACKED_FD];
/* Or'ed into pending_err when the kernel holds an error on the socket too (arm_error). */
#define KERNEL_ARMED 0x10000
/* A non-blocking connect that succeeded and was answered EINPROGRESS (session 29): the
 * next connect() on it is 0, as natively once the handshake is done, then EISCONN. */
static unsigned char shown_pending[MAX_TRACKED_FD];

/* Non-blocking TCP connects parked on the wrapper's parking port (session 31): the
 * loopback port (network order) of each fd's socket while the endpoint connects, 0 when
 * none (parked.py has the why). */
static in_port_t parked_port[MAX_TRACKED_FD];
/* The port a socket without one took for a parking that then failed in the call (session
 * 32): natively such a connect fails before the socket is bound (getsockname 0.0.0.0:0,
 * which Node prints); this machine's kernel (gVisor) keeps the port over the undoing
 * connect(AF_UNSPEC). getsockname shows 0 while the socket still has it. */
static in_port_t unparked_port[MAX_TRACKED_FD];

/* fds that connect()ed over TCP/IP: their write()s are sends worth marking */
static unsigned char tcp_fd[MAX_TRACKED_FD / 8];

static void track_fd(int fd)
{
    if (fd >= 0 && fd < MAX_TRACKED_FD)
        __atomic_or_fetch(&tcp_fd[fd / 8], (unsigned char)(1u << (fd % 8)), __ATOMIC_RELAXED);
}

static int tracked(int fd)
{
    return fd >= 0 && fd < MAX_TRACKED_FD &&
           (__atomic_load_n(&tcp_fd[fd / 8], __ATOMIC_RELAXED) >> (fd % 8)) & 1;
}

/* fds of UDP sockets that sent to or connected to a relay port: their getsockname asks */
static unsigned char udp_fd[MAX_TRACKED_FD / 8];

static void track_udp(int fd)
{
    if (fd >= 0 && fd < MAX_TRACKED_FD)
        __atomic_or_fetch(&udp_fd[fd / 8], (unsigned char)(1u << (fd % 8)), __ATOMIC_RELAXED);
}

static int udp_tracked(int fd)
{
    return fd >= 0 && fd < MAX_TRACKED_FD &&
           (__atomic_load_n(&udp_fd[fd / 8], __ATOMIC_RELAXED) >> (fd % 8)) & 1;
}

typedef int (*getsockname_fn)(int, struct sockaddr *, socklen_t *);

static in_port_t port_of(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                    : ((const struct sockaddr_in6 *)sa)->sin6_port;
}

/* The socket's own (loopback) port, network order, and its family; 0: none yet. */
static in_port_t own_port(int fd, int *family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (NEXT(getsockname)(fd, (struct sockaddr *)&ss, &len) != 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return 0;
    if (family != NULL)
        *family = ss.ss_family;
    return port_of((struct sockaddr *)&ss);
}

/* The own ports of UDP sockets that talk through relay ports, per family. A dup()ed fd
 * is the same socket under another number: it is known by its port, which the wrapper
 * keys its endpoint socket by too (not across exec: these tables start empty). Before session 25 only
 * the fd that sent was known, and getsockname of its dup showed the loopback port. */
static unsigned char udp_port4[65536 / 8], udp_port6[65536 / 8];
/* The port recorded for each fd (host order; 0: none yet), so a socket that sends many
 * datagrams asks the kernel once; socket() clears it when it hands out the fd again. */
static in_port_t udp_fd_port[MAX_TRACKED_FD];

static void track_udp_port(int fd)
{
    if (fd >= 0 && fd < MAX_TRACKED_FD && __atomic_load_n(&udp_fd_port[fd], __ATOMIC_RELAXED))
        return;
    int family = 0;
    in_port_t port = ntohs(own_port(fd, &family));
    if (fd >= 0 && fd < MAX_TRACKED_FD)
        __atomic_store_n(&udp_fd_port[fd], port, __ATOMIC_RELAXED);
    unsigned char *set = family == AF_INET ? udp_port4 : udp_port6;
    if (port != 0)
        __atomic_or_fetch(&set[port / 8], (unsigned char)(1u << (port % 8)), __ATOMIC_RELAXED);
}

static int udp_port_tracked(const struct sockaddr *sa)
{
    in_port_t port = ntohs(port_of(sa));
    const unsigned char *set = sa->sa_family == AF_INET ? udp_port4 : udp_port6;
    return port != 0 && (__atomic_load_n(&set[port / 8], __ATOMIC_RELAXED) >> (port % 8)) & 1;
}

struct map {
    struct sockaddr_storage dst, relay;
};

static struct map maps[MAX_MAPS];
static int nmaps;
pthread_mutex_t pktwrap_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int (*socket_fn)(int, int, int);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef int (*sendmmsg_fn)(int, struct mmsghdr *, unsigned int, int);
typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
typedef int (*getpeername_fn)(int, struct sockaddr *, socklen_t *);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*__read_chk_fn)(int, void *, size_t, size_t);
typedef ssize_t (*__recv_chk_fn)(int, void *, size_t, size_t, int);
typedef ssize_t (*__recvfrom_chk_fn)(int, void *, size_t, size_t, int, struct sockaddr *,
                                     socklen_t *);

/* NEXT(name), looked up once: for hooks on every read and write of a program (a dlsym()
 * costs ~0.15 us a call, getsockopt's note below). */
#define NEXT_ONCE(name)                                                                    \
    ({                                                                                     \
        static name##_fn found_;                                                           \
        name##_fn f_ = __atomic_load_n(&found_, __ATOMIC_RELAXED);                         \
        if (f_ == NULL) {                                                                  \
            f_ = NEXT(name);                                                               \
            __atomic_store_n(&found_, f_, __ATOMIC_RELAXED);                               \
        }                                                                                  \
        f_;                                                                                \
    })

const char *pktwrap_ctl_path(void)
{
    const char *p = getenv("PKTLAB_WRAP_UDP");
    return (p != NULL && *p != '\0') ? p : NULL;
}

static int inet_type(int fd, const struct sockaddr *sa)
{
    if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return 0;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return 0;
    return type;
}

static int is_udp_inet(int fd, const struct sockaddr *sa)
{
    return inet_type(fd, sa) == SOCK_DGRAM;
}

static int same(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

static socklen_t addr_len(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* An IPv4/IPv6 address shorter than the kernel takes (EINVAL natively; 24 bytes is an
 * IPv6 address without its scope id, which Linux accepts). Relayed, a short one "worked"
 * and the shim read past what the program gave (before session 25); the kernel refuses
 * it now. */
#define IN6_MIN_LEN 24
static int short_addr(const struct sockaddr *sa, socklen_t len)
{
    return sa != NULL && ((sa->sa_family == AF_INET && len < sizeof(struct sockaddr_in)) ||
                          (sa->sa_family == AF_INET6 && len < IN6_MIN_LEN));
}

static int socket_fd_unix(void)
{
    return NEXT(socket)(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

/* The wrapper's socket cannot be reached: the program chroot()ed (scamper's privilege
 * separation does) or lives in another mount namespace. Every UDP send then fails
 * "Network is unreachable" and lookups go to proxychains' proxy_dns (placeholders in
 * 224.0.0.0/8, "names resolved by libc" said before session 25, wrapb25); before
 * session 25 nothing said why. */
static void unreachable_once(void)
{
    static int told;
    if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED)) {
        static const char msg[] = "pktlab wrap: a wrapped process cannot reach pktlab wrap's "
                                  "socket (it chroot()ed?): its UDP datagrams are refused "
                                  "(ENETUNREACH) and its names get proxychains' "
                                  "placeholder addresses (224.0.0.x: TCP to them still "
                                  "goes through the endpoint)\n";
        ssize_t rc = NEXT(write)(2, msg, sizeof msg - 1);
        (void)rc;
    }
}

/* Ask the wrapper for D's relay port. */
static int ask(const struct sockaddr *dst, struct sockaddr_storage *relay)
{
    const char *path = pktwrap_ctl_path();
    if (path == NULL)
        return -1;
    unsigned char req[19];
    size_t n;
    if (dst->sa_family == AF_INET) {
        const struct sockaddr_in *d = (const void *)dst;
        req[0] = 4;
        memcpy(req + 1, &d->sin_port, 2);
        memcpy(req + 3, &d->sin_addr, 4);
        n = 7;
    } else {
        const struct sockaddr_in6 *d = (const void *)dst;
        req[0] = 6;
        memcpy(req + 1, &d->sin6_port, 2);
        memcpy(req + 3, &d->sin6_addr, 16);
        n = 19;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strncpy(un.sun_path, path, sizeof un.sun_path - 1);
    unsigned char ans[2];
    int reached = NEXT(connect)(s, (struct sockaddr *)&un, sizeof un) == 0;
    if (!reached)
        unreachable_once();
    int ok = reached && write(s, req, n) == (ssize_t)n && read(s, ans, 2) == 2;
    close(s);
    if (!ok || (ans[0] == 0 && ans[1] == 0))
        return -1;
    memset(relay, 0, sizeof *relay);
    if (dst->sa_family == AF_INET) {
        struct sockaddr_in *r = (void *)relay;
        r->sin_family = AF_INET;
        r->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        memcpy(&r->sin_port, ans, 2);
    } else {
        struct sockaddr_in6 *r = (void *)relay;
        r->sin6_family = AF_INET6;
        r->sin6_addr = in6addr_loopback;
        memcpy(&r->sin6_port, ans, 2);
    }
    return 0;
}

/* D -> L (asking the wrapper the first time); 0 if D is not to be relayed. */
static int to_relay(const struct sockaddr *dst, struct sockaddr_storage *relay)
{
    if (pktwrap_ctl_path() == NULL)
        return 0;
    pthread_mutex_lock(&pktwrap_lock);
    for (int i = 0; i < nmaps; i++) {
        if (same(dst, &maps[i].dst)) {
            *relay = maps[i].relay;
            pthread_mutex_unlock(&pktwrap_lock);
            return 1;
        }
        if (same(dst, &maps[i].relay)) { /* already a relay address */
            pthread_mutex_unlock(&pktwrap_lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&pktwrap_lock);
    struct sockaddr_storage r;
    if (ask(dst, &r) != 0)
        return -1;
    pthread_mutex_lock(&pktwrap_lock);
    if (nmaps < MAX_MAPS) {
        memset(&maps[nmaps].dst, 0, sizeof maps[nmaps].dst);
        /* not the IPv6 scope id: the program may have given 24 bytes */
        memcpy(&maps[nmaps].dst, dst,
               dst->sa_family == AF_INET ? sizeof(struct sockaddr_in) : IN6_MIN_LEN);
        maps[nmaps].relay = r;
        nmaps++;
    }
    pthread_mutex_unlock(&pktwrap_lock);
    *relay = r;
    return 1;
}

static int local_answer(const unsigned char *ans, size_t got, struct sockaddr_storage *out);

/* Loopback ports known not to be relay ports (a ring): each is asked about once. */
#define MAX_NOT_RELAY 64
static in_port_t not_relay[MAX_NOT_RELAY];
static int not_relay_next;

/* A relay port this process never asked for: its UDP socket came over exec() (an
 * inetd-like hand-off) and its datagrams from D arrive from D's relay port, which the
 * new program's shim has no entry for. Asks the wrapper ("D" port) and keeps the
 * answer as if this process had asked; before session 25 (wrapb25) the program saw
 * the relay port as its peer. 0: `dst` is D. */
static int relay_destination(const struct sockaddr *sa, struct sockaddr_storage *dst)
{
    in_port_t port;
    if (sa->sa_family == AF_INET &&
        ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
        port = ((const struct sockaddr_in *)sa)->sin_port;
    else if (sa->sa_family == AF_INET6 &&
             IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr))
        port = ((const struct sockaddr_in6 *)sa)->sin6_port;
    else
        return -1;
    if (pktwrap_ctl_path() == NULL)
        return -1;
    pthread_mutex_lock(&pktwrap_lock);
    int known = 0;
    for (int i = 0; i < MAX_NOT_RELAY && !known; i++)
        known = not_relay[i] == port;
    pthread_mutex_unlock(&pktwrap_lock);
    if (known)
        return -1;
    unsigned char req[3] = {'D'}, ans[19];
    size_t got;
    memcpy(req + 1, &port, 2);
    if (pktwrap_call(req, 3, ans, sizeof ans, &got) != 0)
        return -1;
    int rc = local_answer(ans, got, dst);
    pthread_mutex_lock(&pktwrap_lock);
    if (rc != 0) {
        not_relay[not_relay_next] = port;
        not_relay_next = (not_relay_next + 1) % MAX_NOT_RELAY;
    } else if (nmaps < MAX_MAPS) {
        maps[nmaps].dst = *dst;
        memset(&maps[nmaps].relay, 0, sizeof maps[nmaps].relay);
        memcpy(&maps[nmaps].relay, sa, addr_len(sa->sa_family));
        nmaps++;
    }
    pthread_mutex_unlock(&pktwrap_lock);
    return rc;
}

/* L -> D in a peer address the program is given: 1 if it was a relay address; -1 an
 * IPv4/IPv6 address that is not one (a datagram that reached this host directly); 0
 * none. */
static int from_relay(struct sockaddr *sa, socklen_t *len)
{
    if (sa == NULL || len == NULL || *len < sizeof(sa_family_t))
        return 0;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return 0;
    int found = -1;
    pthread_mutex_lock(&pktwrap_lock);
    for (int i = 0; i < nmaps; i++) {
        if (same(sa, &maps[i].relay)) {
            socklen_t n = addr_len(maps[i].dst.ss_family);
            memcpy(sa, &maps[i].dst, *len < n ? *len : n);
            *len = n;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&pktwrap_lock);
    return found;
}

/* The IPv4/IPv6 UDP sockets this process had when it started: they came over exec()
 * (an inetd-like hand-off), so datagrams may reach them from relay ports that only the
 * process before exec() asked for. Known by inode, so a dup() of one is one too. An
 * unconnected one showed the relay port as every datagram's source before session 26
 * (wrap26). Not those received later over a unix socket (SCM_RIGHTS). */
#define MAX_INHERITED 64
static struct {
    dev_t dev;
    ino_t ino;
} inherited[MAX_INHERITED];
static int ninherited;

static void list_at_start(void);

__attribute__((constructor)) static void find_inherited(void)
{
    if (pktwrap_ctl_path() == NULL)
        return;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && ninherited < MAX_INHERITED) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name), type = 0, domain = 0;
        socklen_t tlen = sizeof type, dlen = sizeof domain;
        struct stat st;
        if (fd == dirfd(dir) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_DGRAM ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) != 0 ||
            (domain != AF_INET && domain != AF_INET6))
            continue;
        inherited[ninherited].dev = st.st_dev;
        inherited[ninherited].ino = st.st_ino;
        ninherited++;
    }
    closedir(dir);
    if (ninherited > 0)
        list_at_start();
}

/* Each fd's answer (0: not asked, 1: no, 2: yes), so that a socket serving a burst
 * spends no system call more per datagram; socket() clears it when it hands the number
 * out again (a dup2() over it is not seen). */
static unsigned char inherited_fd[MAX_TRACKED_FD];

static int is_inherited(int fd)
{
    struct stat st;
    if (ninherited == 0 || fd < 0) /* ninherited: set before main(), no lock */
        return 0;
    int known = fd < MAX_TRACKED_FD ? __atomic_load_n(&inherited_fd[fd], __ATOMIC_RELAXED) : 0;
    if (known)
        return known == 2;
    int found = 0;
    if (fstat(fd, &st) == 0)
        for (int i = 0; i < ninherited && !found; i++)
            found = inherited[i].ino == st.st_ino && inherited[i].dev == st.st_dev;
    if (fd < MAX_TRACKED_FD)
        __atomic_store_n(&inherited_fd[fd], found ? 2 : 1, __ATOMIC_RELAXED);
    return found;
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

/* libc's clock (the vDSO's: no system call per datagram), not our hook's, which
 * --fidelity shifts */
static void real_monotonic(struct timespec *now)
{
    static clock_gettime_fn real;
    clock_gettime_fn f = __atomic_load_n(&real, __ATOMIC_RELAXED);
    if (f == NULL) {
        f = NEXT(clock_gettime);
        __atomic_store_n(&real, f, __ATOMIC_RELAXED);
    }
    if (f == NULL || f(CLOCK_MONOTONIC, now) != 0)
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, now);
}

/* The relay ports of this run as the wrapper listed them ("L"), asked again at most once
 * a second when a source is not among them: for sockets that came over exec(), whose
 * every loopback source may be one. Asking "D" about each new source instead cost such
 * a socket serving local clients (systemd-style socket activation) 2/3 of a burst of
 * 1000 datagrams (256-325 of 1000 received, 599-992 without the question). */
static unsigned char listed[65536 / 8];
static long listed_at = -1; /* CLOCK_MONOTONIC seconds of the list; -1: none yet */

#define LIST_MAX (2 + 2 * MAX_MAPS)

static void take_list(const unsigned char *ans, size_t got, long when)
{
    if (got < 2)
        return;
    pthread_mutex_lock(&pktwrap_lock);
    memset(listed, 0, sizeof listed);
    size_t n = (size_t)ans[0] << 8 | ans[1];
    for (size_t i = 0; i < n && 3 + 2 * i < got; i++) {
        unsigned int p = (unsigned int)ans[2 + 2 * i] << 8 | ans[3 + 2 * i];
        listed[p / 8] |= (unsigned char)(1u << (p % 8));
    }
    listed_at = when;
    pthread_mutex_unlock(&pktwrap_lock);
}

/* The first list, before main() when the process has a socket from exec(): asked at
 * its first datagram instead, the wait would fall in the middle of a burst. Raw system
 * calls: proxychains may not be set up yet. */
static void list_at_start(void)
{
    const char *path = pktwrap_ctl_path();
    struct timespec now;
    int s = (int)syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strncpy(un.sun_path, path, sizeof un.sun_path - 1);
    unsigned char ans[LIST_MAX];
    size_t got = 0;
    if (syscall(SYS_connect, s, &un, sizeof un) == 0 && syscall(SYS_write, s, "L", 1) == 1) {
        for (;;) {
            long r = syscall(SYS_read, s, ans + got, sizeof ans - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || (got += (size_t)r) == sizeof ans)
                break;
        }
    }
    syscall(SYS_close, s);
    real_monotonic(&now);
    take_list(ans, got, now.tv_sec);
}

static int listed_relay(const struct sockaddr *sa)
{
    if (!(sa->sa_family == AF_INET &&
          ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_LOOPBACK)) &&
        !(sa->sa_family == AF_INET6 &&
          IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr)))
        return 0; /* relay ports are on loopback */
    unsigned int h = ntohs(port_of(sa));
    for (int pass = 0; pass < 2; pass++) {
        struct timespec now;
        real_monotonic(&now);
        pthread_mutex_lock(&pktwrap_lock);
        int known = (listed[h / 8] >> (h % 8)) & 1;
        int stale = listed_at < 0 || now.tv_sec > listed_at;
        pthread_mutex_unlock(&pktwrap_lock);
        if (known || !stale || pass == 1)
            return known;
        unsigned char ans[LIST_MAX];
        size_t got = 0;
        if (pktwrap_call((const unsigned char *)"L", 1, ans, sizeof ans, &got) != 0)
            return 0;
        take_list(ans, got, now.tv_sec);
    }
    return 0;
}

/* from_relay, and the wrapper's answer ("D") for a loopback source this process never
 * asked a relay port for, when it may be one: the peer of a connected UDP socket, or
 * any source of an unconnected socket that came over exec(). Only then, as asking for
 * every datagram from a new loopback port cost a wrapped UDP server two thirds of a
 * burst from 1000 local clients. */
static int from_relay_of(int fd, struct sockaddr *sa, socklen_t *len)
{
    int found = from_relay(sa, len);
    if (found >= 0 || fd < 0 || pktwrap_ctl_path() == NULL)
        return found;
    struct sockaddr_storage peer, dst;
    socklen_t plen = sizeof peer;
    int connected = NEXT(getpeername)(fd, (struct sockaddr *)&peer, &plen) == 0;
    if ((connected ? !same(sa, &peer) : !is_inherited(fd) || !listed_relay(sa)) ||
        inet_type(fd, sa) != SOCK_DGRAM || relay_destination(sa, &dst) != 0)
        return found;
    socklen_t n = addr_len(dst.ss_family);
    memcpy(sa, &dst, *len < n ? *len : n);
    *len = n;
    return 1;
}

/* Peers whose datagrams reached a program's UDP socket directly, not through a relay
 * port: the program serves them (`nc -u -l`, a DNS server script), and its answers must
 * leave from this host and from the port they were sent to. Relayed, they left the
 * endpoint from another port, and a client whose socket is connected (dig) dropped them
 * (before session 25). Kept by the socket's own port, the oldest replaced. */
#define MAX_DIRECT 256
static struct {
    int family;
    in_port_t own;
    struct sockaddr_storage peer;
} direct[MAX_DIRECT];
static int ndirect, direct_next;

static void remember_direct(int fd, const struct sockaddr *peer, socklen_t len)
{
    if (pktwrap_ctl_path() == NULL || len < addr_len(peer->sa_family) ||
        inet_type(fd, peer) != SOCK_DGRAM)
        return;
    int family = 0;
    in_port_t own = own_port(fd, &family);
    pthread_mutex_lock(&pktwrap_lock);
    int i = 0;
    for (; i < ndirect; i++)
        if (direct[i].own == own && direct[i].family == family && same(peer, &direct[i].peer))
            break;
    if (i == ndirect) {
        i = direct_next;
        direct_next = (direct_next + 1) % MAX_DIRECT;
        if (ndirect < MAX_DIRECT)
            ndirect++;
        direct[i].family = family;
        direct[i].own = own;
        memset(&direct[i].peer, 0, sizeof direct[i].peer);
        memcpy(&direct[i].peer, peer, addr_len(peer->sa_family));
    }
    pthread_mutex_unlock(&pktwrap_lock);
}

static int is_direct(int fd, const struct sockaddr *dst)
{
    if (__atomic_load_n(&ndirect, __ATOMIC_RELAXED) == 0)
        return 0; /* a client: nothing reached it directly (no syscall spent) */
    int family = 0, found = 0;
    in_port_t own = own_port(fd, &family);
    pthread_mutex_lock(&pktwrap_lock);
    for (int i = 0; i < ndirect && !found; i++)
        found = direct[i].own == own && direct[i].family == family && same(dst, &direct[i].peer);
    pthread_mutex_unlock(&pktwrap_lock);
    return found;
}

/* A destination the kernel refuses at once: port 0 (EINVAL), and the IPv4 limited
 * broadcast on a socket without SO_BROADCAST (EACCES). Relayed, the send "worked" and the
 * datagram went nowhere (before session 25); left to the kernel, the program gets its
 * native error. */
static int kernel_refuses(int fd, const struct sockaddr *dst)
{
    if (port_of(dst) == 0)
        return 1;
    if (dst->sa_family != AF_INET ||
        ((const struct sockaddr_in *)dst)->sin_addr.s_addr != htonl(INADDR_BROADCAST))
        return 0;
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, &len) == 0 && !on;
}

/* D -> L for datagrams to D from `fd`, as to_relay, unless D talks to `fd` directly or
 * the kernel is to answer. */
static int relay_for(int fd, const struct sockaddr *dst, struct sockaddr_storage *relay)
{
    return is_direct(fd, dst) || kernel_refuses(fd, dst) ? 0 : to_relay(dst, relay);
}

/* What proxychains' connect() loses: it connects a new socket to our SOCKS server and
 * dup2()s it over the program's, so the options the program set before connect() were
 * gone (SO_RCVTIMEO: a read that should time out waited for ever; TCP_NODELAY: Nagle on
 * the program's writes) and the fd lost FD_CLOEXEC (an exec()ed child held the
 * connection open after the program closed it). Kept and put back on the new socket.
 * Not carried: IP/IPv6-level options (proxychains' socket is IPv4 whatever the program's
 * family; a TOS or TTL would not reach the endpoint anyway), SO_RCVBUF/SO_SNDBUF
 * (setting them back would turn the loopback hop's autotuning off), SO_BINDTODEVICE
 * (the loopback hop must stay on lo). Only the options the program set (our setsockopt
 * sees them) are read and put back: reading all of them cost ~200 us a connect here. */
static const struct {
    int level, name;
} carried[] = {
    {SOL_SOCKET, SO_RCVTIMEO},        {SOL_SOCKET, SO_SNDTIMEO},
    {SOL_SOCKET, SO_KEEPALIVE},       {SOL_SOCKET, SO_LINGER},
    {SOL_SOCKET, SO_REUSEADDR},       {SOL_SOCKET, SO_REUSEPORT},
    {SOL_SOCKET, SO_OOBINLINE},       {SOL_SOCKET, SO_PRIORITY},
    {SOL_SOCKET, SO_RCVLOWAT},        {SOL_SOCKET, SO_MARK},
    {IPPROTO_TCP, TCP_NODELAY},       {IPPROTO_TCP, TCP_CORK},
    {IPPROTO_TCP, TCP_KEEPIDLE},      {IPPROTO_TCP, TCP_KEEPINTVL},
    {IPPROTO_TCP, TCP_KEEPCNT},       {IPPROTO_TCP, TCP_USER_TIMEOUT},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT}, {IPPROTO_TCP, TCP_CONGESTION},
};
#define NCARRIED (sizeof carried / sizeof carried[0])
#define OPTMAX 32

/* Which of `carried` the program set on each fd (bit i: carried[i]); socket() clears. */
static unsigned int opts_set[MAX_TRACKED_FD];

static void note_sockopt(int fd, int level, int name)
{
    if (fd < 0 || fd >= MAX_TRACKED_FD)
        return;
    for (size_t i = 0; i < NCARRIED; i++)
        if (carried[i].level == level && carried[i].name == name)
            __atomic_or_fetch(&opts_set[fd], 1u << i, __ATOMIC_RELAXED);
}

/* A socket whose packets would leave from this host, not from the endpoint. */
static int bypasses(int domain, int type, int protocol)
{
    if (domain != AF_INET && domain != AF_INET6)
        return 0;
    type &= 0xf; /* without SOCK_NONBLOCK / SOCK_CLOEXEC */
    return type == SOCK_RAW ||
           (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6));
}

int socket(int domain, int type, int protocol)
{
    static int told;
    if (pktwrap_ctl_path() != NULL && bypasses(domain, type, protocol)) {
        if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED)) {
            static const char msg[] = "pktlab wrap: raw and ICMP sockets cannot go through "
                                      "the endpoint: refused (use pktlab run ping/traceroute)\n";
            ssize_t rc = NEXT(write)(2, msg, sizeof msg - 1);
            (void)rc;
        }
        errno = (type & 0xf) == SOCK_RAW ? EPERM : EACCES;
        return -1;
    }
    int fd = NEXT(socket)(domain, type, protocol);
    if (fd >= 0 && fd < MAX_TRACKED_FD) { /* a new socket under a number used before */
        __atomic_and_fetch(&udp_fd[fd / 8], (unsigned char)~(1u << (fd % 8)), __ATOMIC_RELAXED);
        __atomic_store_n(&udp_fd_port[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&opts_set[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&inherited_fd[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&pending_err[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&shown_pending[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&parked_port[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&unparked_port[fd], 0, __ATOMIC_RELAXED);
    }
    return fd;
}

typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);
typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);

/* libc's getsockopt, found once: the shim's own calls (SO_TYPE on every UDP send) go
 * through the hook below, and a dlsym() each cost ~0.15 us a sendto (4.55 us median,
 * 4.40 without the hook). */
static getsockopt_fn next_getsockopt(void)
{
    static getsockopt_fn found;
    getsockopt_fn f = __atomic_load_n(&found, __ATOMIC_RELAXED);
    if (f == NULL) {
        f = NEXT(getsockopt);
        __atomic_store_n(&found, f, __ATOMIC_RELAXED);
    }
    return f;
}

static int peer_slot(in_port_t port);
/* The family of the destination in `slot` (under pktwrap_lock); AF_UNSPEC if none. */
static int peers_family(int slot);

/* A connected TCP socket the program made IPv6 in whose place proxychains put an IPv4
 * one (its SOCKS server is IPv4): its IPv6-level options failed (ENOPROTOOPT, ENOTSUP)
 * and SO_DOMAIN said AF_INET before session 26 (wrap26); ssh sets IPV6_TCLASS on an
 * interactive session and prints the failure. */
static int shown_v6(int fd)
{
    struct sockaddr_storage own;
    socklen_t len = sizeof own;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (pktwrap_ctl_path() == NULL || fd < 0 ||
        NEXT(getsockname)(fd, (struct sockaddr *)&own, &len) != 0 || own.ss_family != AF_INET ||
        next_getsockopt()(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
        return 0; /* the peers are TCP sockets' (a UDP socket may have the same port) */
    pthread_mutex_lock(&pktwrap_lock);
    int slot = peer_slot(port_of((struct sockaddr *)&own));
    int v6 = slot >= 0 && peers_family(slot) == AF_INET6;
    pthread_mutex_unlock(&pktwrap_lock);
    return v6;
}

/* The IPv4 option that does on the loopback hop what an IPv6 one would: none of them
 * reaches the endpoint (docs/wrap.md), as with an IPv4 socket's IP_TOS. */
static int ipv4_twin(int name)
{
    switch (name) {
    case IPV6_TCLASS:
        return IP_TOS;
    case IPV6_UNICAST_HOPS:
        return IP_TTL;
    default:
        return -1;
    }
}

static int rep_errno(int rep);

/* The loopback port of fd's parked connect, if fd is still that socket; else 0 (and the
 * mark goes: close() is not hooked, the number may be another socket's now). */
static in_port_t parked_of(int fd)
{
    if (fd < 0 || fd >= MAX_TRACKED_FD)
        return 0;
    in_port_t p = __atomic_load_n(&parked_port[fd], __ATOMIC_RELAXED);
    if (p != 0 && own_port(fd, NULL) != p) {
        __atomic_store_n(&parked_port[fd], 0, __ATOMIC_RELAXED);
        return 0;
    }
    return p;
}

/* fd's socket inode, big-endian in 8 bytes at `at` (0: not known): "A" names the parked
 * socket by it, "F" asks by it, so that a failure nobody read is never another socket's
 * that took the same loopback port later (session 33). */
static void put_inode(unsigned char *at, int fd)
{
    struct stat st;
    uint64_t inode = fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
    for (int i = 0; i < 8; i++)
        at[i] = (unsigned char)(inode >> (56 - 8 * i));
}

/* The parked connect's state, asked of the wrapper ("F"): -1 still connecting, 0 made
 * (or not known), else the errno of its failure (the kernel's error on the socket is the
 * parking port's reset, ECONNRESET). Once known, fd is no longer marked. */
static int parked_state(int fd, in_port_t port)
{
    unsigned char req[11] = {'F'}, ans[1];
    size_t got;
    memcpy(req + 1, &port, 2);
    put_inode(req + 3, fd);
    if (pktwrap_call(req, sizeof req, ans, 1, &got) == 0 && got == 1 && ans[0] == 0xFF)
        return -1;
    __atomic_store_n(&parked_port[fd], 0, __ATOMIC_RELAXED);
    if (got == 1 && ans[0] == 0) /* made: the next connect() is 0 once, as natively */
        __atomic_store_n(&shown_pending[fd], 1, __ATOMIC_RELAXED);
    if (got != 1 || ans[0] == 0 || ans[0] == 0xFE)
        return 0;
    return rep_errno(ans[0]);
}

static in_port_t park_port(void);

/* A dup() (dup2, F_DUPFD) of a parked socket is not marked: its number is not the one the
 * shim parked, and the kernel's error on it after a failure is the parking port's reset,
 * ECONNRESET. Natively a dup reads the same SO_ERROR. Asked of the wrapper by the
 * socket's loopback port when the kernel says ECONNRESET (session 32): the connect's
 * errno if that port's parked connect failed and nobody read it yet, else 0. */
static int parked_failure_by_port(int fd)
{
    in_port_t p = park_port() != 0 ? own_port(fd, NULL) : 0;
    if (p == 0)
        return 0;
    unsigned char req[11] = {'F'}, ans[1];
    size_t got;
    memcpy(req + 1, &p, 2);
    put_inode(req + 3, fd); /* another socket's port now: its inode is not the failed one's */
    if (pktwrap_call(req, sizeof req, ans, 1, &got) != 0 || got != 1 || ans[0] == 0 ||
        ans[0] == 0xFF || ans[0] == 0xFE)
        return 0;
    return rep_errno(ans[0]);
}

/* Before a read or send on a parked socket: its connect's failure (errno set, 1), if it
 * failed. The parking port's reset may reach the socket just after it polled writable, so
 * without asking a first read could say EAGAIN, a write succeed (measured: a C program
 * polling, reading and writing did so). The kernel's reset is taken with it: the next
 * calls see EOF and EPIPE, as natively once a failed connect's error was read. */
static int parked_fails(int fd)
{
    if (fd < 0 || fd >= MAX_TRACKED_FD || __atomic_load_n(&parked_port[fd], __ATOMIC_RELAXED) == 0)
        return 0;
    in_port_t p = parked_of(fd);
    int why = p != 0 ? parked_state(fd, p) : 0;
    if (why <= 0)
        return 0;
    int k;
    socklen_t klen = sizeof k;
    next_getsockopt()(fd, SOL_SOCKET, SO_ERROR, &k, &klen);
    errno = why;
    return 1;
}

/* Take the pending failure of `fd` (read once), and the kernel's error that stands for
 * it (so POLLERR goes, as natively). 0 if none, or if a read() or send() took the
 * kernel's already (natively that clears it: SO_ERROR is then 0). */
static int take_pending(int fd)
{
    int e = __atomic_exchange_n(&pending_err[fd], 0, __ATOMIC_RELAXED);
    if (e & KERNEL_ARMED) {
        int k = 0;
        socklen_t klen = sizeof k;
        if (next_getsockopt()(fd, SOL_SOCKET, SO_ERROR, &k, &klen) == 0 && k == 0)
            return 0;
    }
    return e & ~KERNEL_ARMED;
}

/* A read or send on `fd` that failed with the kernel's error arm_error() put there: that
 * error is always ECONNREFUSED (a reset from a loopback port), whatever the connect's
 * failure was. Natively the first read() or send() after a connect that timed out fails
 * ETIMEDOUT (EHOSTUNREACH for no host), and the socket's error is then gone; wrapped it
 * said ECONNREFUSED before session 30 (wrap30). `rc` is the call's result, passed on. */
static ssize_t kernel_error_as_connects(int fd, ssize_t rc)
{
    if (rc < 0 && errno == ECONNRESET) { /* a parked connect that failed: its errno */
        in_port_t p = parked_of(fd);
        int why = p != 0 ? parked_state(fd, p) : parked_failure_by_port(fd);
        errno = why > 0 ? why : ECONNRESET;
        return rc;
    }
    if (rc >= 0 || errno != ECONNREFUSED || fd < 0 || fd >= MAX_TRACKED_FD)
        return rc;
    int e = __atomic_load_n(&pending_err[fd], __ATOMIC_RELAXED);
    if (!(e & KERNEL_ARMED))
        return rc;
    /* Still the TCP socket it was armed on (close() is not hooked: the number may have
     * gone to a unix socket, whose sends can fail ECONNREFUSED too) */
    int type = 0;
    socklen_t tlen = sizeof type;
    if (next_getsockopt()(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
        own_port(fd, NULL) == 0) {
        errno = ECONNREFUSED;
        return rc;
    }
    if (__atomic_compare_exchange_n(&pending_err[fd], &e, 0, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        errno = e & ~KERNEL_ARMED;
    else
        errno = ECONNREFUSED;
    return rc;
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    in_port_t parked = level == SOL_SOCKET && name == SO_ERROR ? parked_of(fd) : 0;
    if (parked != 0 && value != NULL && len != NULL && *len >= sizeof(int)) {
        int why = parked_state(fd, parked);
        if (why > 0) { /* failed: its errno, the kernel's reset taken with it */
            int k;
            socklen_t klen = sizeof k;
            next_getsockopt()(fd, SOL_SOCKET, SO_ERROR, &k, &klen);
            memcpy(value, &why, sizeof why);
            *len = sizeof why;
            return 0;
        }
    }
    if (parked == 0 && level == SOL_SOCKET && name == SO_ERROR && value != NULL &&
        len != NULL && *len >= sizeof(int) && pktwrap_ctl_path() != NULL &&
        (fd < 0 || fd >= MAX_TRACKED_FD || __atomic_load_n(&pending_err[fd], __ATOMIC_RELAXED) == 0)) {
        int k = 0;
        socklen_t klen = sizeof k;
        if (next_getsockopt()(fd, level, name, &k, &klen) == 0) {
            if (k == ECONNRESET) { /* a dup of a parked socket that failed? */
                int why = parked_failure_by_port(fd);
                k = why > 0 ? why : k;
            }
            memcpy(value, &k, sizeof k);
            *len = sizeof k;
            return 0;
        }
    }
    if (level == SOL_SOCKET && name == SO_ERROR && fd >= 0 && fd < MAX_TRACKED_FD &&
        value != NULL && len != NULL && *len >= sizeof(int) &&
        __atomic_load_n(&pending_err[fd], __ATOMIC_RELAXED) != 0) {
        int e = take_pending(fd);
        memcpy(value, &e, sizeof e);
        *len = sizeof e;
        return 0;
    }
    int domain = level == SOL_SOCKET && name == SO_DOMAIN;
    if ((level == IPPROTO_IPV6 || domain) && shown_v6(fd)) {
        int twin = level == IPPROTO_IPV6 ? ipv4_twin(name) : -1;
        if (twin >= 0)
            return next_getsockopt()(fd, IPPROTO_IP, twin, value, len);
        if (domain || name == IPV6_V6ONLY) { /* V6ONLY: a connected socket's is 0 */
            int v = domain ? AF_INET6 : 0;
            if (value == NULL || len == NULL || *len < sizeof v) {
                errno = EINVAL;
                return -1;
            }
            memcpy(value, &v, sizeof v);
            *len = sizeof v;
            return 0;
        }
    }
    return next_getsockopt()(fd, level, name, value, len);
}

/* The endpoint's UDP sockets have no TTL control (PacketLab gives TCP and UDP sockets no
 * options): a TTL the program sets would be dropped, and a UDP traceroute would show
 * "* * *" for every hop as if the path were silent. Refused, with one line, as raw
 * sockets are. */
int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    static int told;
    int ttl = (level == IPPROTO_IP && name == IP_TTL) ||
              (level == IPPROTO_IPV6 && name == IPV6_UNICAST_HOPS);
    int type = 0;
    socklen_t tlen = sizeof type;
    if (ttl && pktwrap_ctl_path() != NULL && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
        type == SOCK_DGRAM) {
        if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED)) {
            static const char msg[] = "pktlab wrap: the endpoint's UDP sockets have no TTL "
                                      "control: IP_TTL refused (use pktlab run traceroute)\n";
            ssize_t rc = NEXT(write)(2, msg, sizeof msg - 1);
            (void)rc;
        }
        errno = ENOPROTOOPT;
        return -1;
    }
    if (level == IPPROTO_IPV6 && ipv4_twin(name) >= 0 && shown_v6(fd))
        return NEXT(setsockopt)(fd, IPPROTO_IP, ipv4_twin(name), value, len);
    int rc = NEXT(setsockopt)(fd, level, name, value, len);
    if (rc == 0)
        note_sockopt(fd, level, name);
    return rc;
}

/* The destination each TCP socket asked connect() for: proxychains connects it to our
 * SOCKS server instead, and getpeername() would show that server. Kept by the loopback
 * port of the program's socket (towards our SOCKS server), not by its fd: a dup()ed fd
 * is the same connection (before session 25 its getpeername showed our SOCKS server,
 * and an IPv6 socket's dup showed an IPv4 getsockname). Open addressing over PROBE
 * slots; the oldest entry of those is replaced (no close() hook tells us one ended). */
#define MAX_PEERS 4096
#define PROBE 8
static struct {
    in_port_t port; /* network order; 0: free */
    unsigned long seq;
    socklen_t len;
    struct sockaddr_storage dst;
    struct sockaddr_storage local; /* the endpoint's end (getsockname), once asked */
} peers[MAX_PEERS];
static unsigned long peers_seq;

/* The slot of `port` (under pktwrap_lock), or -1. */
static int peer_slot(in_port_t port)
{
    for (int k = 0; port != 0 && k < PROBE; k++) {
        int i = (ntohs(port) + k) % MAX_PEERS;
        if (peers[i].port == port)
            return i;
    }
    return -1;
}

static int peers_family(int slot)
{
    return peers[slot].len > 0 ? peers[slot].dst.ss_family : AF_UNSPEC;
}

static void remember_peer(int fd, const struct sockaddr *addr, socklen_t len)
{
    in_port_t port = fd >= 0 && pktwrap_ctl_path() != NULL ? own_port(fd, NULL) : 0;
    if (port == 0)
        return;
    pthread_mutex_lock(&pktwrap_lock);
    int i = peer_slot(port);
    if (i < 0) { /* a free slot, else the oldest */
        i = ntohs(port) % MAX_PEERS;
        for (int k = 0; k < PROBE; k++) {
            int j = (ntohs(port) + k) % MAX_PEERS;
            if (peers[j].port == 0) {
                i = j;
                break;
            }
            if (peers[j].seq < peers[i].seq)
                i = j;
        }
    }
    peers[i].port = port;
    peers[i].seq = ++peers_seq;
    peers[i].len = len < sizeof peers[i].dst ? len : sizeof peers[i].dst;
    memcpy(&peers[i].dst, addr, peers[i].len);
    peers[i].local.ss_family = AF_UNSPEC;
    pthread_mutex_unlock(&pktwrap_lock);
}

/* The wrapper's parking port ($PKTLAB_WRAP_PARK), network order; 0 if none. */
static in_port_t park_port(void)
{
    const char *env = getenv("PKTLAB_WRAP_PARK");
    return env != NULL && pktwrap_ctl_path() != NULL ? htons((in_port_t)atoi(env)) : 0;
}

/* Is `sa` our SOCKS server ($PKTLAB_WRAP_SOCKS = "127.0.0.1:PORT") or the parking port
 * (a parked socket's peer once connected)? */
static int is_socks_server(const struct sockaddr *sa)
{
    const char *env = getenv("PKTLAB_WRAP_SOCKS");
    const char *colon = env != NULL ? strrchr(env, ':') : NULL;
    if (colon == NULL)
        return 0;
    in_port_t port = htons((in_port_t)atoi(colon + 1));
    in_port_t park = park_port();
    if (park != 0 && port_of(sa) == park)
        port = park;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        return a->sin_port == port && a->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        return a->sin6_port == port && IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
               memcmp(a->sin6_addr.s6_addr + 12, "\x7f\0\0\x01", 4) == 0;
    }
    return 0;
}


struct sockopts {
    int fd_flags;
    socklen_t len[NCARRIED];
    unsigned char value[NCARRIED][OPTMAX];
};

static void save_sockopts(int fd, struct sockopts *o)
{
    /* fds past the table: every option (their setsockopt calls were not noted) */
    unsigned int set = fd < MAX_TRACKED_FD ? __atomic_load_n(&opts_set[fd], __ATOMIC_RELAXED)
                                           : ~0u;
    o->fd_flags = fcntl(fd, F_GETFD);
    for (size_t i = 0; i < NCARRIED; i++) {
        o->len[i] = OPTMAX;
        if (!(set & (1u << i)) ||
            getsockopt(fd, carried[i].level, carried[i].name, o->value[i], &o->len[i]) != 0)
            o->len[i] = 0;
    }
}

/* Put them back on the socket now at `fd` (errno kept: connect's result). */
static void restore_sockopts(int fd, const struct sockopts *o)
{
    int saved = errno;
    if (o->fd_flags >= 0 && fcntl(fd, F_GETFD) != o->fd_flags)
        fcntl(fd, F_SETFD, o->fd_flags);
    for (size_t i = 0; i < NCARRIED; i++)
        if (o->len[i] != 0)
            NEXT(setsockopt)(fd, carried[i].level, carried[i].name, o->value[i], o->len[i]);
    errno = saved;
}

/* A TCP destination the kernel refuses with ENETUNREACH before sending anything: IPv4
 * multicast and the limited broadcast (their routes are RTCF_MULTICAST/BROADCAST), IPv6
 * multicast, both also as v4-mapped addresses. Wrapped, the endpoint answered UNREACH
 * (EHOSTUNREACH) or proxychains refused a 224.0.0.0/8 address it took for one of its
 * placeholders (ECONNREFUSED) before session 25. 224.0.0.0/8 is still left to
 * proxychains once it may have handed out placeholders (pktwrap_fake_names). A subnet's
 * own broadcast address is the endpoint's to know. */
static int tcp_unreachable(const struct sockaddr *dst)
{
    uint32_t a;
    if (dst->sa_family == AF_INET) {
        a = ntohl(((const struct sockaddr_in *)dst)->sin_addr.s_addr);
    } else {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)dst)->sin6_addr;
        if (IN6_IS_ADDR_MULTICAST(a6))
            return 1;
        if (!IN6_IS_ADDR_V4MAPPED(a6))
            return 0;
        memcpy(&a, a6->s6_addr + 12, 4);
        a = ntohl(a);
    }
    if (a == INADDR_BROADCAST)
        return 1;
    if (!IN_MULTICAST(a))
        return 0;
    return (a >> 24) != 224 || !__atomic_load_n(&pktwrap_fake_names, __ATOMIC_RELAXED);
}

/* Why a wrapped TCP connect failed, as the kernel would say it: proxychains makes every
 * failure ECONNREFUSED, so a timeout (Python's TimeoutError, curl's "Connection timed
 * out") and an unreachable network or host read as refused before session 25. The
 * wrapper keeps the SOCKS reply of the latest failed connect to each destination ("E").
 */
static int rep_errno(int rep);

static int connect_errno(const struct sockaddr *dst)
{
    unsigned char req[20], ans[1];
    size_t n, got;
    req[0] = 'E';
    if (dst->sa_family == AF_INET) {
        const struct sockaddr_in *d = (const void *)dst;
        req[1] = 4;
        memcpy(req + 2, &d->sin_port, 2);
        memcpy(req + 4, &d->sin_addr, 4);
        n = 8;
    } else {
        const struct sockaddr_in6 *d = (const void *)dst;
        req[1] = 6;
        memcpy(req + 2, &d->sin6_port, 2);
        memcpy(req + 4, &d->sin6_addr, 16);
        n = 20;
    }
    if (pktwrap_call(req, n, ans, 1, &got) != 0 || got != 1)
        return ECONNREFUSED;
    return rep_errno(ans[0]);
}

/* The errno a SOCKS reply code of a failed connect stands for. */
static int rep_errno(int rep)
{
    switch (rep) {
    case 3: /* network unreachable */
        return ENETUNREACH;
    case 4: /* host unreachable */
        return EHOSTUNREACH;
    case 6: /* TTL expired: the endpoint's connect timed out */
        return ETIMEDOUT;
    case 2: /* not allowed: the endpoint's rules (certificate limits, a monitor) said no,
             * as a local firewall's DROP (iptables -m owner) does: "Operation not
             * permitted" (ECONNREFUSED before session 25 read as a closed port) */
        return EPERM;
    default: /* refused, a general failure */
        return ECONNREFUSED;
    }
}

typedef int (*pipe2_fn)(int[2], int);

/* proxychains' pipes (to its name allocator thread, made as it starts) took fds 3-6 of
 * every wrapped program, so the program's first own descriptor was 7, not 3 (iperf3
 * printed "[  9]" for "[  5]"; a shell's `exec 3<file` closed one of them). Moved up to
 * the middle of the descriptor limit (under FD_SETSIZE, should it select() on them),
 * out of the program's way. Only calls from proxychains itself. */
int pipe2(int fds[2], int flags)
{
    int rc = NEXT(pipe2)(fds, flags);
    Dl_info info;
    struct rlimit lim;
    if (rc != 0 || dladdr(__builtin_return_address(0), &info) == 0 || info.dli_fname == NULL ||
        strstr(info.dli_fname, "proxychains") == NULL || getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return rc;
    int base = lim.rlim_cur >= 1024 ? 512 : (int)(lim.rlim_cur / 2);
    for (int i = 0; i < 2 && base > fds[i] + 2; i++) {
        int high = fcntl(fds[i], (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, base);
        if (high >= 0) {
            syscall(SYS_close, fds[i]); /* not close(): proxychains' hook guards its pipes */
            fds[i] = high;
        }
    }
    return 0;
}

/* An IPv6 link-local address without the scope id (interface) the kernel needs for it:
 * connect() is EINVAL natively; wrapped it went to the endpoint, which refused it
 * (ECONNREFUSED, before session 26, wrap26). With a scope id, that interface is this
 * host's, not the endpoint's: left to the endpoint. */
static int unscoped(const struct sockaddr *addr, socklen_t len)
{
    const struct sockaddr_in6 *a = (const void *)addr;
    return addr->sa_family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) &&
           (len < sizeof *a || a->sin6_scope_id == 0);
}

/* A TCP connect to the unspecified address (0.0.0.0, ::) reaches this host natively, and
 * the socket's peer is its loopback address (127.0.0.1, ::1). proxychains refused
 * 0.0.0.0 itself (ECONNREFUSED, nothing asked) and `::` showed as the peer before
 * session 26 (wrap26): the loopback address goes to the endpoint instead, whose own host
 * it means as natively. 1 if `here` holds it. */
static int this_host(const struct sockaddr *addr, socklen_t len, struct sockaddr_storage *here)
{
    if (addr->sa_family == AF_INET &&
        ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_ANY)) {
        memcpy(here, addr, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)here)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return 1;
    }
    if (addr->sa_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr)) {
        memcpy(here, addr, len < sizeof *here ? len : sizeof *here);
        ((struct sockaddr_in6 *)here)->sin6_addr = in6addr_loopback;
        return 1;
    }
    return 0;
}

/* Give the program's socket `fd` a real refused connect, so the kernel holds an error on
 * it (session 29): POLLERR in poll(), EPOLLERR in epoll, and a read() that fails
 * ECONNREFUSED, as after a refused connect natively. proxychains leaves the program's
 * socket untouched when its connect fails, and an unconnected socket polls
 * POLLOUT|POLLHUP only. The connect goes to a loopback port bound but not listening
 * (a SYN to it is answered by a reset), made here for this and closed; system calls
 * directly, past proxychains' hooks and ours. Waits (at most 1 s) until the reset has
 * come, so the error is there before connect() returns. 1 if armed. */
static int arm_error(int fd)
{
    int family = 0;
    socklen_t flen = sizeof family;
    if (next_getsockopt()(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) != 0 ||
        (family != AF_INET && family != AF_INET6))
        return 0;
    /* An IPv6 socket tries an IPv4 port as ::ffff:127.0.0.1 (not with IPV6_V6ONLY),
     * then [::1]. */
    for (int helper_family = AF_INET; helper_family != 0;
         helper_family = family == AF_INET6 && helper_family == AF_INET ? AF_INET6 : 0) {
        int h = (int)syscall(SYS_socket, helper_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (h < 0)
            continue;
        struct sockaddr_storage at;
        memset(&at, 0, sizeof at);
        socklen_t alen = (socklen_t)addr_len(helper_family);
        at.ss_family = (sa_family_t)helper_family;
        if (helper_family == AF_INET)
            ((struct sockaddr_in *)&at)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else
            ((struct sockaddr_in6 *)&at)->sin6_addr = in6addr_loopback;
        int ok = syscall(SYS_bind, h, &at, alen) == 0 &&
                 syscall(SYS_getsockname, h, &at, &alen) == 0;
        struct sockaddr_in6 to6;
        const struct sockaddr *to = (const struct sockaddr *)&at;
        socklen_t tolen = alen;
        if (ok && family == AF_INET6 && helper_family == AF_INET) {
            memset(&to6, 0, sizeof to6);
            to6.sin6_family = AF_INET6;
            to6.sin6_port = ((struct sockaddr_in *)&at)->sin_port;
            memcpy(to6.sin6_addr.s6_addr + 10, "\xff\xff\x7f\0\0\x01", 6);
            to = (const struct sockaddr *)&to6;
            tolen = sizeof to6;
        }
        int armed = 0, rc = ok ? (int)syscall(SYS_connect, fd, to, tolen) : 0;
        /* A socket whose earlier failure was read through SO_ERROR is still "connecting"
         * to the kernel: its next connect() only says ECONNABORTED, then it may connect */
        if (ok && rc != 0 && errno == ECONNABORTED)
            rc = (int)syscall(SYS_connect, fd, to, tolen);
        if (ok && rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            struct timespec limit = {1, 0};
            armed = syscall(SYS_ppoll, &p, 1, &limit, NULL, 0) == 1 && (p.revents & POLLERR);
        }
        syscall(SYS_close, h);
        if (armed)
            return 1;
    }
    return 0;
}

/* Park the program's non-blocking TCP socket `fd` (session 31): connect it to the
 * wrapper's parking port, whose full accept queue drops its SYNs (so the kernel keeps it
 * connecting: EINPROGRESS now, writable when the wrapper connects back once the endpoint
 * has connected to `addr`), and ask the wrapper for that connect ("A"). proxychains
 * connected inside the call, so the program's own connect timeout fired only with the
 * wrapper's. 0 if parked; -1: not (the socket untouched: proxychains' way); -2: the
 * kernel's answer to this connect, whatever the address (errno: ECONNABORTED once after a
 * failed connect whose error was read, as natively; or the endpoint's connect() call
 * failed at once: its errno, session 32), to be returned. */
static int park(int fd, const struct sockaddr *addr)
{
    in_port_t q = park_port();
    int family = 0;
    socklen_t flen = sizeof family;
    struct sockaddr_storage own;
    socklen_t olen = sizeof own;
    if (q == 0 || fd < 0 || fd >= MAX_TRACKED_FD ||
        next_getsockopt()(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) != 0 ||
        NEXT(getsockname)(fd, (struct sockaddr *)&own, &olen) != 0)
        return -1;
    /* Bound to an address of its own (not the wildcard, not loopback): the connect-back
     * to 127.0.0.1 would not find it */
    if (own.ss_family == AF_INET) {
        in_addr_t a = ntohl(((struct sockaddr_in *)&own)->sin_addr.s_addr);
        if (a != INADDR_ANY && (a >> 24) != 127)
            return -1;
    } else if (own.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&own)->sin6_addr;
        if (!IN6_IS_ADDR_UNSPECIFIED(a) &&
            !(IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127))
            return -1;
    }
    unsigned char req[30];
    size_t n;
    req[0] = 'A';
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *d = (const void *)addr;
        req[1] = 4;
        memcpy(req + 2, &d->sin_port, 2);
        memcpy(req + 4, &d->sin_addr, 4);
        n = 8;
    } else if (IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)addr)->sin6_addr)) {
        const struct sockaddr_in6 *d = (const void *)addr;
        req[1] = 4; /* goes out as IPv4, as natively */
        memcpy(req + 2, &d->sin6_port, 2);
        memcpy(req + 4, d->sin6_addr.s6_addr + 12, 4);
        n = 8;
    } else {
        const struct sockaddr_in6 *d = (const void *)addr;
        req[1] = 6;
        memcpy(req + 2, &d->sin6_port, 2);
        memcpy(req + 4, &d->sin6_addr, 16);
        n = 20;
    }
    /* One of proxychains' placeholder addresses: only its connect knows the name */
    if (req[1] == 4 && req[4] == 224 && __atomic_load_n(&pktwrap_fake_names, __ATOMIC_RELAXED))
        return -1;
    struct sockaddr_in to4 = {.sin_family = AF_INET, .sin_port = q};
    struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_port = q};
    to4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memcpy(to6.sin6_addr.s6_addr + 10, "\xff\xff\x7f\0\0\x01", 6);
    const struct sockaddr *to = family == AF_INET6 ? (const struct sockaddr *)&to6
                                                   : (const struct sockaddr *)&to4;
    socklen_t tolen = family == AF_INET6 ? sizeof to6 : sizeof to4;
    if (family != AF_INET && family != AF_INET6)
        return -1;
    /* Past proxychains' hook; an IPV6_V6ONLY socket fails here (ENETUNREACH), untouched */
    if (syscall(SYS_connect, fd, to, tolen) == 0)
        return -1;
    if (errno == ECONNABORTED)
        return -2;
    if (errno != EINPROGRESS)
        return -1;
    in_port_t port = own_port(fd, NULL);
    memcpy(req + n, &port, 2);
    put_inode(req + n + 2, fd);
    unsigned char ans[1];
    size_t got;
    int ok = pktwrap_call(req, n + 10, ans, 1, &got) == 0 && got == 1;
    if (!ok || ans[0] != 1) {
        struct sockaddr unspec = {.sa_family = AF_UNSPEC}; /* undone: connecting no more */
        syscall(SYS_connect, fd, &unspec, sizeof unspec);
        if (ok && (ans[0] & 0x80)) {
            /* The endpoint's connect() call failed (no route, its rules): so does this
             * one, as natively (session 32; before, EINPROGRESS and SO_ERROR a round trip
             * later). The undoing's own error (ECONNRESET) is not the program's. */
            int k;
            socklen_t klen = sizeof k;
            next_getsockopt()(fd, SOL_SOCKET, SO_ERROR, &k, &klen);
            if (port_of((struct sockaddr *)&own) == 0)
                __atomic_store_n(&unparked_port[fd], port, __ATOMIC_RELAXED);
            errno = rep_errno(ans[0] & 0x7F);
            return -2;
        }
        return -1;
    }
    __atomic_store_n(&parked_port[fd], port, __ATOMIC_RELAXED);
    return 0;
}

/* A blocking connect bounded by the program's SO_SNDTIMEO (session 32): the kernel gives
 * up waiting after it and says EINPROGRESS (the connect goes on). proxychains connects
 * inside the call and waited for the endpoint's connect (`--connect-timeout`) whatever
 * the program set. Parked instead (O_NONBLOCK for the call), then waited for as the
 * kernel would: 0, the connect's errno, or EINPROGRESS at the timeout. -1: not parked
 * (no SO_SNDTIMEO, or park() declined): proxychains' way. */
static int bounded_connect(int fd, int fl, const struct sockaddr *addr, socklen_t len, int *rc)
{
    struct timeval tv = {0, 0};
    socklen_t tlen = sizeof tv;
    if (next_getsockopt()(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &tlen) != 0 ||
        (tv.tv_sec == 0 && tv.tv_usec == 0) || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    int parking = park(fd, addr), e = errno;
    if (parking == -1) {
        fcntl(fd, F_SETFL, fl);
        return -1;
    }
    if (parking == -2) { /* failed in the call (errno: its) */
        fcntl(fd, F_SETFL, fl);
        errno = e;
        *rc = -1;
        return 0;
    }
    remember_peer(fd, addr, len);
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    struct timespec limit = {tv.tv_sec, tv.tv_usec * 1000};
    int ready = (int)syscall(SYS_ppoll, &pf, 1, &limit, NULL, 0);
    e = errno;
    fcntl(fd, F_SETFL, fl);
    if (ready < 0) { /* a signal: EINTR, the connect going on, as natively */
        errno = e;
        *rc = -1;
        return 0;
    }
    if (ready == 0) {
        errno = EINPROGRESS;
        *rc = -1;
        return 0;
    }
    int why = 0;
    socklen_t wlen = sizeof why;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &why, &wlen); /* ours: the connect's errno */
    errno = why;
    *rc = why != 0 ? -1 : 0;
    return 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct sockaddr_storage relay;
    int type = inet_type(fd, addr);
    if ((type == SOCK_STREAM || type == SOCK_DGRAM) && pktwrap_ctl_path() != NULL &&
        short_addr(addr, len)) {
        errno = EINVAL; /* the kernel's answer; proxychains and we would read past it */
        return -1;
    }
    if (type == SOCK_STREAM) {
        pktwrap_mark(MARK_CONNECT);
        track_fd(fd);
        if (fd >= 0 && fd < MAX_TRACKED_FD) /* connecting again: its port is its own now */
            __atomic_store_n(&unparked_port[fd], 0, __ATOMIC_RELAXED);
        /* A parked socket connecting (EALREADY), made (0, then EISCONN) or failed (its
         * errno, then it may connect again): the kernel's own answers, as natively */
        in_port_t parked = pktwrap_ctl_path() != NULL ? parked_of(fd) : 0;
        if (parked != 0) {
            if (syscall(SYS_connect, fd, addr, len) == 0) {
                __atomic_store_n(&parked_port[fd], 0, __ATOMIC_RELAXED);
                return 0;
            }
            int e = errno;
            if (e == ECONNRESET) {
                int why = parked_state(fd, parked);
                e = why > 0 ? why : e;
            }
            if (e != EALREADY)
                __atomic_store_n(&parked_port[fd], 0, __ATOMIC_RELAXED);
            errno = e;
            return -1;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        /* Connected already: the kernel says EISCONN. proxychains would put a new
         * connection in its place (dup2), so the server saw a second connection and the
         * first one closed under the program (before session 25). */
        if (pktwrap_ctl_path() != NULL &&
            NEXT(getpeername)(fd, (struct sockaddr *)&peer, &plen) == 0) {
            /* ... but the first connect() after an EINPROGRESS that was made is 0 */
            if (fd < MAX_TRACKED_FD && __atomic_exchange_n(&shown_pending[fd], 0,
                                                           __ATOMIC_RELAXED))
                return 0;
            errno = EISCONN;
            return -1;
        }
        /* A connect() on a socket whose non-blocking connect failed, its failure not
         * yet read: that failure, as natively (then the socket may connect again). */
        if (fd >= 0 && fd < MAX_TRACKED_FD &&
            __atomic_load_n(&pending_err[fd], __ATOMIC_RELAXED) != 0) {
            int e = __atomic_exchange_n(&pending_err[fd], 0, __ATOMIC_RELAXED);
            if (!(e & KERNEL_ARMED)) {
                errno = e;
                return -1;
            }
            /* The kernel's own connect() says it and lets the socket connect again
             * (reading SO_ERROR would not: the next connect is ECONNABORTED); if a
             * read() took the error already, it says ECONNABORTED, as natively. It is
             * "connecting" to the kernel, so nothing is sent. */
            if (syscall(SYS_connect, fd, addr, len) != 0) {
                if (errno == ECONNREFUSED)
                    errno = e & ~KERNEL_ARMED;
                return -1;
            }
        }
        if (pktwrap_ctl_path() != NULL && tcp_unreachable(addr)) {
            errno = ENETUNREACH;
            return -1;
        }
        if (pktwrap_ctl_path() != NULL && unscoped(addr, len)) {
            errno = EINVAL;
            return -1;
        }
        struct sockaddr_storage here;
        if (pktwrap_ctl_path() != NULL && this_host(addr, len, &here))
            addr = (const struct sockaddr *)&here;
        struct sockopts opts;
        int wrapped = pktwrap_ctl_path() != NULL;
        if (fd >= 0 && fd < MAX_TRACKED_FD) {
            __atomic_store_n(&pending_err[fd], 0, __ATOMIC_RELAXED);
            __atomic_store_n(&shown_pending[fd], 0, __ATOMIC_RELAXED);
        }
        int fl = wrapped ? fcntl(fd, F_GETFL) : -1;
        int nonblocking = fl >= 0 && (fl & O_NONBLOCK) && fd >= 0 && fd < MAX_TRACKED_FD;
        int parking = nonblocking ? park(fd, addr) : -1;
        if (parking == 0) {
            remember_peer(fd, addr, len);
            errno = EINPROGRESS;
            return -1;
        }
        if (parking == -2)
            return -1; /* errno: the kernel's */
        int bounded_rc = 0;
        if (!nonblocking && fl >= 0 && fd >= 0 && fd < MAX_TRACKED_FD &&
            bounded_connect(fd, fl, addr, len, &bounded_rc) == 0)
            return bounded_rc;
        if (wrapped)
            save_sockopts(fd, &opts);
        int rc = NEXT(connect)(fd, addr, len);
        if (wrapped)
            restore_sockopts(fd, &opts);
        if (wrapped && rc != 0 && errno == ECONNREFUSED) {
            int why = connect_errno(addr);
            /* Only what the kernel learns from the network after the SYN: no route
             * (ENETUNREACH) and a local firewall (EPERM) fail at once natively too. */
            int later = why == ECONNREFUSED || why == ETIMEDOUT || why == EHOSTUNREACH;
            if (later && nonblocking) {
                int armed = arm_error(fd) ? KERNEL_ARMED : 0;
                __atomic_store_n(&pending_err[fd], why | armed, __ATOMIC_RELAXED);
                why = EINPROGRESS; /* as natively: the failure is SO_ERROR's */
            }
            errno = why;
        }
        if (rc == 0)
            remember_peer(fd, addr, len);
        if (rc == 0 && wrapped && nonblocking) {
            /* Made inside the call (proxychains connects before it returns), but a
             * non-blocking connect is EINPROGRESS natively, then writable: programs
             * that assert it, or take 0 for a connection to a local socket, differ
             * (session 29; 0 before). The socket is writable already. */
            __atomic_store_n(&shown_pending[fd], 1, __ATOMIC_RELAXED);
            errno = EINPROGRESS;
            return -1;
        }
        return rc;
    }
    if (type == SOCK_DGRAM) {
        if (pktwrap_ctl_path() != NULL && unscoped(addr, len)) {
            errno = EINVAL;
            return -1;
        }
        int r = relay_for(fd, addr, &relay);
        if (r < 0) {
            errno = ENETUNREACH;
            return -1;
        }
        if (r > 0) {
            track_udp(fd);
            int rc = NEXT(connect)(fd, (struct sockaddr *)&relay, addr_len(relay.ss_family));
            int saved = errno;
            track_udp_port(fd);
            errno = saved;
            return rc;
        }
    }
    return NEXT(connect)(fd, addr, len);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    pktwrap_mark(MARK_SEND);
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(send)(fd, buf, n, flags));
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (tracked(fd))
        pktwrap_mark(MARK_SEND);
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(write)(fd, buf, n));
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    if (tracked(fd))
        pktwrap_mark(MARK_SEND);
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(writev)(fd, iov, n));
}

/* The receive calls are hooked only for kernel_error_as_connects (and recvfrom/recvmsg
 * for UDP peers, below); the _chk forms are what a program built with _FORTIFY_SOURCE
 * calls instead (glibc's own read() inside them is not interposed). */
ssize_t read(int fd, void *buf, size_t n)
{
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(read)(fd, buf, n));
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(readv)(fd, iov, n));
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(recv)(fd, buf, n, flags));
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t room)
{
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(__read_chk)(fd, buf, n, room));
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t room, int flags)
{
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(__recv_chk)(fd, buf, n, room, flags));
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
               socklen_t len)
{
    struct sockaddr_storage relay;
    pktwrap_mark(MARK_SEND);
    if (is_udp_inet(fd, addr) && !short_addr(addr, len)) {
        int r = relay_for(fd, addr, &relay);
        if (r < 0) {
            errno = ENETUNREACH;
            return -1;
        }
        if (r > 0) {
            track_udp(fd);
            ssize_t rc = NEXT(sendto)(fd, buf, n, flags, (struct sockaddr *)&relay,
                                      addr_len(relay.ss_family));
            int saved = errno;
            track_udp_port(fd); /* bound by the first send */
            errno = saved;
            return rc;
        }
    }
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(sendto)(fd, buf, n, flags, addr, len));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct sockaddr_storage relay;
    pktwrap_mark(MARK_SEND);
    if (msg != NULL && is_udp_inet(fd, msg->msg_name) &&
        !short_addr(msg->msg_name, msg->msg_namelen)) {
        int r = relay_for(fd, msg->msg_name, &relay);
        if (r < 0) {
            errno = ENETUNREACH;
            return -1;
        }
        if (r > 0) {
            track_udp(fd);
            struct msghdr copy = *msg;
            copy.msg_name = &relay;
            copy.msg_namelen = addr_len(relay.ss_family);
            ssize_t rc = NEXT(sendmsg)(fd, &copy, flags);
            int saved = errno;
            track_udp_port(fd);
            errno = saved;
            return rc;
        }
    }
    if (parked_fails(fd))
        return -1;
    return kernel_error_as_connects(fd, NEXT_ONCE(sendmsg)(fd, msg, flags));
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags)
{
    struct sockaddr_storage relay[64];
    void *names[64];
    socklen_t lens[64];
    if (n > 64)
        n = 64; /* a short count is allowed: the caller sends the rest again */
    for (unsigned int i = 0; i < n; i++) {
        names[i] = vec[i].msg_hdr.msg_name;
        lens[i] = vec[i].msg_hdr.msg_namelen;
        if (is_udp_inet(fd, names[i]) && !short_addr(names[i], lens[i])) {
            int r = relay_for(fd, names[i], &relay[i]);
            if (r < 0) {
                if (i == 0) {
                    errno = ENETUNREACH;
                    return -1;
                }
                n = i;
                break;
            }
            if (r > 0) {
                track_udp(fd);
                vec[i].msg_hdr.msg_name = &relay[i];
                vec[i].msg_hdr.msg_namelen = addr_len(relay[i].ss_family);
            }
        }
    }
    int rc = NEXT(sendmmsg)(fd, vec, n, flags);
    int saved = errno;
    if (udp_tracked(fd))
        track_udp_port(fd);
    errno = saved;
    for (unsigned int i = 0; i < n; i++) {
        vec[i].msg_hdr.msg_name = names[i];
        vec[i].msg_hdr.msg_namelen = lens[i];
    }
    return rc;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len)
{
    if (parked_fails(fd))
        return -1;
    ssize_t rc = kernel_error_as_connects(fd, NEXT_ONCE(recvfrom)(fd, buf, n, flags, addr, len));
    if (rc >= 0 && from_relay_of(fd, addr, len) < 0)
        remember_direct(fd, addr, *len);
    return rc;
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t room, int flags,
                       struct sockaddr *addr, socklen_t *len)
{
    if (parked_fails(fd))
        return -1;
    ssize_t rc = kernel_error_as_connects(
        fd, NEXT_ONCE(__recvfrom_chk)(fd, buf, n, room, flags, addr, len));
    if (rc >= 0 && from_relay_of(fd, addr, len) < 0)
        remember_direct(fd, addr, *len);
    return rc;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (parked_fails(fd))
        return -1;
    ssize_t rc = kernel_error_as_connects(fd, NEXT_ONCE(recvmsg)(fd, msg, flags));
    if (rc >= 0 && msg != NULL && from_relay_of(fd, msg->msg_name, &msg->msg_namelen) < 0)
        remember_direct(fd, msg->msg_name, msg->msg_namelen);
    return rc;
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags, struct timespec *timeout)
{
    int rc = NEXT(recvmmsg)(fd, vec, n, flags, timeout);
    for (int i = 0; i < rc; i++)
        if (from_relay_of(fd, vec[i].msg_hdr.msg_name, &vec[i].msg_hdr.msg_namelen) < 0)
            remember_direct(fd, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen);
    return rc;
}

static int endpoint_peer(in_port_t port, struct sockaddr_storage *out);

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    socklen_t room = len != NULL ? *len : 0;
    int rc = NEXT(getpeername)(fd, addr, len);
    if (rc != 0 || addr == NULL || len == NULL || room < sizeof(sa_family_t))
        return rc;
    from_relay_of(fd, addr, len);
    if (is_socks_server(addr) && fd >= 0) { /* the destination the program connected to */
        in_port_t port = own_port(fd, NULL);
        pthread_mutex_lock(&pktwrap_lock);
        int i = peer_slot(port);
        int known = i >= 0 && peers[i].len > 0;
        if (known) {
            memcpy(addr, &peers[i].dst, room < peers[i].len ? room : peers[i].len);
            *len = peers[i].len;
        }
        pthread_mutex_unlock(&pktwrap_lock);
        struct sockaddr_storage dst;
        /* Not connected in this process: inherited over exec() (an inetd-like hand-off).
         * The wrapper knows the destination by the loopback port ("P"); before session
         * 25 (wrapb25) the program saw our SOCKS server as its peer. */
        if (!known && pktwrap_ctl_path() != NULL && endpoint_peer(port, &dst) == 0) {
            socklen_t n = addr_len(dst.ss_family);
            remember_peer(fd, (struct sockaddr *)&dst, n);
            memcpy(addr, &dst, room < n ? room : n);
            *len = n;
        }
    }
    return rc;
}

/* One request to the wrapper, its whole answer read (the wrapper closes after it);
 * -1: no wrapper or no answer. */
int pktwrap_call(const unsigned char *req, size_t n, unsigned char *ans, size_t cap, size_t *got)
{
    const char *path = pktwrap_ctl_path();
    *got = 0;
    if (path == NULL)
        return -1;
    int s = socket_fd_unix();
    if (s < 0)
        return -1;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strncpy(un.sun_path, path, sizeof un.sun_path - 1);
    int reached = NEXT(connect)(s, (struct sockaddr *)&un, sizeof un) == 0;
    if (!reached)
        unreachable_once();
    int ok = reached && NEXT(write)(s, req, n) == (ssize_t)n;
    while (ok && *got < cap) {
        ssize_t r = read(s, ans + *got, cap - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        *got += (size_t)r;
    }
    close(s);
    return ok ? 0 : -1;
}

/* ---- getsockname of a wrapped TCP socket ---- */

/* A wrapper's answer family(1) port(2) address(4|16) as a sockaddr; -1: unknown. */
static int local_answer(const unsigned char *ans, size_t got, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (got == 7 && ans[0] == 4) {
        struct sockaddr_in *a = (void *)out;
        a->sin_family = AF_INET;
        memcpy(&a->sin_port, ans + 1, 2);
        memcpy(&a->sin_addr, ans + 3, 4);
        return 0;
    }
    if (got == 19 && ans[0] == 6) {
        struct sockaddr_in6 *a = (void *)out;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_port, ans + 1, 2);
        memcpy(&a->sin6_addr, ans + 3, 16);
        return 0;
    }
    return -1;
}

/* The endpoint-side address of the connection whose loopback end is `port` ("S"). */
static int endpoint_local(in_port_t port, struct sockaddr_storage *out)
{
    unsigned char req[3] = {'S'}, ans[19];
    size_t got;
    memcpy(req + 1, &port, 2);
    if (pktwrap_call(req, 3, ans, sizeof ans, &got) != 0)
        return -1;
    return local_answer(ans, got, out);
}

/* The destination of the connection whose loopback end is `port` ("P"). */
static int endpoint_peer(in_port_t port, struct sockaddr_storage *out)
{
    unsigned char req[3] = {'P'}, ans[19];
    size_t got;
    memcpy(req + 1, &port, 2);
    if (pktwrap_call(req, 3, ans, sizeof ans, &got) != 0)
        return -1;
    return local_answer(ans, got, out);
}

/* A wrapped UDP socket's endpoint end ("U"): the port its datagrams leave the endpoint
 * from and, when connected (to `relay`, 0 if not), the endpoint's address towards the
 * peer; an unspecified address in `out` means "keep the socket's own". */
static int endpoint_udp_local(int family, in_port_t port, in_port_t relay,
                              struct sockaddr_storage *out)
{
    unsigned char req[6] = {'U', family == AF_INET ? 4 : 6}, ans[19];
    size_t got;
    memcpy(req + 2, &port, 2);
    memcpy(req + 4, &relay, 2);
    if (pktwrap_call(req, 6, ans, sizeof ans, &got) != 0)
        return -1;
    return local_answer(ans, got, out);
}

/* An IPv4 sockaddr as a dual-stack (IPv4-mapped) IPv6 one, in place. */
static void to_mapped(struct sockaddr_storage *ss)
{
    struct sockaddr_in v4 = *(struct sockaddr_in *)ss;
    struct sockaddr_in6 *m = (void *)ss;
    memset(ss, 0, sizeof *ss);
    m->sin6_family = AF_INET6;
    m->sin6_port = v4.sin_port;
    memcpy(m->sin6_addr.s6_addr + 10, "\xff\xff", 2);
    memcpy(m->sin6_addr.s6_addr + 12, &v4.sin_addr, 4);
}

static int is_unspecified(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == INADDR_ANY;
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* getsockname of a UDP socket that talks through relay ports: the endpoint's end. */
static int udp_getsockname(int fd, struct sockaddr *addr, socklen_t *len, socklen_t room)
{
    struct sockaddr_storage peer, local;
    socklen_t plen = sizeof peer;
    in_port_t relay = 0;
    if (NEXT(getpeername)(fd, (struct sockaddr *)&peer, &plen) == 0 &&
        (peer.ss_family == AF_INET || peer.ss_family == AF_INET6)) {
        struct sockaddr_storage back = peer;
        socklen_t blen = plen;
        from_relay((struct sockaddr *)&back, &blen);
        if (memcmp(&back, &peer, sizeof peer) == 0)
            return 0; /* connected elsewhere than a relay port: not ours */
        relay = port_of((struct sockaddr *)&peer);
    }
    /* Kept per fd, for its (own port, relay port): a program may ask for every datagram */
    static struct {
        int fd;
        in_port_t port, relay;
        struct sockaddr_storage local;
    } known[MAX_PEERS];
    int slot = fd % MAX_PEERS, cached = 0;
    in_port_t port = port_of(addr);
    pthread_mutex_lock(&pktwrap_lock);
    if (known[slot].fd == fd && known[slot].port == port && known[slot].relay == relay &&
        known[slot].local.ss_family != AF_UNSPEC) {
        local = known[slot].local;
        cached = 1;
    }
    pthread_mutex_unlock(&pktwrap_lock);
    if (!cached) {
        if (endpoint_udp_local(addr->sa_family, port, relay, &local) != 0)
            return 0;
        pthread_mutex_lock(&pktwrap_lock);
        known[slot].fd = fd;
        known[slot].port = port;
        known[slot].relay = relay;
        known[slot].local = local;
        pthread_mutex_unlock(&pktwrap_lock);
    }
    if (is_unspecified(&local)) { /* only the port: the address stays the socket's own */
        in_port_t p = port_of((struct sockaddr *)&local);
        if (addr->sa_family == AF_INET && room >= sizeof(struct sockaddr_in))
            ((struct sockaddr_in *)addr)->sin_port = p;
        else if (addr->sa_family == AF_INET6 && room >= sizeof(struct sockaddr_in6))
            ((struct sockaddr_in6 *)addr)->sin6_port = p;
        return 0;
    }
    if (addr->sa_family == AF_INET6 && local.ss_family == AF_INET)
        to_mapped(&local);
    if (local.ss_family != addr->sa_family)
        return 0;
    socklen_t n = addr_len(local.ss_family);
    memcpy(addr, &local, room < n ? room : n);
    *len = n;
    return 0;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    socklen_t room = len != NULL ? *len : 0;
    int rc = NEXT(getsockname)(fd, addr, len);
    if (rc != 0 || addr == NULL || len == NULL || room < sizeof(sa_family_t) ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || pktwrap_ctl_path() == NULL)
        return rc;
    in_port_t unparked = fd >= 0 && fd < MAX_TRACKED_FD
                             ? __atomic_load_n(&unparked_port[fd], __ATOMIC_RELAXED)
                             : 0;
    if (unparked != 0 && room >= addr_len(addr->sa_family)) {
        if (port_of(addr) == unparked) { /* still the parking's port: unbound natively */
            if (addr->sa_family == AF_INET)
                ((struct sockaddr_in *)addr)->sin_port = 0;
            else
                ((struct sockaddr_in6 *)addr)->sin6_port = 0;
            return rc;
        }
        __atomic_store_n(&unparked_port[fd], 0, __ATOMIC_RELAXED);
    }
    if ((udp_tracked(fd) || udp_port_tracked(addr)) && inet_type(fd, addr) == SOCK_DGRAM)
        return udp_getsockname(fd, addr, len, room);
    struct sockaddr_storage peer, local;
    socklen_t plen = sizeof peer;
    if (NEXT(getpeername)(fd, (struct sockaddr *)&peer, &plen) != 0 ||
        !is_socks_server((struct sockaddr *)&peer))
        return rc;
    in_port_t port = port_of(addr);
    int cached = 0;
    /* The program's own socket's family: proxychains puts an IPv4 socket in place of an
     * IPv6 one (its SOCKS server is IPv4), but the program still has an IPv6 socket. */
    int want = addr->sa_family;
    pthread_mutex_lock(&pktwrap_lock);
    int slot = peer_slot(port);
    if (slot >= 0 && peers[slot].len > 0)
        want = peers[slot].dst.ss_family;
    if (slot >= 0 && peers[slot].local.ss_family != AF_UNSPEC) {
        local = peers[slot].local;
        cached = 1;
    }
    pthread_mutex_unlock(&pktwrap_lock);
    if (!cached && endpoint_local(port, &local) != 0)
        return rc;
    if (!cached) {
        pthread_mutex_lock(&pktwrap_lock);
        slot = peer_slot(port);
        if (slot >= 0)
            peers[slot].local = local;
        pthread_mutex_unlock(&pktwrap_lock);
    }
    if (want == AF_INET6 && local.ss_family == AF_INET) /* a dual-stack socket */
        to_mapped(&local);
    if (local.ss_family != want)
        return rc;
    socklen_t n = addr_len(local.ss_family);
    memcpy(addr, &local, room < n ? room : n);
    *len = n;
    return rc;
}
