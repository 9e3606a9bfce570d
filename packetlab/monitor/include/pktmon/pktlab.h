/*
 * pktlab.h - a compatibility header for monitors written for the reference's monitor
 * builder (pktmon), built with `pktlab monitor build`. It is NOT libpktlab's pktlab.h:
 * it holds only what a monitor needs, written from PROTOCOL.md (section 1.2 field
 * constants and size limits, 1.3 status codes, 2.2 the vmem map). The vmem names other
 * than PKTLAB_VMEMADDR_CURPKT_DATA follow the field names of PROTOCOL.md 2.2; a monitor
 * using a name this header lacks gets a compile error naming it (docs/monitors.md).
 */
#ifndef PKTLAB_COMPAT_PKTLAB_H
#define PKTLAB_COMPAT_PKTLAB_H

#include <stddef.h>
#include <stdint.h>

/* endpoint time: nanoseconds (nsend/ndata time, ncap endtime), passed whole as i64 */
typedef uint64_t pktlab_time_t;

/* family and proto fields of nopen/nsend/ndata/ncap (PROTOCOL.md 1.2) */
#define PKTLAB_IP4_PROTO 0x4
#define PKTLAB_IP6_PROTO 0x6
#define PKTLAB_RAW_PROTO 0x00
#define PKTLAB_TCP_PROTO 0x06
#define PKTLAB_UDP_PROTO 0x11

#define PKTLAB_NCTL_TCP_FIN 1

/* size limits */
#define PKTLAB_MREAD_MAX 0x10000
#define PKTLAB_NDATA_MAX 0x10000
#define PKTLAB_LINFO_INFO_MAX 0x10000 /* initialize()'s info buffer */
#define PKTLAB_PERSISTENT_MEMORY_LEN 256

/* status codes: the errid a pktlab_message_*_result callback receives (PROTOCOL.md 1.3) */
enum pktlab_status {
    PKTLAB_SUCCESS = 0,
    PKTLAB_ECTLBADMSG = 0x10,
    PKTLAB_ECTLNOTSUP = 0x11,
    PKTLAB_ECTLMONREJ = 0x12,
    PKTLAB_ECTLMONUKN = 0x13,
    PKTLAB_ECRTBADHDAT = 0x20,
    PKTLAB_ECRTNOHDAT = 0x21,
    PKTLAB_ECRTBADFRM = 0x22,
    PKTLAB_ECRTNOSPACE = 0x23,
    PKTLAB_ECRTBADHINT = 0x24,
    PKTLAB_ESYSNOBUFS = 0x30,
    PKTLAB_ESYSNOPERM = 0x31,
    PKTLAB_ESKTINUSE = 0x32,
    PKTLAB_ESKTNOTOPEN = 0x33,
    PKTLAB_ESKTNOPRFAM = 0x34,
    PKTLAB_ESKTNOPROTO = 0x35,
    PKTLAB_ESKTNOADDR = 0x36,
    PKTLAB_ESKTNOMATCH = 0x37,
    PKTLAB_ESKTBADFILT = 0x38,
    PKTLAB_ESKTPKTDENY = 0x39,
    PKTLAB_ESKTOPNDENY = 0x3A,
    PKTLAB_ETCPNOPORT = 0x40,
    PKTLAB_EPKTNOTSENT = 0x41,
    PKTLAB_EUDPNOPORT = 0x42,
    PKTLAB_EPKTTRUNC = 0x43,
    PKTLAB_ENORES = 0x44,
    PKTLAB_EMEMBADADR = 0x48,
    PKTLAB_EUNKFAULT = 0xFFFF
};

/* vmem map as monitors see it (PROTOCOL.md 2.2); read with read_vmem_region() */
#define PKTLAB_VMEMADDR_CURPKT_DATA 0x00000000u /* the payload / ncap filter being checked */
#define PKTLAB_VMEMADDR_CURPKT_LEN 0x01000000u /* defined, not mapped */
#define PKTLAB_VMEMADDR_CURPKT_SKTID 0x01000010u /* defined, not mapped */
#define PKTLAB_VMEMADDR_SYS 0x10000000u
#define PKTLAB_VMEMADDR_SYS_IP4NO 0x10000000u
#define PKTLAB_VMEMADDR_SYS_IP6NO 0x10000001u
#define PKTLAB_VMEMADDR_SYS_TRANSSUP 0x10000002u
#define PKTLAB_VMEMADDR_SYS_BUFMAXDUP 0x10000006u
#define PKTLAB_VMEMADDR_SYS_IP4LS 0x10000100u
#define PKTLAB_VMEMADDR_SYS_IP6LS 0x10001000u
#define PKTLAB_VMEMADDR_SYS_TIME 0x10010000u
#define PKTLAB_VMEMADDR_SYS_BUFMAX 0x10010010u
#define PKTLAB_VMEMADDR_SYS_BUFUSED 0x10010014u
#define PKTLAB_VMEMADDR_SYS_IP4DNSNO 0x10020000u
#define PKTLAB_VMEMADDR_SYS_IP6DNSNO 0x10020001u
#define PKTLAB_VMEMADDR_SYS_IP4DNSLS 0x10020010u
#define PKTLAB_VMEMADDR_SYS_IP6DNSLS 0x10020100u
#define PKTLAB_VMEMADDR_SYS_IP4HDRMOD 0x10020200u
#define PKTLAB_VMEMADDR_SYS_IP6HDRMOD 0x10020210u
#define PKTLAB_VMEMADDR_SYS_HOSTID 0x10030000u
/* one 0x400-byte block of socket info per sktid; the offsets inside it */
#define PKTLAB_VMEMADDR_SKT(sktid) (0x20000000u + (uint32_t)(sktid) * 0x400u)
#define PKTLAB_SKTINFO_FAMILY 0x00
#define PKTLAB_SKTINFO_PROTO 0x01
#define PKTLAB_SKTINFO_STAT 0x02
#define PKTLAB_SKTINFO_LADDR 0x10
#define PKTLAB_SKTINFO_RADDR 0x20
#define PKTLAB_SKTINFO_LPORT 0x30
#define PKTLAB_SKTINFO_RPORT 0x32
#define PKTLAB_SKTINFO_RBUFSZ 0x40
#define PKTLAB_SKTINFO_RBUFUSED 0x44
#define PKTLAB_SKTINFO_DROPSTAT 0x50

/* big-endian (network order) field access, e.g. a port from the rport pointer */
static inline uint16_t pktlab_get16(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)((uint16_t)b[0] << 8 | b[1]);
}
static inline uint32_t pktlab_get32(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline uint64_t pktlab_get64(const void *p) {
    return (uint64_t)pktlab_get32(p) << 32 | pktlab_get32((const uint8_t *)p + 4);
}

#endif /* PKTLAB_COMPAT_PKTLAB_H */
