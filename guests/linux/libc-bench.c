/*
 * `ipre bench latency`'s Linux rows (src/bench/latency.ts): a glibc program in window 0 that
 * waits for requests after finding counter.c's counter_calls (a remote function that reads the
 * remote's TLS) with ipre_remote(). syscall_loop(n) makes n getppid syscalls (one exit each);
 * call_remote_n(n) makes n remote calls into a Linux remote (as many exits as between freestanding
 * guests: the libc adds none); call_remote_stamped(n) times each with the TSC.
 */
#include <stdio.h>
#include "ipre_linux.h"

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

/* TSC stamps of call_remote_stamped (bench latency): before each call and after the last. */
#define STAMPS 2048
unsigned long call_stamps[STAMPS + 1];

/* min(n, STAMPS) remote calls, TSC read before each and after the last; returns the calls made. */
long call_remote_stamped(long n) {
  if (n > STAMPS) n = STAMPS;
  unsigned lo, hi;
  for (long i = 0; i < n; i++) {
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    call_stamps[i] = ((unsigned long)hi << 32) | lo;
    remote_calls();
  }
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  call_stamps[n] = ((unsigned long)hi << 32) | lo;
  return n;
}

/* The same loop without the call: what the stamps themselves cost (rdtsc may trap in a VM). */
long stamped_empty(long n) {
  if (n > STAMPS) n = STAMPS;
  unsigned lo, hi;
  for (long i = 0; i <= n; i++) {
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    call_stamps[i] = ((unsigned long)hi << 32) | lo;
  }
  return n;
}

int main(void) {
  remote_calls = (long (*)(void))ipre_remote("counter_calls");
  if (!remote_calls) {
    fprintf(stderr, "libc-bench: connect counter.elf (window 1) before starting\n");
    return 1;
  }
  ipre_wait_for_requests();
}
