/*
 * `ipre bench latency`'s Linux rows (src/bench/latency.ts): a glibc program in window 0 that
 * waits for requests after finding counter.c's counter_calls (a remote function that reads the
 * remote's TLS) with ipre_remote(). syscall_loop(n) makes n getppid syscalls (one exit each);
 * call_remote_n(n) makes n remote calls into a Linux remote (as many exits as between freestanding
 * guests: the libc adds none); call_remote_stamped(n) times each with the TSC.
 */
#include <stdio.h>
#include "ipre_linux.h"
#include "../bench_stamps.h"

static long (*remote_calls)(void);

long syscall_loop(long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(110L /* getppid */) : "rcx", "r11", "memory");
    acc += r;
  }
  return acc;
}

long call_remote_n(long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) acc += remote_calls();
  return acc;
}

/* call_remote_stamped(n) and stamped_empty(n), TSC-stamped (bench latency). */
IPRE_STAMPED_LOOPS(remote_calls())

int main(void) {
  remote_calls = (long (*)(void))ipre_remote("counter_calls");
  if (!remote_calls) {
    fprintf(stderr, "libc-bench: connect counter.elf (window 1) before starting\n");
    return 1;
  }
  ipre_wait_for_requests();
}
