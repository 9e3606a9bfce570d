/*
 * monitor_helper.h - compatibility header for monitors written for the reference's
 * monitor builder (pktmon): the host functions of PROTOCOL.md 8.2 and a debug() macro.
 * Our own text; `pktlab monitor build` puts this directory on the include path and links
 * the small libc of pktmon_libc.c (string.h, stdlib.h, stdio.h's snprintf) in its place
 * of wasi-libc. There are no WASI calls (docs/monitors.md "Monitors written for pktmon").
 */
#ifndef PKTLAB_COMPAT_MONITOR_HELPER_H
#define PKTLAB_COMPAT_MONITOR_HELPER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PKTLAB_HOST_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

/* copy len bytes of endpoint vmem at addr into buf; 0 on success */
PKTLAB_HOST_IMPORT(read_vmem_region) int read_vmem_region(uint32_t addr, void *buf, uint32_t len);
/* store the persistent memory now (it is stored at session end anyway); 0 on success */
PKTLAB_HOST_IMPORT(persistent_memory_flush) int persistent_memory_flush(void);
/* 1 when the endpoint runs with monitor debugging on */
PKTLAB_HOST_IMPORT(endpoint_debug_enabled) int endpoint_debug_enabled(void);
/* a NUL-terminated line for the endpoint's log (debug mode only) */
PKTLAB_HOST_IMPORT(monitor_debug) void monitor_debug(const char *str);

/* debug("fmt", ...): format (snprintf, at most 1023 chars) and log when debugging is on */
#define debug(...)                                            \
    do {                                                      \
        if (endpoint_debug_enabled()) {                       \
            char pktlab_debug_line_[1024];                    \
            snprintf(pktlab_debug_line_, sizeof(pktlab_debug_line_), __VA_ARGS__); \
            monitor_debug(pktlab_debug_line_);                \
        }                                                     \
    } while (0)

#endif /* PKTLAB_COMPAT_MONITOR_HELPER_H */
