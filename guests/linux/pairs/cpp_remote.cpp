/*
 * cpp_remote.cpp: a C++ remote (g++ -static, window 1, linked at 0x40400000) with a persistent
 * std::unordered_map<std::string, int>, for the callers cpp_caller.cpp (C++) and c_caller.c (C).
 *
 * main() builds the remote's state with its own malloc (the table, a few shapes behind a virtual
 * function) and waits for requests. Each entry (kv_api.h) is extern "C" and IPRE_EXPORT, so a
 * caller finds it by its plain name. During a call the caller's memory is mapped too: kv_load
 * reads the caller's std::vector and std::map in place and *copies* them into the table, which
 * must outlive the call (§V.H); kv_match and kv_match_pmr write their answer into memory the
 * caller provides (an arena, a memory resource), so the caller owns it; kv_score_all calls
 * virtual methods of a caller object (callbacks into the caller). kv_check throws when a key is
 * missing: the exception cannot cross the call boundary (§V.G), so std::terminate prints it on
 * stderr and aborts, which the host reports as a RemoteFault.
 */
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <unordered_map>

#include "ipre_linux.h"
#include "kv_api.h"

namespace {

std::unordered_map<std::string, int> table;

/* A virtual function and templates, used only inside the remote. */
struct Shape {
  virtual ~Shape() = default;
  virtual long area() const = 0;
};
struct Square final : Shape {
  long side;
  explicit Square(long s) : side(s) {}
  long area() const override { return side * side; }
};
struct Rect final : Shape {
  long w, h;
  Rect(long w_, long h_) : w(w_), h(h_) {}
  long area() const override { return w * h; }
};
std::vector<std::unique_ptr<Shape>> shapes;

template <typename Range, typename F>
long sum_by(const Range &range, F f) {
  long total = 0;
  for (const auto &x : range) total += f(x);
  return total;
}

/* The table's keys in order, so answers do not depend on the hash order. */
std::vector<const std::pair<const std::string, int> *> sorted_entries() {
  std::vector<const std::pair<const std::string, int> *> v;
  v.reserve(table.size());
  for (const auto &e : table) v.push_back(&e);
  std::sort(v.begin(), v.end(), [](auto a, auto b) { return a->first < b->first; });
  return v;
}

bool has_prefix(const std::string &s, const char *prefix) { return s.compare(0, std::strlen(prefix), prefix) == 0; }

/* Allocates n bytes aligned to `align` from the caller's arena, asking its grow callback once. */
void *arena_alloc(kv_arena *a, size_t n, size_t align) {
  for (int attempt = 0; attempt < 2; attempt++) {
    size_t at = (a->used + align - 1) & ~(align - 1);
    if (at + n <= a->cap) {
      a->used = at + n;
      return a->base + at;
    }
    if (attempt == 0 && (a->grow == nullptr || !a->grow(a, n + align))) return nullptr;
  }
  return nullptr;
}

int lookup_or_throw(const std::string &key) {
  auto it = table.find(key);
  if (it == table.end()) throw std::runtime_error("remote says no");
  return it->second;
}

}  // namespace

extern "C" {

IPRE_EXPORT size_t kv_load(const std::vector<std::string> &keys, const std::map<std::string, int> &extra) {
  for (size_t i = 0; i < keys.size(); i++) table[keys[i]] = static_cast<int>(i);
  for (const auto &[k, v] : extra) table[k] = v;
  return table.size();
}

IPRE_EXPORT int kv_put(const char *key, int value) { return table.insert_or_assign(key, value).second ? 1 : 0; }

IPRE_EXPORT int kv_get(const char *key, int *value) {
  auto it = table.find(key);
  if (it == table.end()) return 0;
  *value = it->second;
  return 1;
}

IPRE_EXPORT size_t kv_size(void) { return table.size(); }

/* The shapes' areas plus the table's values, through a virtual call and a template. */
IPRE_EXPORT long kv_shape_total(void) {
  long areas = sum_by(shapes, [](const std::unique_ptr<Shape> &s) { return s->area(); });
  long values = sum_by(table, [](const auto &e) { return static_cast<long>(e.second); });
  return areas * 1000 + values;
}

/* Calls the caller's scorer (virtual methods of a caller object: callbacks) for every entry. */
IPRE_EXPORT long kv_score_all(kv_scorer_c *c) {
  auto *scorer = reinterpret_cast<kv_scorer *>(c);
  long total = 0;
  auto entries = sorted_entries();
  for (const auto *e : entries) total += scorer->score(e->second);
  scorer->seen(static_cast<int>(entries.size()));
  return total;
}

/* The keys starting with prefix, sorted, as a list allocated in the caller's arena; or -1. */
IPRE_EXPORT int kv_match(const char *prefix, kv_arena *arena, kv_strlist *out) {
  std::vector<const std::string *> keys;
  for (const auto *e : sorted_entries())
    if (has_prefix(e->first, prefix)) keys.push_back(&e->first);
  auto **items = static_cast<const char **>(arena_alloc(arena, keys.size() * sizeof(char *), alignof(char *)));
  if (items == nullptr && !keys.empty()) return -1;
  for (size_t i = 0; i < keys.size(); i++) {
    auto *s = static_cast<char *>(arena_alloc(arena, keys[i]->size() + 1, 1));
    if (s == nullptr) return -1;
    std::memcpy(s, keys[i]->c_str(), keys[i]->size() + 1);
    items[i] = s;
  }
  out->items = items;
  out->count = keys.size();
  return static_cast<int>(keys.size());
}

/* The same, appended to the caller's vector: its allocator is the caller's memory resource. */
IPRE_EXPORT size_t kv_match_pmr(const char *prefix, std::pmr::vector<std::pmr::string> *out) {
  for (const auto *e : sorted_entries())
    if (has_prefix(e->first, prefix)) out->emplace_back(e->first.data(), e->first.size());
  return out->size();
}

/* The value of key; a missing key throws, and noexcept makes that std::terminate here. */
IPRE_EXPORT int kv_check(const char *key) noexcept { return lookup_or_throw(key); }

}  // extern "C"

int main() {
  shapes.push_back(std::make_unique<Square>(3));
  shapes.push_back(std::make_unique<Rect>(4, 5));
  shapes.push_back(std::make_unique<Square>(10));
  table["remote.boot"] = 7;
  table["remote.a key longer than the small string buffer"] = 11;
  ipre_wait_for_requests();
}
