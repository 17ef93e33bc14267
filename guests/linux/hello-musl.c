/*
 * A static Linux program linked with musl (Debian's musl-gcc, -static), run by Machine.exec
 * (test/linux-langs.test.ts): stdio, argv, getenv and malloc through musl's own startup.
 * Exit code: 10 + argc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  printf("hello from musl: argc=%d\n", argc);
  for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
  const char *who = getenv("IPRE_WHO");
  printf("IPRE_WHO=%s\n", who ? who : "(unset)");
  unsigned sum = 0;
  for (int i = 0; i < 50; i++) {
    unsigned char *p = malloc(100 + (size_t)i * 1000);
    if (!p) return 100;
    memset(p, i, 100);
    sum += p[99];
    if (i % 2) free(p);
  }
  printf("sum %u\n", sum);
  fprintf(stderr, "musl stderr\n");
  return 10 + argc;
}
