/*
 * kvstore.c: an IPRE *remote* (window 1, linked at 0x40400000 with IPRE_WINDOW_BASE=0x40000000).
 *
 * Callers may enter only the IPRE_EXPORT functions. kv_secret() and kv_data_marker are global but
 * not exported: tests use them to check the allow-list and read-only data loans.
 */
#include "../ipre.h"

#define KV_CAPACITY 4096 /* power of two; the table lives in .bss */

static long kv_keys[KV_CAPACITY];
static long kv_values[KV_CAPACITY];
static unsigned char kv_used[KV_CAPACITY];
static long kv_entries;

/** In .data (not exported): callers can read it only through a loan. */
long kv_data_marker = 0x1234;

static unsigned long kv_slot(long key) {
  return ((unsigned long)key * 0x9E3779B97F4A7C15UL) >> (64 - 12);
}

/** Inserts or updates key: returns 1 if the key is new, 0 if updated, -1 if the table is full. */
IPRE_EXPORT long kv_insert(long key, long value) {
  unsigned long i = kv_slot(key);
  for (long probes = 0; probes < KV_CAPACITY; probes++, i = (i + 1) & (KV_CAPACITY - 1)) {
    if (!kv_used[i]) {
      kv_used[i] = 1;
      kv_keys[i] = key;
      kv_values[i] = value;
      kv_entries++;
      return 1;
    }
    if (kv_keys[i] == key) {
      kv_values[i] = value;
      return 0;
    }
  }
  return -1;
}

/** The value stored for key, or -1. */
IPRE_EXPORT long kv_lookup(long key) {
  unsigned long i = kv_slot(key);
  for (long probes = 0; probes < KV_CAPACITY; probes++, i = (i + 1) & (KV_CAPACITY - 1)) {
    if (!kv_used[i]) return -1;
    if (kv_keys[i] == key) return kv_values[i];
  }
  return -1;
}

/** Number of keys stored. */
IPRE_EXPORT long kv_count(void) { return kv_entries; }

/** Multiplies the caller's vector v[0..n) by k in place (zero copy); returns the new sum. */
IPRE_EXPORT long vec_scale(long *v, long n, long k) {
  long sum = 0;
  for (long i = 0; i < n; i++) {
    v[i] *= k;
    sum += v[i];
  }
  return sum;
}

/** 32-bit FNV-1a of p[0..n), returned as a non-negative long (0 .. 2^32-1). */
IPRE_EXPORT long checksum(const unsigned char *p, long n) {
  unsigned int h = 2166136261u;
  for (long i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return (long)h;
}

/**
 * Wrapping sum of p[0..n) read as little-endian 64-bit words; a last partial word (n not a
 * multiple of 8) counts with its missing high bytes as zero. One load and one add per 8 bytes:
 * bound by memory bandwidth, not by the arithmetic (unlike checksum(), a multiply per byte).
 * Returned as the 64-bit pattern (the host reads it with callBigInt and BigInt.asUintN(64, ...)).
 */
IPRE_EXPORT long sum64(const unsigned char *p, long n) {
  unsigned long s = 0;
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    unsigned long w;
    __builtin_memcpy(&w, p + i, 8); /* one unaligned 8-byte load */
    s += w;
  }
  for (int shift = 0; i < n; i++, shift += 8) s += (unsigned long)p[i] << shift;
  return (long)s;
}

/** Calls back into the caller: fn(x) + 1. */
IPRE_EXPORT long call_back(long (*fn)(long), long x) { return fn(x) + 1; }

/** Calls the remote's own hostcall 1 with x (gate in window 1: 0x7FE00010). */
IPRE_EXPORT long remote_hostcall(long x) { return ipre_hostcall1(1, x); }

/** ud2 inside the remote: the call ends with a RemoteFault. */
IPRE_EXPORT long remote_fault(void) {
  __asm__ volatile("ud2");
  return -1;
}

/** Never returns: the call ends with a timeout. */
IPRE_EXPORT long remote_spin(void) {
  for (;;) ipre_barrier();
}

/** The thread pointer (FSBASE) the remote runs with: the host switches it on entry. */
IPRE_EXPORT long remote_fsbase(void) {
  unsigned long v;
  __asm__ volatile("rdfsbase %0" : "=r"(v));
  return (long)v;
}

/** Global but NOT exported: a caller must not be able to enter it. */
long kv_secret(void) { return 0x5ec2e7; }
