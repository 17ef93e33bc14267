/*
 * kv_api.h: the interface of cpp_remote.cpp (a C++ remote, window 1) as its callers see it:
 * cpp_caller.cpp (C++) and c_caller.c (C). Every entry is extern "C" and IPRE_EXPORT in the
 * remote; a caller finds it with ipre_remote("name") and calls it through these pointer types.
 *
 * Everything a caller passes lives in caller memory and is used by the remote in place (no
 * copy). Calls from the remote into caller code (virtual methods of a caller object, an allocate
 * callback) run in the caller with the remote unmapped, so their arguments are plain values or
 * pointers into caller memory, never pointers into the remote.
 */
#ifndef KV_API_H
#define KV_API_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A bump arena in caller memory (§V.H): the remote allocates the response from it, so the
 * caller owns the result and the remote's malloc is not involved. `grow`, when set, is a caller
 * function the remote calls when the arena is full; it may add space (base/cap) or return 0. */
struct kv_arena {
  unsigned char *base;
  size_t used;
  size_t cap;
  int (*grow)(struct kv_arena *arena, size_t need);
};

/* A list of NUL-terminated strings, all in a kv_arena. */
struct kv_strlist {
  const char **items;
  size_t count;
};

/* A caller object the remote calls back through its vtable. In C++ this is class kv_scorer
 * (below); in C a struct whose first member points at the function slots, in the order of the
 * C++ class's virtual functions (Itanium C++ ABI: the object's vptr points at slot 0). */
struct kv_scorer_c;
struct kv_scorer_c_vtbl {
  int (*score)(const struct kv_scorer_c *self, int value);
  void (*seen)(struct kv_scorer_c *self, int entries);
};
struct kv_scorer_c {
  const struct kv_scorer_c_vtbl *vptr;
};

/* Entries that C can call (pair 5) and C++ too. */
typedef int (*kv_get_fn)(const char *key, int *value);                       /* 1 if found */
typedef size_t (*kv_size_fn)(void);
typedef int (*kv_put_fn)(const char *key, int value);                        /* 1 if new */
typedef long (*kv_shape_total_fn)(void);                                     /* templates + virtuals inside */
typedef long (*kv_score_all_fn)(struct kv_scorer_c *scorer);                 /* calls back */
typedef int (*kv_match_fn)(const char *prefix, struct kv_arena *arena, struct kv_strlist *out);
typedef int (*kv_check_fn)(const char *key);                                 /* throws if missing */

#ifdef __cplusplus
}

#include <map>
#include <memory_resource>
#include <string>
#include <vector>

/* The C++ view of struct kv_scorer_c: same layout (vptr, then the members of a subclass). No
 * virtual destructor, so score and seen are slots 0 and 1 as in kv_scorer_c_vtbl. */
class kv_scorer {
 public:
  virtual int score(int value) const = 0;
  virtual void seen(int entries) = 0;

 protected:
  ~kv_scorer() = default;
};

/* Loads keys[i] -> i for every i, then every pair of extra; returns the table's size. */
typedef size_t (*kv_load_fn)(const std::vector<std::string> &keys, const std::map<std::string, int> &extra);
/* Like kv_match, into a vector whose allocator is the caller's memory resource. */
typedef size_t (*kv_match_pmr_fn)(const char *prefix, std::pmr::vector<std::pmr::string> *out);
#endif

#endif
