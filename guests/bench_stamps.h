/*
 * TSC-stamped loops of remote calls for `ipre bench latency` (src/bench/ipre.ts
 * remoteCallStampedSamples): a fast-path call makes no exit the host could time, so the guest
 * reads the TSC itself. Shared by guests/examples/kvcaller.c and guests/linux/libc-bench.c:
 * IPRE_STAMPED_LOOPS(expr) defines call_stamps, call_remote_stamped(n), which evaluates `expr`
 * (one remote call) n times with a stamp before each and after the last, and stamped_empty(n),
 * the same loop without the call (what a stamp costs: rdtsc may trap in a VM).
 */
#ifndef IPRE_BENCH_STAMPS_H
#define IPRE_BENCH_STAMPS_H

#define IPRE_STAMPS 2048

static inline unsigned long ipre_rdtsc(void) {
  unsigned lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((unsigned long)hi << 32) | lo;
}

#define IPRE_STAMPED_LOOPS(expr)                                  \
  unsigned long call_stamps[IPRE_STAMPS + 1];                     \
  long call_remote_stamped(long n) {                              \
    if (n > IPRE_STAMPS) n = IPRE_STAMPS;                         \
    for (long i = 0; i < n; i++) {                                \
      call_stamps[i] = ipre_rdtsc();                              \
      (void)(expr);                                               \
    }                                                             \
    call_stamps[n] = ipre_rdtsc();                                \
    return n;                                                     \
  }                                                               \
  long stamped_empty(long n) {                                    \
    if (n > IPRE_STAMPS) n = IPRE_STAMPS;                         \
    for (long i = 0; i <= n; i++) call_stamps[i] = ipre_rdtsc();  \
    return n;                                                     \
  }

#endif
