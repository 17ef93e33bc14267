/* add.c: the simplest guest functions, for vmcall tests (integer, byte-buffer and string args). */
#include "../ipre.h"

long add(long a, long b) { return a + b; }

long mul(long a, long b) { return a * b; }

/** Sum of n bytes at p (each 0..255). */
long sum_bytes(const unsigned char *p, long n) {
  long s = 0;
  for (long i = 0; i < n; i++) s += p[i];
  return s;
}

/** Length of the NUL-terminated string s. */
long str_len(const char *s) {
  long n = 0;
  while (s[n]) n++;
  return n;
}
