/* pktwrap_clock: the clock part of libpktwrap.so, for `pktlab wrap --fidelity`.
 *
 * The wrapped program's clocks read real time minus an offset that the wrapper raises
 * to hide the controller link's delay (docs/wrap.md, "Timing fidelity"). The offset is
 * the first int64 of the file named by $PKTLAB_WRAP_CLOCK (mapped shared, read-only in
 * spirit); the second int64 is the largest virtual CLOCK_MONOTONIC value handed out, kept
 * with an atomic max so the wrapper never moves the clock below what was seen.
 * Clocks adjusted: REALTIME, MONOTONIC, MONOTONIC_RAW, BOOTTIME and their COARSE forms,
 * gettimeofday(), time(). CPU-time clocks are left alone. Without the variable (or if the
 * file cannot be mapped) every call passes through unchanged.
 * Slots 2 and 3 are the virtual CLOCK_MONOTONIC of the program's latest TCP connect() and
 * latest send on a socket (pktwrap_udp.c marks them): the wrapper anchors the endpoint's
 * intervals there instead of at the moment its own event loop noticed the action.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

/* [0] offset ns, [1] high-water, [2] last TCP connect, [3] last socket send (virtual ns) */
static volatile int64_t *shared;
static clock_gettime_fn real_clock_gettime;

__attribute__((constructor)) static void pktwrap_clock_init(void)
{
    real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("PKTLAB_WRAP_CLOCK");
    if (path == NULL || *path == '\0')
        return;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        shared = (volatile int64_t *)p;
}

static int adjusted(clockid_t id)
{
    switch (id) {
    case CLOCK_REALTIME:
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_BOOTTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_MONOTONIC_COARSE:
        return 1;
    default:
        return 0;
    }
}

static void subtract(struct timespec *ts, int64_t ns)
{
    int64_t t = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec - ns;
    ts->tv_sec = t / 1000000000LL;
    ts->tv_nsec = t % 1000000000LL;
}

static void note_high_water(int64_t v)
{
    int64_t seen = __atomic_load_n(&shared[1], __ATOMIC_RELAXED);
    while (v > seen &&
           !__atomic_compare_exchange_n(&shared[1], &seen, v, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (real_clock_gettime == NULL)
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc != 0 || shared == NULL || !adjusted(id))
        return rc;
    int64_t offset = __atomic_load_n(&shared[0], __ATOMIC_ACQUIRE);
    if (offset != 0)
        subtract(ts, offset);
    if (id == CLOCK_MONOTONIC)
        note_high_water((int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec);
    return rc;
}

/* Record the program's virtual time now in slot 2 or 3 (no-op without a clock file). */
__attribute__((visibility("hidden"))) void pktwrap_mark(int slot)
{
    struct timespec ts;
    if (shared == NULL || real_clock_gettime == NULL)
        return;
    if (real_clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return;
    int64_t v = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec -
                __atomic_load_n(&shared[0], __ATOMIC_ACQUIRE);
    __atomic_store_n(&shared[slot], v, __ATOMIC_RELEASE);
}

int gettimeofday(struct timeval *tv, void *tz)
{
    struct timespec ts;
    (void)tz;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
