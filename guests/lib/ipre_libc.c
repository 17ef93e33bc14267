/*
 * Minimal libc for ipre guests: the functions gcc may call even in freestanding code.
 * Linked into every example by scripts/build-guests.mjs.
 *
 * memcpy/memmove/memset use `rep movsb/stosb` (fast on every CPU with ERMSB, and immune to gcc
 * turning a copy loop back into a call to memcpy). memcmp/strlen are plain loops compiled
 * without loop-distribution patterns, for the same reason.
 */
#include "../ipre.h"

#if defined(__GNUC__) && !defined(__clang__)
#define IPRE_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define IPRE_NO_LIBCALLS
#endif

void *memcpy(void *dst, const void *src, ipre_size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, ipre_size_t n) {
  if ((unsigned long)dst <= (unsigned long)src || (unsigned long)dst >= (unsigned long)src + n) {
    return memcpy(dst, src, n);
  }
  /* Overlap with dst above src: copy backwards. */
  unsigned char *d = (unsigned char *)dst + n - 1;
  const unsigned char *s = (const unsigned char *)src + n - 1;
  __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void *memset(void *dst, int c, ipre_size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

IPRE_NO_LIBCALLS int memcmp(const void *a, const void *b, ipre_size_t n) {
  const unsigned char *p = a, *q = b;
  for (ipre_size_t i = 0; i < n; i++) {
    if (p[i] != q[i]) return p[i] < q[i] ? -1 : 1;
  }
  return 0;
}

IPRE_NO_LIBCALLS ipre_size_t strlen(const char *s) {
  ipre_size_t n = 0;
  while (s[n]) n++;
  return n;
}
