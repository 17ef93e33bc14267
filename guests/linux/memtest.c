/*
 * A Linux program for the memory calls (test/linux-mem.test.ts): each exported function makes
 * one call (mmap, munmap, mremap, mprotect) and returns its result (-errno on failure), or
 * touches memory (a write to a read-only page faults: the host's GuestFault), so the host drives
 * the program's address space step by step. Linked for window 1 (0x40400000) so that it can also
 * be the remote of a window-0 caller.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "ipre_linux.h"

static long result(long r) { return r == -1 ? -errno : r; }

IPRE_EXPORT long mt_map(long bytes, long prot) {
  void *p = mmap(NULL, (size_t)bytes, (int)prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? -errno : (long)p;
}
IPRE_EXPORT long mt_unmap(long addr, long bytes) { return result(munmap((void *)addr, (size_t)bytes)); }
IPRE_EXPORT long mt_protect(long addr, long bytes, long prot) { return result(mprotect((void *)addr, (size_t)bytes, (int)prot)); }
IPRE_EXPORT long mt_remap(long addr, long old, long bytes, long flags) {
  void *p = mremap((void *)addr, (size_t)old, (size_t)bytes, (int)flags);
  return p == MAP_FAILED ? -errno : (long)p;
}
IPRE_EXPORT long mt_poke(long addr, long value) {
  *(volatile long *)addr = value;
  return value;
}
IPRE_EXPORT long mt_peek(long addr) { return *(volatile long *)addr; }

/* Copy `mov eax, 42; ret` to addr and call it: runs only where the page is executable. */
IPRE_EXPORT long mt_jit(long addr, long copy) {
  static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};
  if (copy) memcpy((void *)addr, code, sizeof code);
  return ((long (*)(void))addr)();
}

/* malloc, printf, free: the libc of the program, with its heap (brk) and stdout. */
IPRE_EXPORT long mt_hello(long n) {
  char *s = malloc((size_t)n + 1);
  if (!s) return -1;
  memset(s, 'x', (size_t)n);
  s[n] = 0;
  long len = printf("memtest: %s\n", s);
  fflush(stdout);
  free(s);
  return len;
}

int main(void) {
  printf("memtest: ready\n");
  fflush(stdout);
  ipre_wait_for_requests();
}
