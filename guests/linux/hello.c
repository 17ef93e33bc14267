/*
 * A plain static Linux program (glibc, gcc -static), run by Machine.exec (test/linux.test.ts):
 * stdio, argv/env, malloc (brk and, for the large block, an anonymous mmap), and with argv[1] ==
 * "enosys" an unknown syscall, which must give -1/ENOSYS (the host warns once); with "abort",
 * a message on stderr and abort().
 * Exit code: 3 + argc.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv, char **envp) {
  int envc = 0;
  while (envp[envc]) envc++;
  printf("hello from a Linux guest: argc=%d envc=%d\n", argc, envc);
  for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
  const char *who = getenv("IPRE_WHO");
  printf("IPRE_WHO=%s\n", who ? who : "(unset)");

  size_t total = 0;
  unsigned sum = 0;
  for (int i = 0; i < 100; i++) {
    size_t n = 1000 + (size_t)i * 100;
    unsigned char *p = malloc(n);
    if (!p) return 100;
    memset(p, i, n);
    sum += p[n - 1];
    total += n;
    if (i % 2) free(p);
  }
  unsigned char *big = malloc(1 << 20); /* above the mmap threshold: an anonymous mmap */
  if (!big) return 101;
  memset(big, 7, 1 << 20);
  sum += big[(1 << 20) - 1];
  free(big);
  printf("malloc'd %zu bytes, sum %u\n", total, sum);

  if (argc > 1 && strcmp(argv[1], "enosys") == 0) {
    long r = syscall(999);
    int e = errno;
    long again = syscall(999);
    printf("syscall(999)=%ld errno=%d again=%ld\n", r, e, again);
  }
  if (argc > 1 && strcmp(argv[1], "abort") == 0) {
    fprintf(stderr, "giving up\n");
    abort();
  }
  fprintf(stderr, "bye from stderr\n");
  return 3 + argc;
}
