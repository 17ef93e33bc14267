/*
 * c_caller.c: a C caller (gcc -static, window 0) of the C++ remote cpp_remote.cpp (window 1).
 *
 * It calls the remote's extern "C" entries with C strings and structs, gets an answer allocated
 * in its own arena, and passes an object with a hand-built vtable: a C struct whose first member
 * points at function slots laid out like the C++ class kv_scorer's (Itanium ABI), so the remote
 * calls its "virtual methods" (callbacks into this program) as it would a C++ object's.
 *
 * Prints deterministic lines on stdout; exits 0 only when every check passed, else 1 (a remote
 * function not found: 2).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ipre_linux.h"
#include "kv_api.h"

static int failures;

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "c_caller: FAILED: %s\n", what);
    failures++;
  }
}

static void *find(const char *name) {
  void *p = ipre_remote(name);
  if (p == NULL) fprintf(stderr, "c_caller: remote function %s not found (is cpp_remote connected?)\n", name);
  return p;
}

/* A scorer with a manual vtable: squares each value and counts the calls. */
struct squarer {
  struct kv_scorer_c base; /* the vptr, first as in a C++ object */
  int calls;
  int seen;
};

static int squarer_score(const struct kv_scorer_c *self, int value) {
  ((struct squarer *)self)->calls++;
  return value * value;
}

static void squarer_seen(struct kv_scorer_c *self, int entries) { ((struct squarer *)self)->seen = entries; }

static const struct kv_scorer_c_vtbl squarer_vtbl = {squarer_score, squarer_seen};

static unsigned char arena_buffer[256];

int main(void) {
  kv_put_fn kv_put = (kv_put_fn)find("kv_put");
  kv_get_fn kv_get = (kv_get_fn)find("kv_get");
  kv_size_fn kv_size = (kv_size_fn)find("kv_size");
  kv_shape_total_fn kv_shape_total = (kv_shape_total_fn)find("kv_shape_total");
  kv_score_all_fn kv_score_all = (kv_score_all_fn)find("kv_score_all");
  kv_match_fn kv_match = (kv_match_fn)find("kv_match");
  if (!kv_put || !kv_get || !kv_size || !kv_shape_total || !kv_score_all || !kv_match) return 2;

  static const char long_key[] = "c.a long key from the C caller, past the SSO";
  int added = kv_put("c.one", 1) + kv_put("c.two", 2) + kv_put(long_key, 3) + kv_put("c.one", 10);
  size_t size = kv_size();
  printf("kv_put: %d new, table has %zu entries\n", added, size);
  expect(added == 3 && size == 5, "kv_put: 3 new keys besides the remote's 2");

  const char *keys[] = {"c.one", long_key, "remote.boot", "nope"};
  const int want[] = {10, 3, 7, -1};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    int v = -1;
    if (kv_get(keys[i], &v))
      printf("kv_get(%s) = %d\n", keys[i], v);
    else
      printf("kv_get(%s): not found\n", keys[i]);
    expect(v == want[i], keys[i]);
  }

  long shapes = kv_shape_total();
  printf("kv_shape_total = %ld\n", shapes);
  expect(shapes == 129 * 1000 + 33, "kv_shape_total: areas 129, values 7 + 11 + 10 + 2 + 3");

  struct squarer sq = {{&squarer_vtbl}, 0, -1};
  long scored = kv_score_all(&sq.base);
  printf("kv_score_all = %ld (score called %d times, seen %d)\n", scored, sq.calls, sq.seen);
  expect(scored == 49 + 121 + 100 + 4 + 9 && sq.calls == 5 && sq.seen == 5, "kv_score_all through the manual vtable");

  struct kv_arena arena = {arena_buffer, 0, sizeof arena_buffer, NULL};
  struct kv_strlist list = {NULL, 0};
  int n = kv_match("c.", &arena, &list);
  printf("kv_match(c.) = %d:", n);
  for (size_t i = 0; i < list.count; i++) printf(" [%s]", list.items[i]);
  printf(" (%zu arena bytes)\n", arena.used);
  int owned = n == 3;
  for (size_t i = 0; owned && i < list.count; i++)
    owned = (uintptr_t)list.items[i] >= (uintptr_t)arena_buffer && (uintptr_t)list.items[i] < (uintptr_t)arena_buffer + arena.used;
  expect(owned && strcmp(list.items[0], long_key) == 0 && strcmp(list.items[1], "c.one") == 0 &&
             strcmp(list.items[2], "c.two") == 0,
         "kv_match: 3 sorted keys in the caller's arena");

  printf(failures ? "c_caller: %d check(s) failed\n" : "c_caller: all checks passed\n", failures);
  return failures ? 1 : 0;
}
