/* hostcall.c: guests calling the host through hostcall gates. */
#include "../ipre.h"

/** hostcall 1 with (x, x + 1), plus one. */
long use_hostcall(long x) { return ipre_hostcall2(1, x, x + 1) + 1; }

/** Prints "hello from guest\n" through the built-in print hostcall (4095); returns 0. */
long greet(void) {
  ipre_print("hello from guest\n", 17);
  return 0;
}

/** Calls hostcall 2 with i = 0..n-1 and returns the sum of its results. */
long hostcall_many(long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) acc += ipre_hostcall1(2, i);
  return acc;
}
