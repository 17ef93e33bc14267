/* spin.c: guests that do not return in time, for timeout tests. */
#include "../ipre.h"

/** Never returns (`jmp .`). */
long spin(void) {
  for (;;) ipre_barrier();
}

/** Busy loop of n iterations, then returns n. */
long spin_for(long n) {
  for (long i = 0; i < n; i++) ipre_barrier();
  return n;
}
