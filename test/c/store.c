/* A remote for the C-source tests (test/compile.test.ts, test/cli.test.ts): a tiny table. */
#include "ipre.h"

static long table[1024];

IPRE_EXPORT long put(long k, long v) {
  table[k & 1023] = v;
  return 0;
}

IPRE_EXPORT long get(long k) { return table[k & 1023]; }
