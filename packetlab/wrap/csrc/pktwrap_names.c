/* pktwrap_names: a wrapped program's name lookups answered from the endpoint.
 *
 * getaddrinfo() and gethostbyname*() ask the wrapper ("N" family len name) to resolve a
 * name from the endpoint, so the program gets the endpoint's answer: its addresses (the
 * getaddrinfo list is built by libc's own getaddrinfo from each address and the
 * program's service and hints), or "no such name"; names the wrapper leaves to this side
 * (/etc/hosts) and address literals get libc's own list (proxychains' when the wrapper
 * cannot be reached: its placeholders then stand for the names). getnameinfo() and gethostbyaddr*() ask it ("R"
 * family addr) for the endpoint's PTR answer (proxychains' hooks give numbers only);
 * /etc/hosts addresses go to libc.
 */
#include "pktwrap.h"

#include <stdint.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);
typedef void (*freeaddrinfo_fn)(struct addrinfo *);

#define MAX_LISTS 256

/* Lists we built with libc's getaddrinfo: freed by libc's freeaddrinfo, not by
 * proxychains' (which frees only the first entry of its own one-entry lists). */
static struct addrinfo *ours[MAX_LISTS];

int pktwrap_fake_names HIDDEN;

static void *libc_sym(const char *name)
{
    static void *libc; /* looked up once (each dlopen counts a reference) */
    void *h = __atomic_load_n(&libc, __ATOMIC_ACQUIRE);
    if (h == NULL) {
        h = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        __atomic_store_n(&libc, h, __ATOMIC_RELEASE);
    }
    return h != NULL ? dlsym(h, name) : NULL;
}

static int keep(struct addrinfo *list)
{
    pthread_mutex_lock(&pktwrap_lock);
    for (int i = 0; i < MAX_LISTS; i++) {
        if (ours[i] == NULL) {
            ours[i] = list;
            pthread_mutex_unlock(&pktwrap_lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&pktwrap_lock);
    return 0;
}

static int forget(struct addrinfo *list)
{
    pthread_mutex_lock(&pktwrap_lock);
    for (int i = 0; i < MAX_LISTS; i++) {
        if (ours[i] == list && list != NULL) {
            ours[i] = NULL;
            pthread_mutex_unlock(&pktwrap_lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&pktwrap_lock);
    return 0;
}

static int numeric(const char *node)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1 ||
           strchr(node, '%') != NULL;
}

/* The CNAME chain after an "N" answer's addresses: the name asked, ..., the canonical
 * name (last); none when the name is not an alias. glibc gives the canonical name as
 * ai_canonname and h_name, the others as h_aliases (before session 25: the name asked
 * and no aliases). */
#define MAX_CHAIN 8
struct chain {
    unsigned n;
    const unsigned char *name[MAX_CHAIN];
    size_t len[MAX_CHAIN];
};

static void parse_chain(const unsigned char *ans, size_t got, struct chain *c)
{
    size_t i = 2;
    c->n = 0;
    for (unsigned k = 0; k < ans[1] && i < got; k++)
        i += 1 + (ans[i] == 4 ? 4 : 16);
    if (i >= got)
        return;
    unsigned count = ans[i++];
    for (unsigned k = 0; k < count && c->n < MAX_CHAIN && i < got; k++) {
        size_t len = ans[i];
        if (len == 0 || i + 1 + len > got)
            break;
        c->name[c->n] = ans + i + 1;
        c->len[c->n] = len;
        c->n++;
        i += 1 + len;
    }
}

#define ANSWER_MAX (2 + 32 * 17 + 1 + MAX_CHAIN * 256)

/* Ask the wrapper; -1: no answer (go on as without us). */
static int lookup(const char *node, int family, unsigned char *ans, size_t cap, size_t *got)
{
    size_t n = strlen(node);
    if (n == 0 || n > 253) {
        __atomic_store_n(&pktwrap_fake_names, 1, __ATOMIC_RELAXED);
        return -1;
    }
    unsigned char req[3 + 253];
    req[0] = 'N';
    req[1] = family == AF_INET ? 4 : family == AF_INET6 ? 6 : 0;
    req[2] = (unsigned char)n;
    memcpy(req + 3, node, n);
    if (pktwrap_call(req, 3 + n, ans, cap, got) == 0 && *got >= 2)
        return ans[0];
    __atomic_store_n(&pktwrap_fake_names, 1, __ATOMIC_RELAXED);
    return -1;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn libc_gai = (getaddrinfo_fn)libc_sym("getaddrinfo");
    int family = hints != NULL ? hints->ai_family : AF_UNSPEC;
    unsigned char ans[ANSWER_MAX];
    size_t got = 0;
    int status = -1;
    if (node != NULL && libc_gai != NULL && !(hints != NULL && (hints->ai_flags & AI_NUMERICHOST)) &&
        !numeric(node))
        status = lookup(node, family, ans, sizeof ans, &got);
    if (status == LOOKUP_NONAME)
        return EAI_NONAME;
    if (status == LOOKUP_FAILED)
        return EAI_AGAIN;
    if (status == LOOKUP_LOCAL || (status < 0 && libc_gai != NULL &&
                                   (node == NULL || numeric(node) ||
                                    (hints != NULL && (hints->ai_flags & AI_NUMERICHOST))))) {
        /* An address literal, no node, or an /etc/hosts name: libc's own answer, as
         * natively (session 27). proxychains' gave one entry whatever the hints: socket
         * type 0 for all (getent ahosts printed "0" for STREAM, DGRAM and RAW), protocol
         * 0, ai_canonname always set, and ::1 for AF_INET instead of EAI_ADDRFAMILY. */
        int rc = libc_gai(node, service, hints, res);
        if (rc == 0 && !keep(*res)) { /* no room to note it: proxychains' free would leak */
            freeaddrinfo_fn libc_free = (freeaddrinfo_fn)libc_sym("freeaddrinfo");
            if (libc_free != NULL)
                libc_free(*res);
            return NEXT(getaddrinfo)(node, service, hints, res);
        }
        return rc;
    }
    if (status != LOOKUP_OK)
        return NEXT(getaddrinfo)(node, service, hints, res);
    struct addrinfo h = {0};
    if (hints != NULL)
        h = *hints;
    h.ai_flags = (h.ai_flags | AI_NUMERICHOST) & ~(AI_CANONNAME | AI_ADDRCONFIG);
    struct addrinfo *head = NULL, **tail = &head;
    int last = EAI_NONAME;
    for (size_t i = 2, k = 0; k < ans[1] && i < got; k++) {
        int fam = ans[i] == 4 ? AF_INET : AF_INET6;
        size_t alen = fam == AF_INET ? 4 : 16;
        char text[INET6_ADDRSTRLEN];
        if (i + 1 + alen > got || inet_ntop(fam, ans + i + 1, text, sizeof text) == NULL)
            break;
        i += 1 + alen;
        if (family != AF_UNSPEC && family != fam)
            continue;
        h.ai_family = fam;
        struct addrinfo *part = NULL;
        last = libc_gai(text, service, &h, &part);
        if (last != 0 || part == NULL)
            continue;
        *tail = part;
        while (*tail != NULL)
            tail = &(*tail)->ai_next;
    }
    if (head == NULL)
        return last != 0 ? last : EAI_NONAME;
    if (hints != NULL && (hints->ai_flags & AI_CANONNAME)) { /* libc's freeaddrinfo frees it */
        struct chain c;
        parse_chain(ans, got, &c);
        head->ai_canonname = c.n > 0 ? strndup((const char *)c.name[c.n - 1], c.len[c.n - 1])
                                     : strdup(node);
    }
    keep(head);
    *res = head;
    return 0;
}

void freeaddrinfo(struct addrinfo *list)
{
    if (forget(list)) {
        freeaddrinfo_fn libc_free = (freeaddrinfo_fn)libc_sym("freeaddrinfo");
        if (libc_free != NULL)
            libc_free(list);
        return;
    }
    NEXT(freeaddrinfo)(list);
}

/* gethostbyname and friends: the endpoint's answer too (proxychains' own gethostbyname
 * hands out a placeholder address, and the _r forms asked this host's DNS). `buf` gets
 * the name, the alias and address pointer arrays and the addresses, as glibc lays them. */
static int fill_hostent(const char *name, int af, const unsigned char *ans, size_t got,
                        struct hostent *he, char *buf, size_t buflen)
{
    size_t alen = af == AF_INET ? 4 : 16, nlen = strlen(name) + 1, n = 0;
    for (size_t i = 2, k = 0; k < ans[1] && i < got; k++) {
        size_t len = ans[i] == 4 ? 4 : 16;
        if (i + 1 + len > got)
            break;
        if (len == alen)
            n++;
        i += 1 + len;
    }
    if (n == 0)
        return HOST_NOT_FOUND; /* no address of this family (NODATA in glibc's terms) */
    struct chain c;
    parse_chain(ans, got, &c);
    size_t na = c.n > 0 ? c.n - 1 : 0, strings = 0;
    if (c.n > 0)
        nlen = c.len[c.n - 1] + 1;
    for (size_t k = 0; k < na; k++)
        strings += c.len[k] + 1;
    size_t align = sizeof(char *);
    size_t need = align + (na + 2 + n) * sizeof(char *) + n * alen + nlen + strings;
    if (buflen < need)
        return ERANGE;
    char *p = buf + ((align - (uintptr_t)buf % align) % align);
    char **aliases = (char **)p, **list = aliases + na + 1;
    char *addrs = (char *)(list + n + 1), *copy = addrs + n * alen;
    char *more = copy + nlen;
    for (size_t k = 0; k < na; k++) {
        memcpy(more, c.name[k], c.len[k]);
        more[c.len[k]] = '\0';
        aliases[k] = more;
        more += c.len[k] + 1;
    }
    aliases[na] = NULL;
    n = 0;
    for (size_t i = 2, k = 0; k < ans[1] && i < got; k++) {
        size_t len = ans[i] == 4 ? 4 : 16;
        if (i + 1 + len > got)
            break;
        if (len == alen) {
            memcpy(addrs + n * alen, ans + i + 1, alen);
            list[n] = addrs + n * alen;
            n++;
        }
        i += 1 + len;
    }
    list[n] = NULL;
    if (c.n > 0) { /* the canonical name */
        memcpy(copy, c.name[c.n - 1], nlen - 1);
        copy[nlen - 1] = '\0';
    } else {
        memcpy(copy, name, nlen);
    }
    he->h_name = copy;
    he->h_aliases = aliases;
    he->h_addrtype = af;
    he->h_length = (int)alen;
    he->h_addr_list = list;
    return 0;
}

/* 0: `*result` set (or NULL with *herr); -1: not ours (go on to the next library). */
static int endpoint_hostent(const char *name, int af, struct hostent *he, char *buf,
                            size_t buflen, struct hostent **result, int *herr, int *rc)
{
    unsigned char ans[ANSWER_MAX];
    size_t got = 0;
    if (name == NULL || (af != AF_INET && af != AF_INET6) || numeric(name))
        return -1;
    int status = lookup(name, af, ans, sizeof ans, &got);
    if (status < 0 || status > LOOKUP_FAILED)
        return -1;
    *result = NULL;
    *rc = 0;
    if (status == LOOKUP_NONAME) {
        *herr = HOST_NOT_FOUND;
    } else if (status == LOOKUP_FAILED) {
        *herr = TRY_AGAIN;
        *rc = EAGAIN;
    } else {
        int r = fill_hostent(name, af, ans, got, he, buf, buflen);
        if (r == ERANGE) {
            *herr = NETDB_INTERNAL;
            *rc = ERANGE;
        } else if (r != 0) {
            *herr = NO_DATA;
        } else {
            *herr = 0;
            *result = he;
        }
    }
    return 0;
}

typedef struct hostent *(*gethostbyname_fn)(const char *);
typedef struct hostent *(*gethostbyname2_fn)(const char *, int);
typedef int (*gethostbyname_r_fn)(const char *, struct hostent *, char *, size_t,
                                  struct hostent **, int *);
typedef int (*gethostbyname2_r_fn)(const char *, int, struct hostent *, char *, size_t,
                                   struct hostent **, int *);

static struct hostent *static_hostent(const char *name, int af)
{
    static struct hostent he; /* one result per process, as glibc's own */
    static char buf[2048];
    struct hostent *result;
    int herr, rc;
    if (endpoint_hostent(name, af, &he, buf, sizeof buf, &result, &herr, &rc) != 0)
        return (struct hostent *)-1;
    h_errno = herr;
    return result;
}

struct hostent *gethostbyname(const char *name)
{
    struct hostent *he = static_hostent(name, AF_INET);
    return he != (struct hostent *)-1 ? he : NEXT(gethostbyname)(name);
}

struct hostent *gethostbyname2(const char *name, int af)
{
    struct hostent *he = static_hostent(name, af);
    return he != (struct hostent *)-1 ? he : NEXT(gethostbyname2)(name, af);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                     struct hostent **result, int *herr)
{
    int rc;
    if (endpoint_hostent(name, af, ret, buf, buflen, result, herr, &rc) == 0) {
        h_errno = *herr;
        return rc;
    }
    return NEXT(gethostbyname2_r)(name, af, ret, buf, buflen, result, herr);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *herr)
{
    int rc;
    if (endpoint_hostent(name, AF_INET, ret, buf, buflen, result, herr, &rc) == 0) {
        h_errno = *herr;
        return rc;
    }
    return NEXT(gethostbyname_r)(name, ret, buf, buflen, result, herr);
}

/* ---- reverse lookups from the endpoint ---- */

/* The endpoint's name for an address ("R"): LOOKUP_* (the name in `name` for OK); -1:
 * no answer (go on as without us). */
static int reverse(int af, const void *addr, char *name, size_t cap)
{
    unsigned char req[18], ans[2 + 255];
    size_t alen = af == AF_INET ? 4 : 16, got;
    req[0] = 'R';
    req[1] = af == AF_INET ? 4 : 6;
    memcpy(req + 2, addr, alen);
    if (pktwrap_call(req, 2 + alen, ans, sizeof ans, &got) != 0 || got < 2)
        return -1;
    if (ans[0] == LOOKUP_OK) {
        size_t n = ans[1];
        if (n == 0 || got < 2 + n || n >= cap)
            return -1;
        memcpy(name, ans + 2, n);
        name[n] = '\0';
    }
    return ans[0];
}

/* An IPv6 address glibc's DNS module looks up as the IPv4 address in its last 4 bytes:
 * IPv4-mapped (::ffff:a.b.c.d) or "tunnelled" (::a.b.c.d, but not ::1). */
static int v4_inside(const void *a6)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zeros[12];
    return memcmp(a6, mapped, 12) == 0 ||
           (memcmp(a6, zeros, 12) == 0 && !IN6_IS_ADDR_LOOPBACK(a6));
}

typedef int (*getnameinfo_fn)(const struct sockaddr *, socklen_t, char *, socklen_t, char *,
                              socklen_t, int);

/* glibc's NI_NOFQDN: a name in this host's own domain loses that domain. */
static void cut_own_domain(char *name)
{
    char me[256];
    char *dot = strchr(name, '.');
    if (dot == NULL || gethostname(me, sizeof me) != 0)
        return;
    me[sizeof me - 1] = '\0';
    char *mine = strchr(me, '.');
    if (mine != NULL && strcmp(dot, mine) == 0)
        *dot = '\0';
}

/* proxychains' getnameinfo gives numbers only (host and service, whatever the flags); a
 * name is asked of the endpoint's DNS server here, the rest is libc's own. */
int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    getnameinfo_fn libc_gni = (getnameinfo_fn)libc_sym("getnameinfo");
    if (libc_gni == NULL)
        return NEXT(getnameinfo)(sa, salen, host, hostlen, serv, servlen, flags);
    if (pktwrap_ctl_path() == NULL || host == NULL || hostlen == 0 || (flags & NI_NUMERICHOST) ||
        sa == NULL || salen < sizeof(struct sockaddr_in) ||
        (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        (sa->sa_family == AF_INET6 && salen < sizeof(struct sockaddr_in6)))
        return libc_gni(sa, salen, host, hostlen, serv, servlen, flags);
    int af = sa->sa_family;
    const void *addr = &((const struct sockaddr_in *)sa)->sin_addr;
    if (af == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        addr = a6;
        if (IN6_IS_ADDR_UNSPECIFIED(a6)) /* glibc: no name, without asking */
            return libc_gni(sa, salen, host, hostlen, serv, servlen, flags);
        if (v4_inside(a6)) { /* as glibc: in-addr.arpa */
            af = AF_INET;
            addr = a6->s6_addr + 12;
        }
    }
    char name[NI_MAXHOST];
    int status = reverse(af, addr, name, sizeof name);
    if (status < 0 || status > LOOKUP_FAILED) /* /etc/hosts, or no wrapper: libc */
        return libc_gni(sa, salen, host, hostlen, serv, servlen, flags);
    /* (glibc refuses NI_NUMERICHOST with NI_NAMEREQD) */
    int rc = libc_gni(sa, salen, host, hostlen, serv, servlen,
                      (flags | NI_NUMERICHOST) & ~NI_NAMEREQD);
    if (rc != 0)
        return rc;
    if (status != LOOKUP_OK)
        return !(flags & NI_NAMEREQD) ? 0 : status == LOOKUP_NONAME ? EAI_NONAME : EAI_AGAIN;
    if (flags & NI_NOFQDN)
        cut_own_domain(name);
    if (strlen(name) >= hostlen)
        return EAI_OVERFLOW;
    strcpy(host, name);
    return 0;
}

typedef struct hostent *(*gethostbyaddr_fn)(const void *, socklen_t, int);
typedef int (*gethostbyaddr_r_fn)(const void *, socklen_t, int, struct hostent *, char *,
                                  size_t, struct hostent **, int *);

/* As endpoint_hostent, for an address: 0 done; -1 not ours (/etc/hosts: libc's). */
static int endpoint_hostent_by_addr(const void *addr, socklen_t len, int af,
                                    struct hostent *he, char *buf, size_t buflen,
                                    struct hostent **result, int *herr, int *rc)
{
    char name[NI_MAXHOST];
    if (addr == NULL || !((af == AF_INET && len == 4) || (af == AF_INET6 && len == 16)))
        return -1;
    if (af == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(addr))
        return -1; /* glibc answers "not found" without asking */
    if (af == AF_INET6 && v4_inside(addr)) {
        addr = (const unsigned char *)addr + 12; /* as glibc's DNS module: an IPv4 answer */
        af = AF_INET;
        len = 4;
    }
    int status = reverse(af, addr, name, sizeof name);
    if (status < 0 || status > LOOKUP_FAILED)
        return -1;
    *result = NULL;
    *rc = 0;
    if (status == LOOKUP_NONAME) {
        *herr = HOST_NOT_FOUND;
        return 0;
    }
    if (status == LOOKUP_FAILED) {
        *herr = TRY_AGAIN;
        *rc = EAGAIN;
        return 0;
    }
    unsigned char ans[2 + 1 + 16] = {LOOKUP_OK, 1, af == AF_INET ? 4 : 6};
    memcpy(ans + 3, addr, len);
    if (fill_hostent(name, af, ans, 3 + len, he, buf, buflen) != 0) {
        *herr = NETDB_INTERNAL;
        *rc = ERANGE;
        return 0;
    }
    *herr = 0;
    *result = he;
    return 0;
}

/* proxychains' gethostbyaddr gives the address as the name (IPv4; nothing for IPv6) */
struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    static struct hostent he; /* one result per process, as glibc's own */
    static char buf[2048];
    struct hostent *result;
    int herr, rc;
    if (pktwrap_ctl_path() != NULL &&
        endpoint_hostent_by_addr(addr, len, type, &he, buf, sizeof buf, &result, &herr, &rc) == 0) {
        h_errno = herr;
        return result;
    }
    gethostbyaddr_fn libc_ghba = (gethostbyaddr_fn)libc_sym("gethostbyaddr");
    return libc_ghba != NULL ? libc_ghba(addr, len, type) : NEXT(gethostbyaddr)(addr, len, type);
}

int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                    size_t buflen, struct hostent **result, int *herr)
{
    int rc;
    if (pktwrap_ctl_path() != NULL &&
        endpoint_hostent_by_addr(addr, len, type, ret, buf, buflen, result, herr, &rc) == 0) {
        h_errno = *herr; /* as glibc's (Python reads h_errno, not *herr) */
        return rc;
    }
    return NEXT(gethostbyaddr_r)(addr, len, type, ret, buf, buflen, result, herr);
}
