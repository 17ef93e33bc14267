/*
 * kvcaller.c: an IPRE *caller* (window 0, linked at 0x400000) of kvstore.c (window 1).
 *
 * The remote's functions and data are declared extern here and resolved at link time from
 * guests/examples/kvstore.syms.ld, which scripts/build-guests.mjs generates from kvstore.elf:
 * every global FUNC/OBJECT symbol of the remote, exported or not (so tests can also try to reach
 * kv_secret and kv_data_marker, which the host must refuse / only loan read-only).
 * Calling a remote address is a plain `call`: it faults, and the host merges the remote in.
 */
#include "../ipre.h"
#include "../bench_stamps.h"

/* kvstore.c */
extern long kv_insert(long key, long value);
extern long kv_lookup(long key);
extern long kv_count(void);
extern long vec_scale(long *v, long n, long k);
extern long checksum(const unsigned char *p, long n);
extern long sum64(const unsigned char *p, long n);
extern long call_back(long (*fn)(long), long x);
extern long remote_hostcall(long x);
extern long remote_fault(void);
extern long remote_spin(void);
extern long remote_fsbase(void);
extern long kv_secret(void);  /* not exported */
extern long kv_data_marker;   /* not exported, in the remote's .data */

#define CACHE_SIZE 256
#define VEC_MAX 1024

static long cache_keys[CACHE_SIZE];
static long cache_values[CACHE_SIZE];
static unsigned char cache_valid[CACHE_SIZE];
static long cache_misses;

long vec[VEC_MAX];

/** Looks key up in a local direct-mapped cache; on a miss asks the remote (kv_lookup) and caches. */
long serve(long key) {
  unsigned long slot = (unsigned long)key % CACHE_SIZE;
  if (cache_valid[slot] && cache_keys[slot] == key) return cache_values[slot];
  long value = kv_lookup(key);
  cache_misses++;
  cache_valid[slot] = 1;
  cache_keys[slot] = key;
  cache_values[slot] = value;
  return value;
}

/** How many serve() calls went to the remote. */
long serve_misses(void) { return cache_misses; }

/** Inserts keys 0..n-1 with value key*10+1 into the remote; returns how many were new. */
long fill(long n) {
  long added = 0;
  for (long k = 0; k < n; k++) {
    if (kv_insert(k, k * 10 + 1) == 1) added++;
  }
  return added;
}

/** vec[i] = i for i < n, then the remote scales vec in place by k; returns the remote's sum. */
long scale_vector(long n, long k) {
  if (n > VEC_MAX) n = VEC_MAX;
  if (n < 0) n = 0;
  for (long i = 0; i < n; i++) vec[i] = i;
  return vec_scale(vec, n, k);
}

/** Sum of vec[0..n), computed locally (checks the remote's in-place writes). */
long sum_vector(long n) {
  if (n > VEC_MAX) n = VEC_MAX;
  long s = 0;
  for (long i = 0; i < n; i++) s += vec[i];
  return s;
}

/** Callback target for the remote. */
long double_it(long x) { return 2 * x; }

/** call_back(double_it, x) in the remote: 2x + 1. */
long via_callback(long x) { return call_back(double_it, x); }

/** Calls kv_count() in the remote n times; returns the sum of the results. */
long call_remote_n(long n) {
  long acc = 0;
  for (long i = 0; i < n; i++) acc += kv_count();
  return acc;
}

/* call_remote_stamped(n) and stamped_empty(n), TSC-stamped (bench latency). */
IPRE_STAMPED_LOOPS(kv_count())

/** Calls the remote's NON-exported kv_secret: the host must refuse (RemoteAccessError). */
long call_secret(void) { return kv_secret(); }

/** Reads 8 bytes at a remote (or any) address: faults unless a loan maps it read-only. */
long read_remote(long addr) { return *(volatile long *)addr; }

/** Reads the remote's kv_data_marker (0x1234) by symbol: needs a loan. */
long read_marker(void) { return *(volatile long *)&kv_data_marker; }

/** Writes the remote's kv_data_marker: must fault even with a (read-only) loan. */
long write_marker(long v) {
  *(volatile long *)&kv_data_marker = v;
  return v;
}

/** checksum() in the remote over the caller's bytes (zero copy). */
long remote_checksum(const unsigned char *p, long n) { return checksum(p, n); }

/** sum64() in the remote over the caller's bytes (zero copy). */
long remote_sum64(const unsigned char *p, long n) { return sum64(p, n); }

long call_remote_hostcall(long x) { return remote_hostcall(x); }
long call_remote_fault(void) { return remote_fault(); }
long call_remote_spin(void) { return remote_spin(); }

/** FSBASE seen by the caller, then by the remote inside a call, then by the caller again. */
long fsbase_trip(long *out) {
  unsigned long a, c;
  __asm__ volatile("rdfsbase %0" : "=r"(a));
  long b = remote_fsbase();
  __asm__ volatile("rdfsbase %0" : "=r"(c));
  out[0] = (long)a;
  out[1] = b;
  out[2] = (long)c;
  return 0;
}
