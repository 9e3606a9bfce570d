/* stdlib.h - allocation and a few helpers for monitors built by `pktlab monitor build`
 * (defined in pktmon_libc.c). malloc/free are the ones the host calls too: a free-list
 * allocator, so memory freed is reused for the whole life of the monitor. */
#ifndef PKTLAB_COMPAT_STDLIB_H
#define PKTLAB_COMPAT_STDLIB_H

#include <stddef.h>

void *malloc(size_t n);
void free(void *p);
void *calloc(size_t count, size_t size);
void *realloc(void *p, size_t n);
int abs(int x);
long labs(long x);
int atoi(const char *s);
long strtol(const char *s, char **end, int base);
unsigned long strtoul(const char *s, char **end, int base);

#endif
