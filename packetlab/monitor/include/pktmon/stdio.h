/* stdio.h - formatting only, for monitors built by `pktlab monitor build` (defined in
 * pktmon_libc.c). There is no output stream: a monitor has no WASI, so printf and puts
 * format nothing anywhere; use debug() from monitor_helper.h to log. */
#ifndef PKTLAB_COMPAT_STDIO_H
#define PKTLAB_COMPAT_STDIO_H

#include <stdarg.h>
#include <stddef.h>

int snprintf(char *buf, size_t size, const char *fmt, ...);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int sprintf(char *buf, const char *fmt, ...);
int printf(const char *fmt, ...);
int puts(const char *s);
int putchar(int c);

#endif
