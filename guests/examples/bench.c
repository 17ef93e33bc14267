/* bench.c: functions for measuring vmcall and hostcall round trips. */
#include "../ipre.h"

long nop(void) { return 0; }

/** Calls hostcall 0 (no arguments) n times; returns the sum of its results. */
long hostcall_loop(long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) acc += ipre_hostcall0(0);
  return acc;
}
