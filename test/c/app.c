/* A caller for test/c/store.c: put(k, 3k) in the remote, then get(k) back. */
#include "ipre.h"

long put(long k, long v); /* in the remote */
long get(long k);

long roundtrip(long k) {
  put(k, k * 3);
  return get(k);
}
