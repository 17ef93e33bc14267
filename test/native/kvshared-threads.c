/*
 * kvshared-threads.c: guests/examples/kvshared.c compiled for the host and hammered by N pthreads
 * (test/kvshared.test.ts builds and runs it). Tests the store's concurrency on real threads
 * without KVM; the guest build of the same source is what IPRE callers enter.
 *
 * Usage: kvshared-threads THREADS OPS. Each thread does OPS mixed operations (xorshift, seeded
 * by the thread index), half puts and half gets:
 *  - on its own keys (thread t owns keys t * 2^20 + 1 ...): every get is checked against the
 *    thread's local model (the last value it put, or missing);
 *  - one op in eight on SHARED keys that every thread puts with the same value f(key): a get
 *    sees missing or f(key), and the claims of a new key race on the same slot.
 * Afterwards the final contents are checked against the union of the models, and kv_count.
 * Prints one JSON line; exit 0 iff every check passed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned long u64;
long kv_put(u64 key, u64 value);
u64 kv_get(u64 key);
long kv_has(u64 key);
long kv_count(void);
long kv_clear(void);

#define MISSING (~0UL)
#define OWN_KEYS 1024
#define SHARED_KEYS 256
#define SHARED_BASE (1UL << 40)

static u64 shared_value(u64 key) { return key * 3 + 7; }

struct worker {
  pthread_t thread;
  int index;
  long ops;
  u64 model[OWN_KEYS]; /* last value put per own key; MISSING if none */
  long errors, puts, gets, new_keys;
};

static pthread_barrier_t start;

static u64 next(u64 *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void *run(void *arg) {
  struct worker *w = arg;
  u64 x = 0x9E3779B97F4A7C15UL * (u64)(w->index + 1);
  u64 base = ((u64)w->index << 20) + 1;
  for (int k = 0; k < OWN_KEYS; k++) w->model[k] = MISSING;
  pthread_barrier_wait(&start);
  for (long i = 0; i < w->ops; i++) {
    u64 r = next(&x);
    int put = r & 1, shared = ((r >> 1) & 7) == 0;
    u64 slot = (r >> 8) % (shared ? SHARED_KEYS : OWN_KEYS);
    u64 key = shared ? SHARED_BASE + slot : base + slot;
    if (put) {
      u64 value = shared ? shared_value(key) : (r >> 16) & 0xFFFFFFFFFFUL;
      long got = kv_put(key, value);
      if (got < 0) w->errors++;
      if (!shared) {
        if (got != (w->model[slot] == MISSING ? 1 : 0)) w->errors++;
        if (got == 1) w->new_keys++;
        w->model[slot] = value;
      }
      w->puts++;
    } else {
      u64 got = kv_get(key);
      if (shared ? got != MISSING && got != shared_value(key) : got != w->model[slot]) w->errors++;
      w->gets++;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2;
  long ops = argc > 2 ? atol(argv[2]) : 10000;
  struct worker *ws = calloc((size_t)n, sizeof *ws);
  pthread_barrier_init(&start, NULL, (unsigned)n);
  for (int t = 0; t < n; t++) {
    ws[t].index = t;
    ws[t].ops = ops;
    pthread_create(&ws[t].thread, NULL, run, &ws[t]);
  }
  long errors = 0, puts = 0, gets = 0, own = 0, shared = 0, final_errors = 0;
  for (int t = 0; t < n; t++) {
    pthread_join(ws[t].thread, NULL);
    errors += ws[t].errors;
    puts += ws[t].puts;
    gets += ws[t].gets;
  }
  /* Final contents: every own key as its thread's model says, every shared key missing or f(key). */
  for (int t = 0; t < n; t++) {
    u64 base = ((u64)t << 20) + 1;
    for (int k = 0; k < OWN_KEYS; k++) {
      if (kv_get(base + k) != ws[t].model[k]) final_errors++;
      if (ws[t].model[k] != MISSING) own++;
    }
  }
  for (u64 k = 0; k < SHARED_KEYS; k++) {
    u64 got = kv_get(SHARED_BASE + k);
    if (got != MISSING && got != shared_value(SHARED_BASE + k)) final_errors++;
    if (got != MISSING) shared++;
  }
  long count = kv_count();
  if (count != own + shared) final_errors++;
  /* Sentinels are refused. */
  if (kv_put(0, 1) != -2 || kv_put(5, MISSING) != -2 || kv_get(0) != MISSING) final_errors++;
  long cleared = kv_clear();
  if (cleared != count || kv_count() != 0 || kv_has(SHARED_BASE) != 0) final_errors++;
  printf("{\"threads\":%d,\"ops\":%ld,\"puts\":%ld,\"gets\":%ld,\"errors\":%ld,\"final_errors\":%ld,\"own_keys\":%ld,\"shared_keys\":%ld,\"count\":%ld}\n",
         n, ops, puts, gets, errors, final_errors, own, shared, count);
  free(ws);
  return errors || final_errors ? 1 : 0;
}
