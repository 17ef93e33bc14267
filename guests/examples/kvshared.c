/*
 * kvshared.c: a thread-safe IPRE *remote* (window 1): a u64 -> u64 key-value store that many
 * callers on many threads (vCPUs) may enter at the same time. The fan-in benchmark's remote.
 *
 * Structure: one fixed-capacity open-addressing table (linear probing), lock-free, written with
 * the GCC/C11 `__atomic` builtins. Keys are only ever added, never removed (except by
 * kv_clear() while nobody else uses the store), which is what makes lock-free probing simple:
 *
 *  - kv_put claims a slot for a new key with one compare-and-swap on keys[i] (0 -> key). The
 *    loser of a race re-reads the slot: if the winner claimed the same key, both use the slot.
 *    Then it stores the value and publishes the slot (published[i] = 1, release), and whoever
 *    publishes a slot first counts the key.
 *  - kv_get probes without writing; a slot whose key matches counts only once it is published
 *    (acquire), so a reader never sees a claimed key with a value that was never put.
 *  - An update of an existing key is a single 64-bit atomic store: readers see the old value or
 *    the new one, never a torn mix.
 *
 * Why lock-free and not a spinlock per bucket: a remote function runs on the *caller's* vCPU, and
 * a vCPU is a host thread that the host scheduler may preempt at any instruction. A preempted
 * lock holder would make every other caller spin away its time slice (with more callers than
 * cores, as in `ipre bench fanin --workers 4` on 2 cores, that is the common case); and a call
 * that the host abandons (a timeout ends the guest mid-call) would leave the lock held forever.
 * With CAS nobody waits on anybody: an abandoned put leaves at worst a claimed, unpublished key,
 * which reads as missing and which the next put of that key publishes.
 *
 * ABI (all u64 in registers; the values kv_get can return are unambiguous):
 *   kv_put(key, value)  1 key was new, 0 key updated, -1 table full, -2 key 0 or value KV_MISSING
 *   kv_get(key)         the value, or KV_MISSING (~0 = 0xFFFFFFFFFFFFFFFF, -1 as a signed long)
 *   kv_has(key)         1 if key has a value, else 0
 *   kv_count()          keys with a value
 *   kv_capacity()       slots in the table (KV_CAPACITY)
 *   kv_clear()          empties the table; NOT thread-safe: only while no other call runs
 * Key 0 marks an empty slot, and value KV_MISSING is kv_get's "no value": neither can be stored.
 */
#include "../ipre.h"

typedef unsigned long u64;

#define KV_BITS 16
#define KV_CAPACITY (1UL << KV_BITS) /* 64 Ki slots in .bss: 8 + 8 + 1 bytes each */
#define KV_MISSING (~0UL)
#define KV_EMPTY 0UL

static u64 kv_keys[KV_CAPACITY];
static u64 kv_values[KV_CAPACITY];
static unsigned char kv_published[KV_CAPACITY];
static u64 kv_entries;

/** Fibonacci hashing: the top KV_BITS bits of key * 2^64/phi. */
static u64 kv_home(u64 key) { return (key * 0x9E3779B97F4A7C15UL) >> (64 - KV_BITS); }

/**
 * The slot holding key, claiming an empty one if `claim`; KV_CAPACITY if there is none (not
 * found, or the table is full).
 */
static u64 kv_slot(u64 key, int claim) {
  u64 i = kv_home(key);
  for (u64 probes = 0; probes < KV_CAPACITY; probes++, i = (i + 1) & (KV_CAPACITY - 1)) {
    u64 k = __atomic_load_n(&kv_keys[i], __ATOMIC_ACQUIRE);
    if (k == key) return i;
    if (k != KV_EMPTY) continue;
    if (!claim) return KV_CAPACITY; /* keys are never removed: an empty slot ends the chain */
    u64 expected = KV_EMPTY;
    if (__atomic_compare_exchange_n(&kv_keys[i], &expected, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return i;
    if (expected == key) return i; /* another caller claimed this slot for the same key */
  }
  return KV_CAPACITY;
}

/** Stores value for key: 1 if the key is new, 0 if it was updated, -1 if the table is full, -2 for key 0 or value KV_MISSING. */
IPRE_EXPORT long kv_put(u64 key, u64 value) {
  if (key == KV_EMPTY || value == KV_MISSING) return -2;
  u64 i = kv_slot(key, 1);
  if (i == KV_CAPACITY) return -1;
  __atomic_store_n(&kv_values[i], value, __ATOMIC_RELAXED);
  /* The release orders the value before the flag; the first publisher counts the key. */
  if (__atomic_exchange_n(&kv_published[i], 1, __ATOMIC_ACQ_REL) != 0) return 0;
  __atomic_fetch_add(&kv_entries, 1, __ATOMIC_RELAXED);
  return 1;
}

/** The value stored for key, or KV_MISSING. */
IPRE_EXPORT u64 kv_get(u64 key) {
  if (key == KV_EMPTY) return KV_MISSING;
  u64 i = kv_slot(key, 0);
  if (i == KV_CAPACITY || !__atomic_load_n(&kv_published[i], __ATOMIC_ACQUIRE)) return KV_MISSING;
  return __atomic_load_n(&kv_values[i], __ATOMIC_RELAXED);
}

/** 1 if key has a value, else 0. */
IPRE_EXPORT long kv_has(u64 key) { return kv_get(key) != KV_MISSING; }

/** Number of keys with a value. */
IPRE_EXPORT long kv_count(void) { return (long)__atomic_load_n(&kv_entries, __ATOMIC_RELAXED); }

/** Slots in the table: at most this many keys fit. */
IPRE_EXPORT long kv_capacity(void) { return (long)KV_CAPACITY; }

/** Empties the table; returns the number of keys it held. Only while no other call runs. */
IPRE_EXPORT long kv_clear(void) {
  long n = kv_count();
  memset(kv_keys, 0, sizeof kv_keys);
  memset(kv_values, 0, sizeof kv_values);
  memset(kv_published, 0, sizeof kv_published);
  __atomic_store_n(&kv_entries, 0, __ATOMIC_SEQ_CST);
  return n;
}
