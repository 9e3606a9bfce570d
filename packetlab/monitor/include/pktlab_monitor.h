/*
 * pktlab_monitor.h - the host ABI of PacketLab monitors (PROTOCOL.md section 8.2), for
 * monitors written in C and built with `pktlab monitor build SRC.c -o OUT.wasm`
 * (clang --target=wasm32, no libc). Shipped with packetlab; see docs/monitors.md.
 *
 * A monitor defines the checks it needs with the PKTLAB_CHECK_* macros below (a check
 * it leaves out counts as a crash when that message comes). Each check returns:
 *   0                allow
 *   1 .. 65534       reject, with this reason (monerrid)
 *   negative         reject, reason hidden (ndata: nblock with the low 16 bits)
 *   65535 or more    the monitor failed (as a trap or a timeout)
 * Byte strings are pointers into the monitor's memory (0 when absent); the payload of
 * nsend/ndata, or the ncap filter, is read with read_vmem_region(PKTLAB_CURPKT_DATA+off).
 * `pm` is the monitor's 256 bytes of persistent memory.
 */
#ifndef PKTLAB_MONITOR_H
#define PKTLAB_MONITOR_H

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef unsigned long size_t;

#define PKTLAB_EXPORT(name) __attribute__((export_name(#name), used))
#define PKTLAB_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

/* vmem map (PROTOCOL.md section 2.2), as seen by monitors */
#define PKTLAB_CURPKT_DATA 0x00000000u
#define PKTLAB_SYS_IP4NO 0x10000000u
#define PKTLAB_SYS_TIME 0x10010000u
#define PKTLAB_SYS_HOSTID 0x10030000u
#define PKTLAB_SKT_BASE(sktid) (0x20000000u + (uint32_t)(sktid) * 0x400u)

#define PKTLAB_IP4 4
#define PKTLAB_IP6 6
#define PKTLAB_RAW 0x00
#define PKTLAB_TCP 0x06
#define PKTLAB_UDP 0x11
#define PKTLAB_PM_LEN 256

/* host functions */
PKTLAB_IMPORT(read_vmem_region) int32_t read_vmem_region(uint32_t addr, void *buf, uint32_t len);
PKTLAB_IMPORT(persistent_memory_flush) int32_t persistent_memory_flush(void);
PKTLAB_IMPORT(endpoint_debug_enabled) int32_t endpoint_debug_enabled(void);
PKTLAB_IMPORT(monitor_debug) void monitor_debug(const char *text);

/* a 16-bit port in network order, as the check arguments carry it */
static inline uint16_t pktlab_port(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* checks: define the body after the macro, e.g. PKTLAB_CHECK_NSEND { return 0; } */
#define PKTLAB_CHECK_NOPEN PKTLAB_EXPORT(check_pktlab_message_nopen) int32_t \
    check_pktlab_message_nopen(uint32_t sktid, uint32_t family, uint32_t proto, \
        uint32_t rbufsz, uint32_t laddrlen, uint32_t lportlen, uint32_t raddrlen, \
        uint32_t rportlen, const uint8_t *laddr, const uint8_t *lport, const uint8_t *raddr, \
        const uint8_t *rport, uint8_t *pm, uint32_t pmlen)
#define PKTLAB_CHECK_NCLOSE PKTLAB_EXPORT(check_pktlab_message_nclose) int32_t \
    check_pktlab_message_nclose(uint32_t sktid, uint8_t *pm, uint32_t pmlen)
#define PKTLAB_CHECK_NSEND PKTLAB_EXPORT(check_pktlab_message_nsend) int32_t \
    check_pktlab_message_nsend(uint32_t sktid, uint32_t family, uint32_t proto, \
        uint64_t time, uint32_t tag, uint32_t raddrlen, const uint8_t *raddr, \
        uint32_t rportlen, const uint8_t *rport, uint32_t len, uint8_t *pm, uint32_t pmlen)
#define PKTLAB_CHECK_NDATA PKTLAB_EXPORT(check_pktlab_message_ndata) int32_t \
    check_pktlab_message_ndata(uint32_t sktid, uint32_t family, uint32_t proto, \
        uint64_t time, uint32_t raddrlen, const uint8_t *raddr, uint32_t rportlen, \
        const uint8_t *rport, uint32_t len, uint8_t *pm, uint32_t pmlen)
#define PKTLAB_CHECK_NCAP PKTLAB_EXPORT(check_pktlab_message_ncap) int32_t \
    check_pktlab_message_ncap(uint32_t sktid, uint32_t family, uint32_t proto, \
        uint64_t endtime, uint8_t *pm, uint32_t pmlen)
/* optional: initialize(info, pm, 256) returns the length of info written (<= 65536),
 * sent to the controller as linfo("monitor") after the start result */
#define PKTLAB_INITIALIZE PKTLAB_EXPORT(initialize) uint32_t \
    initialize(uint8_t *info, uint8_t *pm, uint32_t pmlen)

/* malloc/free, required exports: a bump allocator (the host allocates a few buffers per
 * session; free is a no-op). Define PKTLAB_OWN_ALLOCATOR to supply your own. */
#ifndef PKTLAB_OWN_ALLOCATOR
extern unsigned char __heap_base;
static uint32_t pktlab_heap_;
PKTLAB_EXPORT(malloc) void *malloc(size_t n) {
    if (!pktlab_heap_) pktlab_heap_ = (uint32_t)&__heap_base;
    uint32_t p = (pktlab_heap_ + 7u) & ~7u, end = p + (uint32_t)n;
    uint32_t have = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535u) / 65536u) == (size_t)-1)
        return 0;
    pktlab_heap_ = end;
    return (void *)p;
}
PKTLAB_EXPORT(free) void free(void *p) { (void)p; }
#endif

#endif /* PKTLAB_MONITOR_H */
