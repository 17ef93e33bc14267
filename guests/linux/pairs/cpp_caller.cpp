/*
 * cpp_caller.cpp: a C++ caller (g++ -static, window 0) of cpp_remote.cpp (window 1).
 *
 *  1. C++ -> C++: passes a std::vector<std::string> and a std::map<std::string, int> by
 *     reference; the remote copies them into its table, and later calls find them there after
 *     the caller has freed its own containers (strings longer than the small-string buffer too).
 *     kv_shape_total runs templates and a virtual function inside the remote.
 *  2. The remote calls virtual methods of a caller object (Doubler below): callbacks.
 *  3. §V.H: the remote allocates its answer in caller memory, from a bump arena (whose grow
 *     callback is caller code) and through a std::pmr::memory_resource of the caller.
 *  6. With argv[1] == "throw", last, an entry that throws in the remote: the call does not
 *     return (the host reports a RemoteFault with what std::terminate printed).
 *
 * Prints deterministic lines on stdout; exits 0 only when every check passed, else 1 (a remote
 * function not found: 2).
 */
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "ipre_linux.h"
#include "kv_api.h"

namespace {

int failures = 0;

void expect(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "cpp_caller: FAILED: %s\n", what);
    failures++;
  }
}

template <typename Fn>
Fn find(const char *name) {
  void *p = ipre_remote(name);
  if (p == nullptr) std::fprintf(stderr, "cpp_caller: remote function %s not found (is cpp_remote connected?)\n", name);
  return reinterpret_cast<Fn>(p);
}

/* A caller class with virtual methods: its vtable and code are in the caller's window. */
class Doubler final : public kv_scorer {
 public:
  int score(int value) const override {
    calls++;
    return 2 * value + 1;
  }
  void seen(int entries) override { seen_entries = entries; }
  mutable int calls = 0;
  int seen_entries = -1;
};

unsigned char small_arena[64];
unsigned char large_arena[4096];
int grows = 0;

/* The arena's grow callback (caller code, called by the remote): switches to a larger buffer once.
 * What was allocated in the small one stays there. */
int grow_arena(kv_arena *a, size_t need) {
  if (grows++ > 0 || need > sizeof large_arena) return 0;
  a->base = large_arena;
  a->used = 0;
  a->cap = sizeof large_arena;
  return 1;
}

template <size_t N>
bool inside(const void *p, const unsigned char (&buf)[N]) {
  auto a = reinterpret_cast<uintptr_t>(p), lo = reinterpret_cast<uintptr_t>(buf);
  return a >= lo && a < lo + N;
}

}  // namespace

int main(int argc, char **argv) {
  auto kv_load = find<kv_load_fn>("kv_load");
  auto kv_get = find<kv_get_fn>("kv_get");
  auto kv_size = find<kv_size_fn>("kv_size");
  auto kv_shape_total = find<kv_shape_total_fn>("kv_shape_total");
  auto kv_score_all = find<kv_score_all_fn>("kv_score_all");
  auto kv_match = find<kv_match_fn>("kv_match");
  auto kv_match_pmr = find<kv_match_pmr_fn>("kv_match_pmr");
  auto kv_check = find<kv_check_fn>("kv_check");
  if (!kv_load || !kv_get || !kv_size || !kv_shape_total || !kv_score_all || !kv_match || !kv_match_pmr || !kv_check)
    return 2;

  // 1. Containers by reference; the caller frees (and scribbles over) them before the lookups.
  auto *keys = new std::vector<std::string>{"alpha", "beta", "a key that is much longer than fifteen chars", "gamma"};
  auto *extra = new std::map<std::string, int>{
      {"delta", 40}, {"epsilon", 50}, {"zeta, also longer than the SSO buffer of std::string", 60}};
  size_t loaded = kv_load(*keys, *extra);
  std::printf("kv_load: table has %zu entries\n", loaded);
  expect(loaded == 9, "kv_load: 2 initial + 4 keys + 3 extra entries");
  for (auto &k : *keys) k.assign(k.size(), '#');
  delete keys;
  delete extra;

  const char *lookups[] = {"alpha", "gamma", "a key that is much longer than fifteen chars", "epsilon",
                           "zeta, also longer than the SSO buffer of std::string", "remote.boot", "omega"};
  const int want[] = {0, 3, 2, 50, 60, 7, -1};
  for (size_t i = 0; i < sizeof lookups / sizeof *lookups; i++) {
    int v = -1;
    int found = kv_get(lookups[i], &v);
    if (found)
      std::printf("kv_get(%s) = %d\n", lookups[i], v);
    else
      std::printf("kv_get(%s): not found\n", lookups[i]);
    expect(found ? v == want[i] : want[i] == -1, lookups[i]);
  }
  expect(kv_size() == 9, "kv_size after the lookups");
  long shapes = kv_shape_total();
  std::printf("kv_shape_total = %ld\n", shapes);
  expect(shapes == 129 * 1000 + 174, "kv_shape_total: areas 9 + 20 + 100, values sum to 174");

  // 2. Virtual methods of a caller object, called by the remote.
  Doubler doubler;
  long scored = kv_score_all(reinterpret_cast<kv_scorer_c *>(static_cast<kv_scorer *>(&doubler)));
  std::printf("kv_score_all = %ld (score called %d times, seen %d)\n", scored, doubler.calls, doubler.seen_entries);
  expect(scored == 2 * 174 + 9 && doubler.calls == 9 && doubler.seen_entries == 9, "kv_score_all through Doubler");

  // 3a. The answer in a caller arena; the remote grows it through a caller callback.
  kv_arena arena{small_arena, 0, sizeof small_arena, grow_arena};
  kv_strlist list{nullptr, 0};
  int n = kv_match("a", &arena, &list);
  std::printf("kv_match(a) = %d:", n);
  for (size_t i = 0; i < list.count; i++) std::printf(" [%s]", list.items[i]);
  std::printf(" (arena grew %d time%s)\n", grows, grows == 1 ? "" : "s");
  bool owned = list.count == 2 && inside(list.items, small_arena);
  for (size_t i = 0; i < list.count; i++)
    owned = owned && (inside(list.items[i], small_arena) || inside(list.items[i], large_arena));
  expect(n == 2 && grows == 1 && owned, "kv_match: 2 keys, in the caller's arena, grown once");
  expect(n == 2 && std::strcmp(list.items[0], "a key that is much longer than fifteen chars") == 0 &&
             std::strcmp(list.items[1], "alpha") == 0,
         "kv_match: sorted keys");

  // 3b. The answer in a caller vector whose memory resource is the caller's buffer.
  static unsigned char pmr_buffer[2048];
  std::pmr::monotonic_buffer_resource resource(pmr_buffer, sizeof pmr_buffer, std::pmr::null_memory_resource());
  std::pmr::vector<std::pmr::string> found(&resource);
  size_t m = kv_match_pmr("remote.", &found);
  std::printf("kv_match_pmr(remote.) = %zu:", m);
  for (const auto &s : found) std::printf(" [%s]", s.c_str());
  std::printf("\n");
  expect(m == 2 && found[0] == "remote.a key longer than the small string buffer" && found[1] == "remote.boot",
         "kv_match_pmr: the remote's two keys");
  expect(m == 2 && inside(found.data(), pmr_buffer) && inside(found[0].data(), pmr_buffer),
         "kv_match_pmr: vector and long string in the caller's buffer");

  int checked = kv_check("epsilon");
  std::printf("kv_check(epsilon) = %d\n", checked);
  expect(checked == 50, "kv_check(epsilon)");

  // 6. An exception in the remote: std::terminate there, the call does not come back.
  if (argc > 1 && std::strcmp(argv[1], "throw") == 0) {
    std::printf("kv_check(missing) ...\n");
    std::fflush(stdout);
    kv_check("missing");
    std::fprintf(stderr, "cpp_caller: kv_check(missing) returned\n");
    return 1;
  }
  std::printf(failures ? "cpp_caller: %d check(s) failed\n" : "cpp_caller: all checks passed\n", failures);
  return failures ? 1 : 0;
}
