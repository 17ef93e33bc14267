/*
 * The caller of counter.c over IPRE (test/linux-lifecycle.test.ts): a glibc program in window 0
 * that finds the remote's functions with ipre_remote() and calls them as plain C functions. Its
 * own TLS and errno stay its own across the calls; the remote's heap and output are the remote's.
 * counter_calls is also found at link time: guests/linux/counter.syms.ld (the remote's exports,
 * as `ipre symbols counter.elf` prints them) is part of this program's link.
 * argv[1] == "abort": the remote aborts (a RemoteFault for the host). Exit code 0 when every check
 * passed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "ipre_linux.h"

/* Linked against counter.syms.ld: an absolute address in the remote's window. */
extern long counter_calls(void);

static __thread long mine = 7;
static int failed;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      printf("check failed: %s (line %d)\n", #cond, __LINE__);   \
      failed = 1;                                                \
    }                                                            \
  } while (0)

int main(int argc, char **argv) {
  long (*add)(long) = (long (*)(long))ipre_remote("counter_add");
  long (*calls)(void) = (long (*)(void))ipre_remote("counter_calls");
  long (*err)(void) = (long (*)(void))ipre_remote("counter_errno");
  long (*heap)(long) = (long (*)(long))ipre_remote("counter_heap");
  long (*dump)(void) = (long (*)(void))ipre_remote("counter_dump");
  long (*keep)(const char *) = (long (*)(const char *))ipre_remote("counter_keep");
  void (*boom)(const char *) = (void (*)(const char *))ipre_remote("counter_abort");
  if (!add || !calls || !err || !heap || !dump || !keep || !boom) {
    printf("a counter function is missing\n");
    return 2;
  }
  CHECK((void *)calls == (void *)counter_calls); /* link time and run time agree */
  CHECK(ipre_remote("counter_secret") == NULL);
  CHECK(ipre_remote("no_such_function") == NULL);
  printf("caller: found the remote at %p\n", (void *)add);

  long t = 0;
  for (long i = 1; i <= 5; i++) t = add(i);
  printf("caller: total %ld, remote calls %ld\n", t, counter_calls());
  CHECK(t == 15);

  errno = 0;
  CHECK(close(-1) == -1 && errno == EBADF);
  errno = 1234;
  long remote_errno = err();
  printf("caller: remote errno %ld, mine %d\n", remote_errno, errno);
  CHECK(remote_errno == EBADF && errno == 1234);
  CHECK(mine == 7);

  long s = heap(1000), big = heap(300000);
  printf("caller: remote heap sums %ld %ld\n", s, big);
  CHECK(s == 124716 && big == 38246416);

  char text[80];
  snprintf(text, sizeof text, "a caller string of %d characters, on the caller's stack", 54);
  CHECK(keep(text) == (long)strlen(text));
  printf("caller: the remote printed %ld lines\n", dump());
  if (argc > 1 && strcmp(argv[1], "abort") == 0) boom("the caller asked for it");
  printf("caller: %s\n", failed ? "FAILED" : "ok");
  return failed;
}
