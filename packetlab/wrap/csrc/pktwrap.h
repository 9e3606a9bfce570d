/* What the parts of libpktwrap.so share (pktwrap_udp.c, pktwrap_names.c): the wrapper's
 * unix socket ($PKTLAB_WRAP_UDP), one request to it, the lock of their tables. Hidden:
 * the program sees none of these symbols. */
#ifndef PKTWRAP_H
#define PKTWRAP_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HIDDEN __attribute__((visibility("hidden")))
/* The next definition of a hooked function (proxychains', or libc's) */
#define NEXT(name) ((name##_fn)dlsym(RTLD_NEXT, #name))

/* The wrapper's answer to a name lookup ("N", "R") */
#define LOOKUP_OK 0
#define LOOKUP_NONAME 1
#define LOOKUP_FAILED 2
#define LOOKUP_LOCAL 3

extern pthread_mutex_t pktwrap_lock HIDDEN;
/* Set once a name lookup went on to proxychains without the wrapper's answer: its
 * proxy_dns may then have handed out placeholder addresses in 224.0.0.0/8
 * (remote_dns_subnet), which only proxychains' connect can map back to the name. */
extern int pktwrap_fake_names HIDDEN;
/* The wrapper's unix socket; NULL when not wrapped (then every hook passes through). */
HIDDEN const char *pktwrap_ctl_path(void);
/* One request, its whole answer read into `ans`; -1: no wrapper or no answer. */
HIDDEN int pktwrap_call(const unsigned char *req, size_t n, unsigned char *ans, size_t cap,
                        size_t *got);

#endif
