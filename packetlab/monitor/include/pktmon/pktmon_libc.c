/*
 * pktmon_libc.c - the small libc `pktlab monitor build` links into a monitor written for
 * pktmon, in place of wasi-libc: malloc/free (exported: the host places the persistent
 * memory and its argument buffers with them), the string.h functions, snprintf. Every
 * definition is weak, so a monitor that defines its own malloc (or memcpy...) keeps it.
 * Unused functions are dropped by the linker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "stdio.h"
#include "stdlib.h"
#include "string.h"

#define WEAK __attribute__((weak))

/* ---------------------------------------------------------------- allocation
 * First fit over an address-ordered free list; a freed block merges with free neighbours
 * and, at the top of the heap, goes back to the unused top. A monitor instance lives for a
 * whole session and may malloc/free on every check, so freed memory must be reusable (a
 * bump allocator would run out in a long session). Blocks are 8-aligned, with an 8-byte
 * header (size, then the free-list link while free). */

typedef struct pktmon_blk {
    uint32_t size; /* bytes, header included, a multiple of 8 */
    struct pktmon_blk *next;
} pktmon_blk;

#define HDR ((uint32_t)sizeof(pktmon_blk))
#define MIN_BLOCK 16u

extern unsigned char __heap_base;
static pktmon_blk *pktmon_free_list;
static uint32_t pktmon_top;

static int pktmon_room(uint32_t end) {
    uint32_t have = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end <= have)
        return 1;
    uint32_t pages = (end - have + 65535u) / 65536u;
    return __builtin_wasm_memory_grow(0, pages) != (size_t)-1;
}

WEAK void *malloc(size_t n) {
    if (n > 0x7FFFFFF0u)
        return 0;
    uint32_t need = ((uint32_t)n + HDR + 7u) & ~7u;
    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    for (pktmon_blk **pp = &pktmon_free_list, *b; (b = *pp) != 0; pp = &b->next) {
        if (b->size < need)
            continue;
        if (b->size - need >= MIN_BLOCK) {
            pktmon_blk *rest = (pktmon_blk *)((char *)b + need);
            rest->size = b->size - need;
            rest->next = b->next;
            *pp = rest;
            b->size = need;
        } else {
            *pp = b->next;
        }
        return (char *)b + HDR;
    }
    if (!pktmon_top)
        pktmon_top = ((uint32_t)&__heap_base + 7u) & ~7u;
    uint32_t p = pktmon_top, end = p + need;
    if (end < p || !pktmon_room(end))
        return 0;
    pktmon_top = end;
    pktmon_blk *b = (pktmon_blk *)p;
    b->size = need;
    return (char *)b + HDR;
}

WEAK void free(void *ptr) {
    if (!ptr)
        return;
    pktmon_blk *b = (pktmon_blk *)((char *)ptr - HDR);
    pktmon_blk **pp = &pktmon_free_list, *prev = 0;
    while (*pp && *pp < b) {
        prev = *pp;
        pp = &prev->next;
    }
    if (*pp == b)
        return; /* freed twice: ignore rather than corrupt the list */
    b->next = *pp;
    *pp = b;
    if (b->next && (char *)b + b->size == (char *)b->next) {
        b->size += b->next->size;
        b->next = b->next->next;
    }
    if (prev && (char *)prev + prev->size == (char *)b) {
        prev->size += b->size;
        prev->next = b->next;
        b = prev;
    }
    /* the last free block touching the top goes back to the top */
    if (!b->next && (uint32_t)b + b->size == pktmon_top) {
        pktmon_top = (uint32_t)b;
        for (pp = &pktmon_free_list; *pp != b; pp = &(*pp)->next) {
        }
        *pp = 0;
    }
}

WEAK void *calloc(size_t count, size_t size) {
    if (size && count > 0x7FFFFFF0u / size)
        return 0;
    void *p = malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

WEAK void *realloc(void *ptr, size_t n) {
    if (!ptr)
        return malloc(n);
    if (!n) {
        free(ptr);
        return 0;
    }
    uint32_t have = ((pktmon_blk *)((char *)ptr - HDR))->size - HDR;
    if (n <= have)
        return ptr;
    void *q = malloc(n);
    if (q) {
        memcpy(q, ptr, have);
        free(ptr);
    }
    return q;
}

/* ---------------------------------------------------------------- string.h */

WEAK void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

WEAK void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

WEAK void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

WEAK int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

WEAK void *memchr(const void *s, int c, size_t n) {
    const unsigned char *p = s;
    for (; n; n--, p++)
        if (*p == (unsigned char)c)
            return (void *)p;
    return 0;
}

WEAK size_t strlen(const char *s) {
    const char *p = s;
    while (*p)
        p++;
    return (size_t)(p - s);
}

WEAK size_t strnlen(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && s[i])
        i++;
    return i;
}

WEAK int strcmp(const char *a, const char *b) {
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

WEAK int strncmp(const char *a, const char *b, size_t n) {
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

WEAK char *strcpy(char *dst, const char *src) {
    char *d = dst;
    while ((*d++ = *src++) != 0) {
    }
    return dst;
}

WEAK char *strncpy(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; i < n && src[i]; i++)
        dst[i] = src[i];
    for (; i < n; i++)
        dst[i] = 0;
    return dst;
}

WEAK char *strcat(char *dst, const char *src) {
    strcpy(dst + strlen(dst), src);
    return dst;
}

WEAK char *strncat(char *dst, const char *src, size_t n) {
    char *d = dst + strlen(dst);
    while (n-- && *src)
        *d++ = *src++;
    *d = 0;
    return dst;
}

WEAK char *strchr(const char *s, int c) {
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return 0;
    }
}

WEAK char *strrchr(const char *s, int c) {
    const char *hit = 0;
    for (;; s++) {
        if (*s == (char)c)
            hit = s;
        if (!*s)
            return (char *)hit;
    }
}

WEAK char *strstr(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncmp(hay, needle, n))
            return (char *)hay;
    return n ? 0 : (char *)hay;
}

/* ---------------------------------------------------------------- stdlib.h */

WEAK int abs(int x) { return x < 0 ? -x : x; }
WEAK long labs(long x) { return x < 0 ? -x : x; }

WEAK unsigned long strtoul(const char *s, char **end, int base) {
    unsigned long v = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if ((base == 0 || base == 16) && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2, base = 16;
    else if (base == 0)
        base = s[0] == '0' ? 8 : 10;
    for (;; s++) {
        int d = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'z' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'Z' ? *s - 'A' + 10
                                         : 99;
        if (d >= base)
            break;
        v = v * (unsigned long)base + (unsigned long)d;
    }
    if (end)
        *end = (char *)s;
    return v;
}

WEAK long strtol(const char *s, char **end, int base) {
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '-')
        return -(long)strtoul(s + 1, end, base);
    return (long)strtoul(*s == '+' ? s + 1 : s, end, base);
}

WEAK int atoi(const char *s) { return (int)strtol(s, 0, 10); }

/* ---------------------------------------------------------------- stdio.h
 * vsnprintf: flags - 0 + space #, width and precision (or *), length hh h l ll z j t,
 * conversions d i u x X o c s p %. Floating point is not formatted ("?"). */

typedef struct {
    char *buf;
    size_t size, len;
} pktmon_out;

static void pktmon_put(pktmon_out *o, char c) {
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void pktmon_pad(pktmon_out *o, char c, int n) {
    while (n-- > 0)
        pktmon_put(o, c);
}

WEAK int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) {
    pktmon_out o = {buf, size, 0};
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            pktmon_put(&o, *fmt);
            continue;
        }
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0, width = 0, prec = -1, lng = 0;
        for (;; fmt++) {
            if (fmt[1] == '-')
                left = 1;
            else if (fmt[1] == '0')
                zero = 1;
            else if (fmt[1] == '+')
                plus = 1;
            else if (fmt[1] == ' ')
                space = 1;
            else if (fmt[1] == '#')
                alt = 1;
            else
                break;
        }
        fmt++;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0)
                left = 1, width = -width;
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        for (;; fmt++) {
            if (*fmt == 'l')
                lng++;
            else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't')
                lng = 2;
            else if (*fmt != 'h')
                break;
        }
        char c = *fmt, tmp[24];
        const char *s = tmp;
        int n = 0, neg = 0;
        if (c == 0)
            break;
        if (c == 'd' || c == 'i' || c == 'u' || c == 'x' || c == 'X' || c == 'o' || c == 'p') {
            unsigned long long v;
            if (c == 'p') {
                v = (uintptr_t)va_arg(ap, void *);
                c = 'x';
                pktmon_put(&o, '0');
                pktmon_put(&o, 'x');
            } else if (c == 'd' || c == 'i') {
                long long sv = lng >= 2 ? va_arg(ap, long long)
                               : lng   ? va_arg(ap, long)
                                       : va_arg(ap, int);
                neg = sv < 0;
                v = neg ? 0ull - (unsigned long long)sv : (unsigned long long)sv;
            } else {
                v = lng >= 2 ? va_arg(ap, unsigned long long)
                    : lng    ? va_arg(ap, unsigned long)
                             : va_arg(ap, unsigned int);
            }
            if (alt && v && (c == 'x' || c == 'X')) {
                pktmon_put(&o, '0');
                pktmon_put(&o, c);
            }
            unsigned base = c == 'o' ? 8 : (c == 'x' || c == 'X') ? 16 : 10;
            const char *digits = c == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            char *p = tmp + sizeof(tmp);
            do {
                *--p = digits[v % base];
                v /= base;
            } while (v);
            n = (int)(tmp + sizeof(tmp) - p);
            s = p;
            int digits_n = prec > n ? prec : n;
            int signch = neg || plus || space;
            int pad = width - digits_n - signch;
            if (!left && !(zero && prec < 0))
                pktmon_pad(&o, ' ', pad);
            if (signch)
                pktmon_put(&o, neg ? '-' : plus ? '+' : ' ');
            if (!left && zero && prec < 0)
                pktmon_pad(&o, '0', pad);
            pktmon_pad(&o, '0', digits_n - n);
            while (n--)
                pktmon_put(&o, *s++);
            if (left)
                pktmon_pad(&o, ' ', pad);
            continue;
        }
        if (c == 'c') {
            tmp[0] = (char)va_arg(ap, int);
            n = 1;
        } else if (c == 's') {
            s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            n = (int)(prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s));
        } else if (c == 'f' || c == 'e' || c == 'g') {
            (void)va_arg(ap, double);
            s = "?";
            n = 1;
        } else {
            tmp[0] = c; /* %% and unknown conversions: the character itself */
            n = 1;
        }
        if (!left)
            pktmon_pad(&o, ' ', width - n);
        for (int i = 0; i < n; i++)
            pktmon_put(&o, s[i]);
        if (left)
            pktmon_pad(&o, ' ', width - n);
    }
    if (o.size)
        o.buf[o.len < o.size ? o.len : o.size - 1] = 0;
    return (int)o.len;
}

WEAK int snprintf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

WEAK int sprintf(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, 0x7FFFFFFF, fmt, ap);
    va_end(ap);
    return n;
}

/* no output stream (no WASI): the length that would have been written */
WEAK int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(0, 0, fmt, ap);
    va_end(ap);
    return n;
}

WEAK int puts(const char *s) { return (int)strlen(s) + 1; }
WEAK int putchar(int c) { return (unsigned char)c; }
