/*
 * A Linux program that serves calls (test/linux-lifecycle.test.ts): main() sets up its state
 * with libc (malloc, TLS, stdio), prints "counter: ready" and calls ipre_wait_for_requests();
 * the host then calls its exported functions, directly (m.call) or as an IPRE remote from
 * counter-caller.c. Linked for window 1 (0x40400000) so that it can be a remote of a window-0
 * caller. Every function uses the program's own libc state: its heap (brk/mmap), its TLS (a
 * __thread counter and errno), its stdout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ipre_linux.h"

static __thread long calls;     /* TLS: the remote's, whoever calls */
static char **log_lines;        /* heap: grows with counter_add */
static long log_count, log_cap;
static long total;

IPRE_EXPORT long counter_add(long n) {
  char line[64];
  snprintf(line, sizeof line, "add %ld", n);
  if (log_count == log_cap) {
    log_cap = log_cap ? log_cap * 2 : 4;
    log_lines = realloc(log_lines, (size_t)log_cap * sizeof *log_lines);
    if (!log_lines) return -1;
  }
  log_lines[log_count++] = strdup(line);
  calls++;
  total += n;
  return total;
}

/* How many calls this program's TLS has counted (main counted one). */
IPRE_EXPORT long counter_calls(void) { return calls; }

/* errno after a failing libc call: the remote's errno, not the caller's. */
IPRE_EXPORT long counter_errno(void) {
  errno = 0;
  if (close(-1) == 0) return -1;
  return errno;
}

/* malloc, fill, sum and free n bytes (a big n goes through mmap). */
IPRE_EXPORT long counter_heap(long n) {
  unsigned char *p = malloc((size_t)n);
  if (!p) return -1;
  long sum = 0;
  for (long i = 0; i < n; i++) p[i] = (unsigned char)i;
  for (long i = 0; i < n; i++) sum += p[i];
  free(p);
  return sum;
}

/* printf through the program's own stdout; returns the number of log lines. */
IPRE_EXPORT long counter_dump(void) {
  for (long i = 0; i < log_count; i++) printf("%s\n", log_lines[i]);
  printf("total %ld\n", total);
  fflush(stdout);
  return log_count;
}

/* Copy a caller string into the remote's heap and give its length (the caller's pointer works). */
IPRE_EXPORT long counter_keep(const char *s) {
  if (log_count == log_cap) {
    log_cap = log_cap ? log_cap * 2 : 4;
    log_lines = realloc(log_lines, (size_t)log_cap * sizeof *log_lines);
  }
  log_lines[log_count++] = strdup(s);
  return (long)strlen(s);
}

IPRE_EXPORT void counter_abort(const char *why) {
  fprintf(stderr, "counter: %s\n", why);
  abort();
}

IPRE_EXPORT long counter_exit(long code) { exit((int)code); }

/* Not exported: a caller cannot enter it. */
long counter_secret(void) { return 42; }

int main(void) {
  calls = 1;
  total = 0;
  counter_add(100);
  total = 0;
  printf("counter: ready\n");
  fflush(stdout);
  ipre_wait_for_requests();
}
